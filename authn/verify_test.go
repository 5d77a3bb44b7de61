package authn_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/credbroker/credbroker/authn"
)

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	k := b.keys

	tests := map[string]struct {
		token   func(t *testing.T) string
		subject string
	}{
		"RS256": {
			token: func(t *testing.T) string { return mint(t, jwt.SigningMethodRS256, k.rsa, "rsa1", goodClaims()) },
		},
		"ES256": {
			token: func(t *testing.T) string { return mint(t, jwt.SigningMethodES256, k.ec, "ec1", goodClaims()) },
		},
		"EdDSA": {
			token: func(t *testing.T) string { return mint(t, jwt.SigningMethodEdDSA, k.ed, "ed1", goodClaims()) },
		},
		"AudienceString": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodRS256, k.rsa, "rsa1", with(jwt.MapClaims{"aud": testAudience}))
			},
		},
		"AudienceAmongOthers": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodES256, k.ec, "ec1", with(jwt.MapClaims{"aud": []string{"vault", testAudience}}))
			},
		},
		"ExpiredWithinLeeway": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodRS256, k.rsa, "rsa1", with(jwt.MapClaims{"exp": testNow.Add(-20 * time.Second).Unix()}))
			},
		},
		"NotBeforeWithinLeeway": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodRS256, k.rsa, "rsa1", with(jwt.MapClaims{"nbf": testNow.Add(20 * time.Second).Unix()}))
			},
		},
		"IssuedAtWithinLeeway": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodRS256, k.rsa, "rsa1", with(jwt.MapClaims{"iat": testNow.Add(20 * time.Second).Unix()}))
			},
		},
		"NoNotBeforeNorIssuedAt": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodEdDSA, k.ed, "ed1", with(jwt.MapClaims{"nbf": nil, "iat": nil}))
			},
		},
		"NoKIDTriesEveryKey": {
			token: func(t *testing.T) string { return mint(t, jwt.SigningMethodES256, k.ec, "", goodClaims()) },
		},
		"OtherSubject": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodRS256, k.rsa, "rsa1", with(jwt.MapClaims{"sub": "repo:acme/orders:ref:refs/heads/main"}))
			},
			subject: "repo:acme/orders:ref:refs/heads/main",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			token := tt.token(t)
			id, err := b.v.Verify(t.Context(), token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			wantSub := cmpOr(tt.subject, "system:serviceaccount:orders:api")
			if id.Issuer != "test" || id.IssuerURL != testIssuer || id.Subject != wantSub {
				t.Errorf("identity = %q %q %q; want test %q %q", id.Issuer, id.IssuerURL, id.Subject, testIssuer, wantSub)
			}
			if !slices.Contains(id.Audience, testAudience) {
				t.Errorf("Audience = %v; want it to contain %q", id.Audience, testAudience)
			}
			if id.ExpiresAt.IsZero() || id.ExpiresAt.Before(testNow.Add(-time.Minute)) {
				t.Errorf("ExpiresAt = %v", id.ExpiresAt)
			}
			if id.Claims["sub"] != wantSub || id.Claims["iss"] != testIssuer {
				t.Errorf("Claims = %v", id.Claims)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestVerifyClaimsForPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	token := mint(t, jwt.SigningMethodRS256, b.keys.rsa, "rsa1",
		with(jwt.MapClaims{"groups": []string{"sre", "dba"}, "email_verified": true}))
	id, err := b.v.Verify(t.Context(), token)
	if err != nil {
		t.Fatal(err)
	}
	groups, ok := id.Claims["groups"].([]any)
	if !ok || len(groups) != 2 || groups[0] != "sre" {
		t.Errorf(`Claims["groups"] = %#v; want []any{"sre", "dba"}`, id.Claims["groups"])
	}
	if id.Claims["email_verified"] != true {
		t.Errorf(`Claims["email_verified"] = %#v`, id.Claims["email_verified"])
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	b := setup(t)
	k := b.keys

	pubPEM := func(t *testing.T) []byte {
		der, err := x509.MarshalPKIXPublicKey(k.rsa.Public())
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	rs256 := func(claims jwt.MapClaims) func(t *testing.T) string {
		return func(t *testing.T) string { return mint(t, jwt.SigningMethodRS256, k.rsa, "rsa1", claims) }
	}
	literal := func(s string) func(t *testing.T) string { return func(*testing.T) string { return s } }

	tests := map[string]struct {
		token   func(t *testing.T) string
		reason  authn.Reason
		message string // the error message must contain it
	}{
		"Empty":    {token: literal(""), reason: authn.ReasonEmpty, message: "token is empty"},
		"TooLarge": {token: literal(strings.Repeat("a", authn.MaxTokenSize+1)), reason: authn.ReasonTooLarge, message: "larger than 16 KiB"},
		"TooLargeButWellFormed": {
			token:  rs256(with(jwt.MapClaims{"pad": strings.Repeat("x", authn.MaxTokenSize)})),
			reason: authn.ReasonTooLarge, message: "larger than 16 KiB",
		},
		"MalformedGarbage":      {token: literal("not a token at all"), reason: authn.ReasonMalformed, message: "malformed"},
		"MalformedTwoSegments":  {token: literal("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0"), reason: authn.ReasonMalformed, message: "malformed"},
		"MalformedFourSegments": {token: literal("a.b.c.d"), reason: authn.ReasonMalformed, message: "malformed"},
		"MalformedNotBase64":    {token: literal("!!!.???.***"), reason: authn.ReasonMalformed, message: "malformed"},
		"MalformedNotJSON": {
			token:  literal(b64("not json") + "." + b64(`{"iss":"x"}`) + ".sig"),
			reason: authn.ReasonMalformed, message: "malformed",
		},
		"MalformedJSONNull": {
			token:  literal(b64(`{"alg":"RS256"}`) + "." + b64(`null`) + ".sig"),
			reason: authn.ReasonMalformed, message: "malformed",
		},
		"MalformedSignatureEncoding": {
			token:  func(t *testing.T) string { return rs256(goodClaims())(t) + "%%%" },
			reason: authn.ReasonMalformed, message: "malformed",
		},
		"AlgMissing": {
			token:  literal(b64(`{"kid":"rsa1"}`) + "." + b64(`{"iss":"`+testIssuer+`"}`) + ".sig"),
			reason: authn.ReasonMalformed, message: "no algorithm",
		},
		"AlgNone": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa1", goodClaims())
			},
			reason: authn.ReasonAlgorithm, message: `"none" is never accepted`,
		},
		"AlgNoneUppercase": {
			token:  literal(b64(`{"alg":"NONE","kid":"rsa1"}`) + "." + b64(string(mustJSON(t, goodClaims()))) + "."),
			reason: authn.ReasonAlgorithm, message: "never accepted",
		},
		"HS256WithPublicKeyPEM": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, pubPEM(t), "rsa1", goodClaims())
			},
			reason: authn.ReasonAlgorithm, message: `"HS256" is never accepted`,
		},
		"HS256WithJWKSBytes": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodHS256, jwksFor(t, standardKeys()...), "", goodClaims())
			},
			reason: authn.ReasonAlgorithm, message: "HMAC",
		},
		"AlgNotInAllowList": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodRS384, k.rsa, "rsa1", goodClaims())
			},
			reason: authn.ReasonAlgorithm, message: `"RS384" is not allowed for this issuer`,
		},
		"PS256NotInAllowList": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodPS256, k.rsa, "rsa1", goodClaims())
			},
			reason: authn.ReasonAlgorithm, message: `"PS256" is not allowed`,
		},
		"AlgDoesNotMatchKey": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodRS256, k.rsa, "ec1", goodClaims())
			},
			reason: authn.ReasonAlgorithm, message: `does not match the issuer's key "ec1"`,
		},
		"UnknownIssuer": {
			token:  rs256(with(jwt.MapClaims{"iss": "https://evil.test"})),
			reason: authn.ReasonUnknownIssuer, message: `token issuer "https://evil.test" is not trusted`,
		},
		"IssuerNotAString": {
			token:  rs256(with(jwt.MapClaims{"iss": 42})),
			reason: authn.ReasonNoIssuer, message: "no issuer",
		},
		"NoIssuer": {
			token:  rs256(with(jwt.MapClaims{"iss": nil})),
			reason: authn.ReasonNoIssuer, message: "token has no issuer (iss) claim",
		},
		"NoAudience": {
			token:  rs256(with(jwt.MapClaims{"aud": nil})),
			reason: authn.ReasonAudience, message: "token has no audience (aud) claim; it must include credbroker",
		},
		"WrongAudience": {
			token:  rs256(with(jwt.MapClaims{"aud": "vault"})),
			reason: authn.ReasonAudience, message: "token audience does not include credbroker",
		},
		"WrongAudiences": {
			token:  rs256(with(jwt.MapClaims{"aud": []string{"vault", "kubernetes"}})),
			reason: authn.ReasonAudience, message: "token audience does not include credbroker",
		},
		"Expired": {
			token:  rs256(with(jwt.MapClaims{"exp": testNow.Add(-time.Minute).Unix()})),
			reason: authn.ReasonExpired, message: "token expired",
		},
		"ExpiredAndWrongAudience": {
			token:  rs256(with(jwt.MapClaims{"exp": testNow.Add(-time.Hour).Unix(), "aud": "vault"})),
			reason: authn.ReasonExpired, message: "token expired",
		},
		"NotBeforeInFuture": {
			token:  rs256(with(jwt.MapClaims{"nbf": testNow.Add(2 * time.Minute).Unix()})),
			reason: authn.ReasonNotYetValid, message: "not valid yet",
		},
		"IssuedInFuture": {
			token:  rs256(with(jwt.MapClaims{"iat": testNow.Add(2 * time.Minute).Unix()})),
			reason: authn.ReasonIssuedInFuture, message: "issued in the future",
		},
		"NoExpiry": {
			token:  rs256(with(jwt.MapClaims{"exp": nil})),
			reason: authn.ReasonNoExpiry, message: "token has no expiry (exp) claim",
		},
		"ExpiryNotANumber": {
			token:  rs256(with(jwt.MapClaims{"exp": "tomorrow"})),
			reason: authn.ReasonInvalidClaim, message: "wrong type",
		},
		"NoSubject": {
			token:  rs256(with(jwt.MapClaims{"sub": nil})),
			reason: authn.ReasonNoSubject, message: "token has no subject (sub) claim",
		},
		"EmptySubject": {
			token:  rs256(with(jwt.MapClaims{"sub": ""})),
			reason: authn.ReasonNoSubject, message: "no subject",
		},
		"SubjectNotAString": {
			token:  rs256(with(jwt.MapClaims{"sub": 1234})),
			reason: authn.ReasonInvalidClaim, message: "not a string",
		},
		"RightKIDWrongRSAKey": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodRS256, k.rsaOther, "rsa1", goodClaims())
			},
			reason: authn.ReasonSignature, message: "token signature is invalid",
		},
		"RightKIDWrongECKey": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodES256, k.ecOther, "ec1", goodClaims())
			},
			reason: authn.ReasonSignature, message: "token signature is invalid",
		},
		"RightKIDWrongEd25519Key": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodEdDSA, k.edOther, "ed1", goodClaims())
			},
			reason: authn.ReasonSignature, message: "token signature is invalid",
		},
		"NoKIDWrongKey": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodRS256, k.rsaOther, "", goodClaims())
			},
			reason: authn.ReasonSignature, message: "token signature is invalid",
		},
		"SignatureStripped": {
			token: func(t *testing.T) string {
				s := rs256(goodClaims())(t)
				return s[:strings.LastIndex(s, ".")+1]
			},
			reason: authn.ReasonSignature, message: "token signature is invalid",
		},
		"ClaimsTampered": {
			token: func(t *testing.T) string {
				parts := strings.Split(rs256(goodClaims())(t), ".")
				parts[1] = b64(string(mustJSON(t, with(jwt.MapClaims{"sub": "system:serviceaccount:kube-system:admin"}))))
				return strings.Join(parts, ".")
			},
			reason: authn.ReasonSignature, message: "token signature is invalid",
		},
		"UnknownKID": {
			token: func(t *testing.T) string {
				return mint(t, jwt.SigningMethodRS256, k.rsa, "rsa-rotated", goodClaims())
			},
			reason: authn.ReasonUnknownKey, message: `token key id "rsa-rotated" is not in the issuer's key set`,
		},
		"KIDNotAString": {
			token: func(t *testing.T) string {
				tok := jwt.NewWithClaims(jwt.SigningMethodRS256, goodClaims())
				tok.Header["kid"] = 7
				s, err := tok.SignedString(k.rsa)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			reason: authn.ReasonMalformed, message: "kid",
		},
		"CriticalHeader": {
			token: func(t *testing.T) string {
				tok := jwt.NewWithClaims(jwt.SigningMethodRS256, goodClaims())
				tok.Header["kid"] = "rsa1"
				tok.Header["crit"] = []string{"exp-ext"}
				s, err := tok.SignedString(k.rsa)
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			reason: authn.ReasonCritical, message: "crit",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			token := tt.token(t)
			id, err := b.v.Verify(t.Context(), token)
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", id)
			}
			if !errors.Is(err, authn.ErrUnauthenticated) {
				t.Errorf("error %v does not wrap ErrUnauthenticated", err)
			}
			var ve *authn.VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *VerifyError", err)
			}
			t.Logf("reason %s: %s", ve.Reason, err)
			if ve.Reason != tt.reason {
				t.Errorf("Reason = %q; want %q (message %q)", ve.Reason, tt.reason, err)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("message %q does not contain %q", err, tt.message)
			}
			if len(err.Error()) > 200 {
				t.Errorf("message is %d bytes long; keep it short", len(err.Error()))
			}
			if token != "" && strings.Contains(err.Error(), token) {
				t.Errorf("message contains the token")
			}
			if id.Subject != "" || id.Claims != nil {
				t.Errorf("rejected token returned identity %+v", id)
			}
			if token != "" && strings.Contains(b.logs.String(), token) {
				t.Errorf("log contains the token")
			}
		})
	}
}

