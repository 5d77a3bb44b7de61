package authn_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/credbroker/credbroker/authn"
)

func TestSigningKeyRoundTrip(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := []authn.SigningKey{
		{KID: "dev-rsa", Key: k.rsa},
		{KID: "dev-ec", Key: k.ec},
		{KID: "dev-ec384", Key: p384},
		{KID: "dev-ed", Key: k.ed},
	}
	set, err := authn.JWKSJSON(keys...)
	if err != nil {
		t.Fatalf("JWKSJSON: %v", err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(set, &doc); err != nil {
		t.Fatalf("JWKSJSON output: %v", err)
	}
	if len(doc.Keys) != len(keys) {
		t.Fatalf("JWKSJSON has %d keys; want %d", len(doc.Keys), len(keys))
	}
	wantAlg := map[string]string{"dev-rsa": "RS256", "dev-ec": "ES256", "dev-ec384": "ES384", "dev-ed": "EdDSA"}
	for _, jwk := range doc.Keys {
		kid, _ := jwk["kid"].(string)
		if jwk["alg"] != wantAlg[kid] || jwk["use"] != "sig" {
			t.Errorf("JWK %s: alg %v use %v; want %s sig", kid, jwk["alg"], jwk["use"], wantAlg[kid])
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := jwk[private]; ok {
				t.Errorf("JWK %s publishes private parameter %q", kid, private)
			}
		}
	}

	path := filepath.Join(t.TempDir(), "dev.jwks.json")
	if err := os.WriteFile(path, set, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := authn.NewVerifier(t.Context(), authn.Config{
		Issuers: []authn.IssuerConfig{{
			Name: "dev", Issuer: "http://127.0.0.1:8420", Audiences: []string{"credbroker"}, JWKSFile: path,
			Algorithms: []string{"RS256", "ES256", "ES384", "EdDSA"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	names := map[string]string{"dev-rsa": "RSA", "dev-ec": "ECDSAP256", "dev-ec384": "ECDSAP384", "dev-ed": "Ed25519"}
	for _, sk := range keys {
		t.Run(names[sk.KID], func(t *testing.T) {
			now := time.Now()
			token, err := sk.Sign(jwt.MapClaims{
				"iss": "http://127.0.0.1:8420", "sub": "dev-user", "aud": "credbroker",
				"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			})
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			alg, err := sk.Algorithm()
			if err != nil {
				t.Fatal(err)
			}
			parsed, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
			if err != nil || parsed.Header["kid"] != sk.KID || parsed.Header["alg"] != alg {
				t.Errorf("header = %v (%v); want kid %s alg %s", parsed.Header, err, sk.KID, alg)
			}
			id, err := v.Verify(t.Context(), token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Subject != "dev-user" || id.Issuer != "dev" {
				t.Errorf("identity = %+v", id)
			}
		})
	}
}

func TestSigningKeyErrors(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		keys []authn.SigningKey
		want string
	}{
		"NoKID":        {keys: []authn.SigningKey{{Key: k.rsa}}, want: "without a KID"},
		"DuplicateKID": {keys: []authn.SigningKey{{KID: "a", Key: k.rsa}, {KID: "a", Key: k.ec}}, want: `duplicate KID "a"`},
		"P224":         {keys: []authn.SigningKey{{KID: "a", Key: p224}}, want: "unsupported ECDSA curve"},
		"NilKey":       {keys: []authn.SigningKey{{KID: "a"}}, want: "nil"},
		"OtherSigner":  {keys: []authn.SigningKey{{KID: "a", Key: otherSigner{k.ec}}}, want: "unsupported signing key type"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := authn.JWKSJSON(tt.keys...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("JWKSJSON = %v; want an error containing %q", err, tt.want)
			}
			if tt.keys[0].KID != "" {
				if _, err := tt.keys[len(tt.keys)-1].Sign(jwt.MapClaims{"sub": "x"}); err == nil && name != "DuplicateKID" {
					t.Errorf("Sign succeeded with %s", name)
				}
			}
		})
	}
}

// otherSigner is a crypto.Signer of a kind SigningKey does not know, such as a
// KMS-backed key.
type otherSigner struct{ crypto.Signer }
