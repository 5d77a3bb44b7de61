package authn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestTokenCacheBound(t *testing.T) {
	t.Parallel()
	c := newTokenCache(3)
	now := time.Now()
	entry := func(i int) *cacheEntry {
		return &cacheEntry{sum: sha256.Sum256(fmt.Appendf(nil, "token-%d", i)), at: now, until: now.Add(cacheFor)}
	}
	for i := range 3 {
		c.put(entry(i))
	}
	if _, ok := c.get(entry(0).sum); !ok { // 0 is now the most recently used
		t.Fatal("token 0 is not cached")
	}
	c.put(entry(3)) // evicts 1, the least recently used
	c.put(entry(4)) // evicts 2
	if got := c.len(); got != 3 {
		t.Fatalf("len = %d, want the bound, 3", got)
	}
	for i, want := range []bool{true, false, false, true, true} {
		if _, ok := c.get(entry(i).sum); ok != want {
			t.Errorf("token %d cached = %v, want %v", i, ok, want)
		}
	}
}

func TestTokenCacheDropsStaleEntries(t *testing.T) {
	t.Parallel()
	c := newTokenCache(10)
	now := time.Now()
	old := &cacheEntry{sum: sha256.Sum256([]byte("old")), at: now, until: now.Add(cacheFor)}
	c.put(old)
	later := now.Add(cacheFor + time.Second)
	c.put(&cacheEntry{sum: sha256.Sum256([]byte("new")), at: later, until: later.Add(cacheFor)})
	if _, ok := c.get(old.sum); ok {
		t.Error("an entry past its time stayed at the back of the cache")
	}
	if got := c.len(); got != 1 {
		t.Errorf("len = %d, want 1", got)
	}
}

// TestVerifierCacheBound presents more distinct tokens than the cache holds,
// good ones and refused ones, through Verify.
func TestVerifierCacheBound(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sk := SigningKey{KID: "k1", Key: key}
	jwks, err := JWKSJSON(sk)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	v, err := NewVerifier(t.Context(), Config{
		Issuers: []IssuerConfig{{Name: "test", Issuer: "https://issuer.test", Audiences: []string{"credbroker"}, JWKSFile: path}},
		Now:     func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	const bound = 8
	v.cache = newTokenCache(bound)

	sign := func(sub, aud string) (string, [sha256.Size]byte) {
		tok, err := sk.Sign(jwt.MapClaims{"iss": "https://issuer.test", "aud": aud, "sub": sub, "exp": now.Add(time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok, sha256.Sum256([]byte(tok))
	}
	var last [sha256.Size]byte
	for i := range 3 * bound {
		tok, sum := sign(fmt.Sprintf("workload-%d", i), "credbroker")
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		if got := v.cache.len(); got > bound {
			t.Fatalf("after %d tokens the cache holds %d, more than its bound %d", i+1, got, bound)
		}
		last = sum
	}
	if _, ok := v.cache.get(last); !ok {
		t.Error("the newest token is not cached")
	}

	v.cache = newTokenCache(bound)
	for i := range bound {
		tok, _ := sign(fmt.Sprintf("workload-%d", i), "vault")
		if _, err := v.Verify(t.Context(), tok); err == nil {
			t.Fatalf("token %d for another audience was accepted", i)
		}
	}
	if got := v.cache.len(); got != 0 {
		t.Errorf("%d refused tokens were cached, want 0", got)
	}
}
