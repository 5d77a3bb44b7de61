package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestIssuerToken checks that a token verifies against the public key the
// JWKS file publishes, and carries the claims Token promises.
func TestIssuerToken(t *testing.T) {
	t.Parallel()
	iss := NewIssuer(t, "unit")
	raw, err := os.ReadFile(iss.JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []struct{ Kty, Crv, Kid, Alg, Use, X, Y string }
	}
	if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", raw, err)
	}
	k := set.Keys[0]
	if k.Kty != "EC" || k.Crv != "P-256" || k.Kid != iss.KID || k.Alg != "ES256" || k.Use != "sig" {
		t.Fatalf("JWK %+v", k)
	}
	coord := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) != 32 {
			t.Fatalf("coordinate %q: %v", s, err)
		}
		return b
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, coord(k.X)...), coord(k.Y)...))
	if err != nil {
		t.Fatalf("the JWK is not a P-256 point: %v", err)
	}

	parse := func(tok string) (*jwt.Token, jwt.MapClaims, error) {
		claims := jwt.MapClaims{}
		parsed, err := jwt.ParseWithClaims(tok, claims, func(tk *jwt.Token) (any, error) {
			if tk.Header["kid"] != iss.KID {
				t.Errorf("kid %v, want %s", tk.Header["kid"], iss.KID)
			}
			return pub, nil
		}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(Audience), jwt.WithIssuer(iss.URL))
		return parsed, claims, err
	}

	_, claims, err := parse(iss.Token(t, "alice", map[string]any{"groups": []string{"sre"}}, time.Minute))
	if err != nil {
		t.Fatalf("a fresh token does not verify: %v", err)
	}
	if claims["sub"] != "alice" || claims["groups"] == nil {
		t.Errorf("claims %v", claims)
	}
	if _, _, err := parse(iss.Token(t, "alice", nil, -time.Minute)); err == nil {
		t.Errorf("a token with a negative ttl verifies")
	}
	if _, _, err := parse(iss.Token(t, "alice", map[string]any{"aud": nil}, time.Minute)); err == nil {
		t.Errorf("a token without aud verifies with an audience required")
	}
}
