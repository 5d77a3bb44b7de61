package harness

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Audience is the audience every [Issuer] token carries unless told
// otherwise, and the one the configs of this package accept.
const Audience = "credbroker"

// Issuer is a token issuer made for one test: an ES256 key generated in the
// test and its public JWK Set in a file the broker reads (`jwks_file:`).
// Tokens are minted with golang-jwt directly, not with credbroker's code, so
// the broker's verifier is checked against an independent implementation.
type Issuer struct {
	// Name is the issuer's name in the config (`issuers[].name`).
	Name string
	// URL is the `iss` claim of its tokens.
	URL string
	// KID is the key id in the JWKS and in every token header.
	KID string
	// JWKSPath is the JWK Set file.
	JWKSPath string
	// Key is the signing key, an *ecdsa.PrivateKey on P-256.
	Key crypto.Signer
}

// NewIssuer makes an issuer called name with a fresh P-256 key and writes its
// JWKS to a file in the test's temporary directory.
func NewIssuer(t testing.TB, name string) *Issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("harness: generate issuer key: %v", err)
	}
	iss := &Issuer{
		Name:     name,
		URL:      "https://" + name + ".issuer.test.invalid",
		KID:      name + "-" + strings.ToLower(rand.Text()[:8]),
		JWKSPath: filepath.Join(t.TempDir(), name+"-jwks.json"),
		Key:      key,
	}
	jwks, err := jwksJSON(iss.KID, &key.PublicKey)
	if err != nil {
		t.Fatalf("harness: JWKS: %v", err)
	}
	if err := os.WriteFile(iss.JWKSPath, jwks, 0o600); err != nil {
		t.Fatalf("harness: write JWKS: %v", err)
	}
	return iss
}

// jwksJSON writes the JWK Set of one P-256 public key by hand (RFC 7517,
// RFC 7518 §6.2), independently of the broker's own JWKS code.
func jwksJSON(kid string, pub *ecdsa.PublicKey) ([]byte, error) {
	ecdhKey, err := pub.ECDH()
	if err != nil {
		return nil, err
	}
	point := ecdhKey.Bytes() // 0x04 || X (32 bytes) || Y (32 bytes)
	if len(point) != 65 || point[0] != 4 {
		return nil, fmt.Errorf("unexpected P-256 point encoding of %d bytes", len(point))
	}
	b64 := base64.RawURLEncoding.EncodeToString
	return json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
		"x": b64(point[1:33]), "y": b64(point[33:]),
	}}})
}

// Token returns a signed ES256 token with iss = i.URL, the given sub, aud
// "credbroker", iat now and exp now+ttl (a negative ttl makes an expired
// token). extra adds claims or replaces any of those; a nil value removes the
// claim.
func (i *Issuer) Token(t testing.TB, sub string, extra map[string]any, ttl time.Duration) string {
	t.Helper()
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": i.URL,
		"sub": sub,
		"aud": Audience,
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
			continue
		}
		claims[k] = v
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = i.KID
	s, err := tok.SignedString(i.Key)
	if err != nil {
		t.Fatalf("harness: sign token: %v", err)
	}
	return s
}

// YAML returns the issuer's entry for the `issuers:` list of a config,
// indented as a list item at the top level.
func (i *Issuer) YAML() string {
	return fmt.Sprintf(`  - name: %s
    issuer: %s
    audiences: [%s]
    jwks_file: %s
    algorithms: [ES256]
`, i.Name, i.URL, Audience, i.JWKSPath)
}
