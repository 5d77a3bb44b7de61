package authn_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/credbroker/credbroker/authn"
)

func FuzzVerify(f *testing.F) {
	b := setup(f)
	k := b.keys
	valid := []string{
		mint(f, jwt.SigningMethodRS256, k.rsa, "rsa1", goodClaims()),
		mint(f, jwt.SigningMethodES256, k.ec, "ec1", goodClaims()),
		mint(f, jwt.SigningMethodEdDSA, k.ed, "ed1", goodClaims()),
	}
	for _, s := range valid {
		f.Add(s)
		f.Add(s[:len(s)-3])                             // truncated signature
		f.Add(s + "." + s)                              // too many segments
		f.Add(strings.Replace(s, ".", "..", 1))         // empty segment
		f.Add(strings.ToUpper(s))                       // bad base64 content
		f.Add(s[:strings.LastIndex(s, ".")+1])          // no signature
		f.Add(strings.Replace(s, "eyJ", "eyJ\x00", -1)) // NUL bytes
	}
	f.Add("")
	f.Add(".")
	f.Add("..")
	f.Add("a.b.c")
	f.Add(mint(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa1", goodClaims()))
	f.Add(mint(f, jwt.SigningMethodHS256, []byte("secret"), "rsa1", goodClaims()))
	f.Add(mint(f, jwt.SigningMethodRS256, k.rsa, "rsa1", with(jwt.MapClaims{"exp": 1e300, "nbf": -1e300, "iat": "x"})))
	f.Add(mint(f, jwt.SigningMethodRS256, k.rsa, "rsa1", with(jwt.MapClaims{"aud": []any{1, nil, map[string]any{}}, "sub": []string{"a"}})))
	f.Add(mint(f, jwt.SigningMethodRS256, k.rsa, "rsa1", with(jwt.MapClaims{"exp": testNow.Add(-time.Hour).Unix()})))
	f.Add(b64(`{"alg":"RS256","kid":["rsa1"],"crit":null}`) + "." + b64(`{"iss":"`+testIssuer+`"}`) + ".")
	f.Add(b64(`{"alg":"RS256"}`) + "." + b64(`{"iss":"`+testIssuer+`","exp":1}`) + "." + strings.Repeat("A", 342))

	f.Fuzz(func(t *testing.T, token string) {
		b.logs.Reset()
		id, err := b.v.Verify(t.Context(), token)
		if err == nil {
			if id.Subject == "" || id.Issuer != "test" || id.Claims == nil {
				t.Fatalf("accepted token with identity %+v", id)
			}
			return
		}
		if !errors.Is(err, authn.ErrUnauthenticated) {
			t.Fatalf("error %v does not wrap ErrUnauthenticated", err)
		}
		var ve *authn.VerifyError
		if !errors.As(err, &ve) || ve.Reason == "" {
			t.Fatalf("error %T without a reason", err)
		}
		if len(token) > 20 && strings.Contains(err.Error(), token) {
			t.Fatalf("error message contains the token: %q", err)
		}
		if len(token) > 20 && strings.Contains(b.logs.String(), token) {
			t.Fatalf("log contains the token")
		}
	})
}
