package authn_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/credbroker/credbroker/authn"
)

// unusableJWKS is a JWK Set whose every entry the verifier must skip: a
// symmetric key and an encryption key.
const unusableJWKS = `{"keys":[
 {"kty":"oct","kid":"hmac","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"},
 {"kty":"EC","kid":"enc","use":"enc","crv":"P-256",
  "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`

// A key set that comes back with nothing usable is a failed fetch: the
// verifier keeps the keys it had, warns with the reason and keeps retrying
// with backoff until the provider publishes keys again.
func TestRemoteNoUsableKeysKeepsPreviousKeys(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	tests := map[string]struct {
		body   string
		reason string
	}{
		"EmptyKeySet":  {body: `{"keys":[]}`, reason: "holds no keys"},
		"AllUnusable":  {body: unusableJWKS, reason: "holds no usable signing keys: all 2 entries were skipped"},
		"NullKeyArray": {body: `{"keys":null}`, reason: "not a JWK Set"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ks := newKeyServer(t, pub{kid: "k1", alg: "ES256", key: k.ec.Public()})
			v, logs := urlVerifier(t, ks, func(c *authn.Config) {
				c.RefreshInterval = 400 * time.Millisecond
				c.PeriodicRefresh = 20 * time.Millisecond
			})
			good := mint(t, jwt.SigningMethodES256, k.ec, "k1", goodClaims())
			if _, err := v.Verify(t.Context(), good); err != nil {
				t.Fatalf("before the key set emptied: %v", err)
			}

			ks.setResponse(http.StatusOK, tt.body)
			broken := ks.jwksHits.Load()
			waitFor(t, "three more fetches of the unusable key set", func() bool { return ks.jwksHits.Load() >= broken+3 })
			if _, err := v.Verify(t.Context(), good); err != nil {
				t.Errorf("previous key after %d fetches of an unusable key set: %v", ks.jwksHits.Load()-broken, err)
			}
			out := logs.String()
			for _, want := range []string{"level=WARN", "still serving the cached keys", tt.reason} {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %q:\n%s", want, out)
				}
			}
			if err := v.Reload(t.Context()); err == nil || !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("Reload of an unusable key set = %v; want an error with %q", err, tt.reason)
			}
			if _, err := v.Verify(t.Context(), good); err != nil {
				t.Errorf("previous key after Reload: %v", err)
			}

			// The provider publishes a rotated key: the retries pick it up.
			ks.setResponse(http.StatusOK, string(jwksFor(t, pub{kid: "k2", alg: "ES256", key: k.ecOther.Public()})))
			rotated := mint(t, jwt.SigningMethodES256, k.ecOther, "k2", goodClaims())
			waitFor(t, "the rotated key to verify", func() bool {
				_, err := v.Verify(t.Context(), rotated)
				return err == nil
			})
		})
	}
}

// At start, an empty key set is a failed fetch too: a warning, not "keys
// loaded" with no kids, and retries until keys appear.
func TestRemoteNoUsableKeysAtStart(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	ks := newKeyServer(t)
	ks.setResponse(http.StatusOK, `{"keys":[]}`)
	v, logs := urlVerifier(t, ks, func(c *authn.Config) { c.RefreshInterval = 200 * time.Millisecond })
	out := logs.String()
	if !strings.Contains(out, "fetching issuer signing keys failed") || !strings.Contains(out, "holds no keys") {
		t.Errorf("empty key set at start not reported as a failed fetch:\n%s", out)
	}
	if strings.Contains(out, "issuer signing keys loaded") {
		t.Errorf("empty key set at start logged as loaded:\n%s", out)
	}
	token := mint(t, jwt.SigningMethodRS256, k.rsa, "k1", goodClaims())
	if _, err := v.Verify(t.Context(), token); reasonOf(err) != authn.ReasonKeysUnavailable {
		t.Errorf("with an empty key set: %v; want keys_unavailable", err)
	}
	before := ks.jwksHits.Load()
	waitFor(t, "retries of the empty key set", func() bool { return ks.jwksHits.Load() >= before+2 })
	ks.setResponse(http.StatusOK, string(jwksFor(t, pub{kid: "k1", alg: "RS256", key: k.rsa.Public()})))
	waitFor(t, "the key set to load once it has keys", func() bool {
		_, err := v.Verify(t.Context(), token)
		return err == nil
	})
}