func TestVerifyLogsRejections(t *testing.T) {
	t.Parallel()
	b := setup(t)
	token := mint(t, jwt.SigningMethodRS256, b.keys.rsa, "rsa1", with(jwt.MapClaims{"exp": testNow.Add(-time.Hour).Unix()}))
	if _, err := b.v.Verify(t.Context(), token); err == nil {
		t.Fatal("expired token accepted")
	}
	logs := b.logs.String()
	for _, want := range []string{"level=INFO", `msg="token rejected"`, "reason=expired", "issuer=test",
		"subject=system:serviceaccount:orders:api", "component=authn", "expired at 2030-01-02T02:04:05Z"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, token) || strings.Contains(logs, strings.Split(token, ".")[2]) {
		t.Errorf("log contains the token or its signature:\n%s", logs)
	}

	b.logs.Reset()
	if _, err := b.v.Verify(t.Context(), "garbage"); err == nil {
		t.Fatal("garbage accepted")
	}
	if logs := b.logs.String(); !strings.Contains(logs, "level=DEBUG") || !strings.Contains(logs, "reason=malformed") {
		t.Errorf("malformed token should be logged at debug:\n%s", logs)
	}
}

func TestVerifyAlgorithmAllowList(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *authn.Config) { c.Issuers[0].Algorithms = []string{"PS256", "ES256"} })
	k := b.keys

	tests := map[string]struct {
		token  string
		reason authn.Reason // empty: accepted
	}{
		"ES256Listed":    {token: mint(t, jwt.SigningMethodES256, k.ec, "ec1", goodClaims())},
		"RS256NotListed": {token: mint(t, jwt.SigningMethodRS256, k.rsa, "rsa1", goodClaims()), reason: authn.ReasonAlgorithm},
		"EdDSANotListed": {token: mint(t, jwt.SigningMethodEdDSA, k.ed, "ed1", goodClaims()), reason: authn.ReasonAlgorithm},
		// PS256 is listed, but rsa1's JWK pins alg RS256, so a token cannot
		// choose another algorithm for that key.
		"PS256ButKeyPinsRS256": {token: mint(t, jwt.SigningMethodPS256, k.rsa, "rsa1", goodClaims()), reason: authn.ReasonAlgorithm},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := b.v.Verify(t.Context(), tt.token)
			if tt.reason == "" {
				if err != nil {
					t.Errorf("Verify: %v", err)
				}
				return
			}
			var ve *authn.VerifyError
			if !errors.As(err, &ve) || ve.Reason != tt.reason {
				t.Errorf("Verify = %v; want reason %q", err, tt.reason)
			}
		})
	}
}

