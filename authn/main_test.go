package authn_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/credbroker/credbroker/authn"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testIssuer   = "https://issuer.test"
	testAudience = "credbroker"
)

// testNow is the fixed clock of the verifiers under test.
var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// testKeys are generated once per test binary: RSA generation is slow under
// the race detector.
type testKeys struct {
	rsa, rsaOther *rsa.PrivateKey
	ec, ecOther   *ecdsa.PrivateKey
	ed, edOther   ed25519.PrivateKey
}

var loadKeys = sync.OnceValue(func() testKeys {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	var k testKeys
	var err error
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.rsaOther, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	k.ecOther, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	_, k.edOther, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	return k
})

// pub is one public key of a test JWK Set.
type pub struct {
	kid string
	alg string
	key crypto.PublicKey
}

// jwksFor builds a JWK Set with jwkset directly, independently of
// authn.JWKSJSON.
func jwksFor(t testing.TB, keys ...pub) []byte {
	t.Helper()
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.key, jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: jwkset.ALG(k.alg), USE: jwkset.UseSig},
		})
		if err != nil {
			t.Fatalf("JWK %s: %v", k.kid, err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// standardKeys are the keys the file issuer of setup publishes.
func standardKeys() []pub {
	k := loadKeys()
	return []pub{
		{kid: "rsa1", alg: "RS256", key: k.rsa.Public()},
		{kid: "ec1", alg: "ES256", key: k.ec.Public()},
		{kid: "ed1", alg: "EdDSA", key: k.ed.Public()},
	}
}

// mint signs claims with golang-jwt directly, independently of
// authn.SigningKey. An empty kid leaves the header without one.
func mint(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

// goodClaims are valid claims for the test issuer at testNow.
func goodClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": testIssuer,
		"sub": "system:serviceaccount:orders:api",
		"aud": []string{testAudience},
		"iat": testNow.Add(-time.Minute).Unix(),
		"nbf": testNow.Add(-time.Minute).Unix(),
		"exp": testNow.Add(10 * time.Minute).Unix(),
	}
}

// with returns goodClaims changed by edits; a nil value deletes the claim.
func with(edits jwt.MapClaims) jwt.MapClaims {
	c := goodClaims()
	for k, v := range edits {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// logBuffer collects log output safely from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

func newLogger(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// bundle is a verifier under test with its collaborators.
type bundle struct {
	v    *authn.Verifier
	logs *logBuffer
	keys testKeys
	dir  string // holds the issuer's jwks.json
}

// setup returns a verifier trusting one jwks_file issuer (testIssuer,
// audience credbroker, default algorithms) with standardKeys, at testNow.
func setup(t testing.TB, edit ...func(*authn.Config)) bundle {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(path, jwksFor(t, standardKeys()...), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	cfg := authn.Config{
		Issuers: []authn.IssuerConfig{{
			Name:      "test",
			Issuer:    testIssuer,
			Audiences: []string{testAudience},
			JWKSFile:  path,
		}},
		Logger: newLogger(logs),
		Now:    func() time.Time { return testNow },
	}
	for _, e := range edit {
		e(&cfg)
	}
	v, err := authn.NewVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return bundle{v: v, logs: logs, keys: loadKeys(), dir: dir}
}
