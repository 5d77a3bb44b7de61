package authn_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/credbroker/credbroker/authn"
)

// clock is a settable clock for the verifiers under test.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) now() time.Time  { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

// cachedVerifications counts the "token verified" log lines a cache hit
// wrote.
func cachedVerifications(logs *logBuffer) int {
	return strings.Count(logs.String(), "cached=true")
}

func TestCacheHitReturnsSameIdentity(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok := mint(t, jwt.SigningMethodES256, b.keys.ec, "ec1", with(jwt.MapClaims{"groups": []string{"sre"}}))
	first, err := b.v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("first Verify: %v", err)
	}
	if n := cachedVerifications(b.logs); n != 0 {
		t.Fatalf("first Verify was answered from the cache (%d hits)", n)
	}
	second, err := b.v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("second Verify: %v", err)
	}
	if n := cachedVerifications(b.logs); n != 1 {
		t.Fatalf("second Verify: %d cache hits logged, want 1:\n%s", n, b.logs)
	}
	if !reflect.DeepEqual(first, second) {
		t.Errorf("cached identity differs:\n got %#v\nwant %#v", second, first)
	}
}

func TestCacheChecksTimesOnEveryHit(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	// exp 20s after testNow: with the default 30s leeway the token is
	// good until testNow+50s, within the cache's minute.
	short := with(jwt.MapClaims{"exp": testNow.Add(20 * time.Second).Unix()})
	tests := map[string]struct {
		claims jwt.MapClaims
		later  time.Duration // when the token is presented again
		want   authn.Reason  // "" for accepted
		hit    bool          // the second answer comes from the cache
	}{
		"BeforeExpiry":            {claims: short, later: 49 * time.Second, hit: true},
		"ExpiredWhileCached":      {claims: short, later: 50 * time.Second, want: authn.ReasonExpired},
		"LongAfterExpiry":         {claims: short, later: time.Hour, want: authn.ReasonExpired},
		"PastTheCacheMinute":      {claims: goodClaims(), later: time.Minute + time.Second},
		"ClockBackBeforeNotValid": {claims: with(jwt.MapClaims{"nbf": testNow.Add(20 * time.Second).Unix(), "iat": nil}), later: -20 * time.Second, want: authn.ReasonNotYetValid},
		"ClockBackBeforeIssued":   {claims: with(jwt.MapClaims{"iat": testNow.Add(20 * time.Second).Unix(), "nbf": nil}), later: -20 * time.Second, want: authn.ReasonIssuedInFuture},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clk := newClock(testNow)
			b := setup(t, func(c *authn.Config) { c.Now = clk.now })
			tok := mint(t, jwt.SigningMethodES256, k.ec, "ec1", tc.claims)
			if _, err := b.v.Verify(t.Context(), tok); err != nil {
				t.Fatalf("at testNow: %v", err)
			}
			clk.set(testNow.Add(tc.later))
			_, err := b.v.Verify(t.Context(), tok)
			if got := reasonOf(err); got != tc.want {
				t.Fatalf("at testNow%+v: reason %q (%v), want %q", tc.later, got, err, tc.want)
			}
			if hit := cachedVerifications(b.logs) == 1; hit != tc.hit {
				t.Errorf("answered from the cache: %v, want %v", hit, tc.hit)
			}
		})
	}
}