func TestVerifyKeyWithoutAlgPin(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	b := setup(t, func(c *authn.Config) {
		path := filepath.Join(t.TempDir(), "jwks.json")
		if err := os.WriteFile(path, jwksFor(t, pub{kid: "rsa1", key: k.rsa.Public()}), 0o600); err != nil {
			t.Fatal(err)
		}
		c.Issuers[0].JWKSFile = path
		c.Issuers[0].Algorithms = []string{"RS256", "PS256"}
	})
	for _, m := range []jwt.SigningMethod{jwt.SigningMethodRS256, jwt.SigningMethodPS256} {
		if _, err := b.v.Verify(t.Context(), mint(t, m, k.rsa, "rsa1", goodClaims())); err != nil {
			t.Errorf("%s: %v", m.Alg(), err)
		}
	}
}

func TestVerifyMultipleIssuers(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	dir := t.TempDir()
	path := filepath.Join(dir, "other.json")
	if err := os.WriteFile(path, jwksFor(t, pub{kid: "other", alg: "ES256", key: k.ecOther.Public()}), 0o600); err != nil {
		t.Fatal(err)
	}
	b := setup(t, func(c *authn.Config) {
		c.Issuers = append(c.Issuers, authn.IssuerConfig{
			Name: "ci", Issuer: "https://ci.test", Audiences: []string{"credbroker-ci", "broker"},
			JWKSFile: path, Algorithms: []string{"ES256"},
		})
	})

	ci := with(jwt.MapClaims{"iss": "https://ci.test", "aud": "broker"})
	id, err := b.v.Verify(t.Context(), mint(t, jwt.SigningMethodES256, k.ecOther, "other", ci))
	if err != nil {
		t.Fatalf("ci token: %v", err)
	}
	if id.Issuer != "ci" || id.IssuerURL != "https://ci.test" {
		t.Errorf("identity issuer = %q %q", id.Issuer, id.IssuerURL)
	}

	// A key of one issuer never verifies another issuer's tokens.
	_, err = b.v.Verify(t.Context(), mint(t, jwt.SigningMethodES256, k.ec, "ec1", ci))
	var ve *authn.VerifyError
	if !errors.As(err, &ve) || ve.Reason != authn.ReasonUnknownKey {
		t.Errorf("ci token with test issuer's key: %v; want unknown_key", err)
	}
	_, err = b.v.Verify(t.Context(), mint(t, jwt.SigningMethodES256, k.ec, "", ci))
	if !errors.As(err, &ve) || ve.Reason != authn.ReasonSignature {
		t.Errorf("ci token without kid signed by the test issuer's key: %v; want signature", err)
	}

	_, err = b.v.Verify(t.Context(), mint(t, jwt.SigningMethodES256, k.ecOther, "other", with(jwt.MapClaims{"iss": "https://ci.test"})))
	if err == nil || err.Error() != "token audience does not include any of credbroker-ci, broker" {
		t.Errorf("wrong audience: %v", err)
	}
}

func TestReloadFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	k := b.keys
	path := filepath.Join(b.dir, "jwks.json")
	rotated := mint(t, jwt.SigningMethodRS256, k.rsaOther, "rsa2", goodClaims())
	old := mint(t, jwt.SigningMethodRS256, k.rsa, "rsa1", goodClaims())

	if _, err := b.v.Verify(t.Context(), rotated); err == nil {
		t.Fatal("token with a not yet published key accepted")
	}
	if err := os.WriteFile(path, jwksFor(t, pub{kid: "rsa2", alg: "RS256", key: k.rsaOther.Public()}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.v.Reload(t.Context()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if _, err := b.v.Verify(t.Context(), rotated); err != nil {
		t.Errorf("rotated key after Reload: %v", err)
	}
	if _, err := b.v.Verify(t.Context(), old); err == nil {
		t.Errorf("removed key still verifies after Reload")
	}

	// A broken file keeps the previous keys.
	if err := os.WriteFile(path, []byte("<html>oops</html>"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.v.Reload(t.Context()); err == nil || !strings.Contains(err.Error(), "issuer test") {
		t.Errorf("Reload of a broken file = %v; want an error naming the issuer", err)
	}
	if _, err := b.v.Verify(t.Context(), rotated); err != nil {
		t.Errorf("keys lost after a failed Reload: %v", err)
	}
}

func TestNewVerifierFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k := loadKeys()
	tests := map[string]struct {
		path string
		want string
	}{
		"Missing":      {path: filepath.Join(dir, "nope.json"), want: "no such file"},
		"NotJSON":      {path: write("bad.json", "not json"), want: "not a JWK Set"},
		"NoKeysMember": {path: write("empty-object.json", "{}"), want: `no "keys"`},
		"NoUsableKeys": {path: write("oct.json", `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}`), want: "no usable signing keys"},
		"WeakRSAOnly": {
			path: write("weak.json", string(jwksFor(t, pub{kid: "weak", alg: "RS256", key: weakRSA(t)}))),
			want: "no usable signing keys",
		},
		"EncryptionKeyOnly": {
			path: write("enc.json", strings.Replace(string(jwksFor(t, pub{kid: "e", alg: "ES256", key: k.ec.Public()})), `"use":"sig"`, `"use":"enc"`, 1)),
			want: "no usable signing keys",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := authn.NewVerifier(t.Context(), authn.Config{Issuers: []authn.IssuerConfig{{
				Name: "f", Issuer: testIssuer, Audiences: []string{testAudience}, JWKSFile: tt.path,
			}}})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "issuer f") {
				t.Errorf("NewVerifier = %v; want an error about issuer f containing %q", err, tt.want)
			}
		})
	}
}

func TestJWKSSkipsUnusableKeys(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	good := string(jwksFor(t, pub{kid: "rsa1", alg: "RS256", key: k.rsa.Public()}))
	// Prepend an HMAC key with the same kid, an unknown key type and a
	// weak RSA key: all are skipped, the good key still works, and the
	// HMAC key can never be used.
	weak := strings.TrimSuffix(strings.TrimPrefix(string(jwksFor(t, pub{kid: "weak", alg: "RS256", key: weakRSA(t)})), `{"keys":[`), "]}")
	mixed := strings.Replace(good, `{"keys":[`,
		`{"keys":[{"kty":"oct","k":"`+b64("secret")+`","kid":"rsa1","alg":"HS256"},{"kty":"XYZ","kid":"x"},`+weak+`,`, 1)
	logs := &logBuffer{}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, []byte(mixed), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := authn.NewVerifier(t.Context(), authn.Config{
		Issuers: []authn.IssuerConfig{{Name: "m", Issuer: testIssuer, Audiences: []string{testAudience}, JWKSFile: path}},
		Logger:  newLogger(logs),
		Now:     func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Verify(t.Context(), mint(t, jwt.SigningMethodRS256, k.rsa, "rsa1", goodClaims())); err != nil {
		t.Errorf("good key: %v", err)
	}
	if _, err := v.Verify(t.Context(), mint(t, jwt.SigningMethodHS256, []byte("secret"), "rsa1", goodClaims())); err == nil {
		t.Errorf("HS256 token verified with a published oct key")
	}
	if got := strings.Count(logs.String(), "skipping JWK Set entry"); got != 3 {
		t.Errorf("logged %d skipped keys; want 3:\n%s", got, logs)
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// weakRSA returns the public half of a 1024-bit RSA key, below the verifier's
// minimum.
func weakRSA(t testing.TB) *rsa.PublicKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	return &k.PublicKey
}