func TestCacheEndsWhenKeySetChanges(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	tok := mint(t, jwt.SigningMethodES256, k.ec, "ec1", goodClaims())

	t.Run("FileKeyRemovedOnReload", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		if _, err := b.v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("before the rotation: %v", err)
		}
		path := filepath.Join(b.dir, "jwks.json")
		if err := os.WriteFile(path, jwksFor(t, pub{kid: "rsa1", alg: "RS256", key: k.rsa.Public()}), 0o600); err != nil {
			t.Fatal(err)
		}
		// Until the file is read again, a fresh verification would accept
		// the token too: the Verifier still holds ec1.
		if _, err := b.v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("before Reload: %v", err)
		}
		if err := b.v.Reload(t.Context()); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if _, err := b.v.Verify(t.Context(), tok); reasonOf(err) != authn.ReasonUnknownKey {
			t.Fatalf("after ec1 left the key set: %v, want unknown_key", err)
		}
	})

	t.Run("FileKeyKeptOnReload", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		if _, err := b.v.Verify(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
		if err := b.v.Reload(t.Context()); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if _, err := b.v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("ec1 is still in the key set: %v", err)
		}
		if n := cachedVerifications(b.logs); n != 0 {
			t.Errorf("%d cache hits after the key set was reloaded, want 0: the token must be verified afresh", n)
		}
	})

	t.Run("URLKeyWithdrawn", func(t *testing.T) {
		t.Parallel()
		ks := newKeyServer(t, pub{kid: "ec1", alg: "ES256", key: k.ec.Public()}, pub{kid: "rsa1", alg: "RS256", key: k.rsa.Public()})
		v, _ := urlVerifier(t, ks)
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("before the rotation: %v", err)
		}
		ks.setKeys(t, pub{kid: "rsa1", alg: "RS256", key: k.rsa.Public()})
		// Reload stands for any refresh: the periodic one, SIGHUP, or one
		// a token with an unknown kid asked for.
		if err := v.Reload(t.Context()); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if _, err := v.Verify(t.Context(), tok); reasonOf(err) != authn.ReasonUnknownKey {
			t.Fatalf("after ec1 was withdrawn: %v, want unknown_key", err)
		}
	})

	t.Run("URLKeyWithdrawnUnknownKIDRefresh", func(t *testing.T) {
		t.Parallel()
		ks := newKeyServer(t, pub{kid: "ec1", alg: "ES256", key: k.ec.Public()})
		v, _ := urlVerifier(t, ks)
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Fatalf("before the rotation: %v", err)
		}
		ks.setKeys(t, pub{kid: "ec2", alg: "ES256", key: k.ecOther.Public()})
		rotated := mint(t, jwt.SigningMethodES256, k.ecOther, "ec2", goodClaims())
		if _, err := v.Verify(t.Context(), rotated); err != nil {
			t.Fatalf("a token of the new key (refreshes the set): %v", err)
		}
		if _, err := v.Verify(t.Context(), tok); reasonOf(err) != authn.ReasonUnknownKey {
			t.Fatalf("after ec1 was withdrawn: %v, want unknown_key", err)
		}
	})
}

func TestCacheNeverRemembersRefusals(t *testing.T) {
	t.Parallel()
	clk := newClock(testNow)
	b := setup(t, func(c *authn.Config) { c.Now = clk.now })
	// Not valid for another two minutes: refused now, accepted then.
	tok := mint(t, jwt.SigningMethodES256, b.keys.ec, "ec1", with(jwt.MapClaims{"nbf": testNow.Add(2 * time.Minute).Unix()}))
	for range 2 {
		if _, err := b.v.Verify(t.Context(), tok); reasonOf(err) != authn.ReasonNotYetValid {
			t.Fatalf("before nbf: %v, want not_yet_valid", err)
		}
	}
	clk.set(testNow.Add(2 * time.Minute))
	if _, err := b.v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("at nbf: %v", err)
	}
	if n := cachedVerifications(b.logs); n != 0 {
		t.Errorf("%d answers came from the cache, want 0", n)
	}
}

// TestCacheConcurrent verifies good and bad tokens from many goroutines
// while the key set is reloaded, for the race detector; every answer must be
// the one a fresh verification gives.
func TestCacheConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	k := b.keys
	type token struct {
		raw     string
		subject string
		want    authn.Reason
	}
	var tokens []token
	for i := range 8 {
		sub := fmt.Sprintf("workload-%d", i)
		tokens = append(tokens, token{raw: mint(t, jwt.SigningMethodES256, k.ec, "ec1", with(jwt.MapClaims{"sub": sub})), subject: sub})
	}
	tokens = append(tokens,
		token{raw: mint(t, jwt.SigningMethodES256, k.ecOther, "ec1", goodClaims()), want: authn.ReasonSignature},
		token{raw: mint(t, jwt.SigningMethodES256, k.ec, "ec1", with(jwt.MapClaims{"exp": testNow.Add(-time.Hour).Unix()})), want: authn.ReasonExpired},
		token{raw: mint(t, jwt.SigningMethodES256, k.ec, "ec1", with(jwt.MapClaims{"aud": "vault"})), want: authn.ReasonAudience},
	)

	done := make(chan struct{})
	var reloads sync.WaitGroup
	reloads.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := b.v.Reload(t.Context()); err != nil {
				t.Errorf("Reload: %v", err)
				return
			}
		}
	})
	var workers sync.WaitGroup
	for w := range 8 {
		workers.Go(func() {
			for i := range 200 {
				tc := tokens[(w+i)%len(tokens)]
				id, err := b.v.Verify(t.Context(), tc.raw)
				if got := reasonOf(err); got != tc.want {
					t.Errorf("reason %q (%v), want %q", got, err, tc.want)
					return
				}
				if err == nil && id.Subject != tc.subject {
					t.Errorf("subject %q, want %q", id.Subject, tc.subject)
					return
				}
			}
		})
	}
	workers.Wait()
	close(done)
	reloads.Wait()
}
