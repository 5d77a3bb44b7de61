package authn_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/credbroker/credbroker/authn"
)

// keyServer is an identity provider's key endpoint (and discovery document)
// whose keys, status and availability the test controls, and which counts
// its hits.
type keyServer struct {
	srv *httptest.Server

	mu       sync.Mutex
	jwks     []byte
	status   int
	issuer   string        // discovery document's issuer; default: the server URL
	block    chan struct{} // when non-nil, JWKS requests wait for it to close
	jwksHits atomic.Int64
	discHits atomic.Int64
}

func newKeyServer(t *testing.T, keys ...pub) *keyServer {
	t.Helper()
	ks := &keyServer{jwks: jwksFor(t, keys...), status: http.StatusOK}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		ks.jwksHits.Add(1)
		ks.mu.Lock()
		body, status, block := ks.jwks, ks.status, ks.block
		ks.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		ks.discHits.Add(1)
		ks.mu.Lock()
		iss := cmpOr(ks.issuer, ks.srv.URL)
		ks.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":   iss,
			"jwks_uri": ks.srv.URL + "/jwks",
		})
	})
	ks.srv = httptest.NewServer(mux)
	t.Cleanup(ks.srv.Close)
	return ks
}

func (ks *keyServer) setKeys(t *testing.T, keys ...pub) {
	t.Helper()
	b := jwksFor(t, keys...)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.jwks = b
}

// setResponse makes the JWKS endpoint answer with status and body.
func (ks *keyServer) setResponse(status int, body string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.status, ks.jwks = status, []byte(body)
}

// urlVerifier returns a verifier trusting testIssuer with keys at ks's
// jwks_url.
func urlVerifier(t *testing.T, ks *keyServer, edit ...func(*authn.Config)) (*authn.Verifier, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg := authn.Config{
		Issuers: []authn.IssuerConfig{{
			Name: "idp", Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: ks.srv.URL + "/jwks",
		}},
		RefreshInterval: time.Hour,
		HTTPClient:      ks.srv.Client(),
		Logger:          newLogger(logs),
		Now:             func() time.Time { return testNow },
	}
	for _, e := range edit {
		e(&cfg)
	}
	v, err := authn.NewVerifier(t.Context(), cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return v, logs
}

func reasonOf(err error) authn.Reason {
	var ve *authn.VerifyError
	if errors.As(err, &ve) {
		return ve.Reason
	}
	return ""
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRemoteKeyRotation(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	ks := newKeyServer(t, pub{kid: "k1", alg: "RS256", key: k.rsa.Public()})
	v, _ := urlVerifier(t, ks)
	if got := ks.jwksHits.Load(); got != 1 {
		t.Fatalf("fetches at start = %d; want 1", got)
	}
	old := mint(t, jwt.SigningMethodRS256, k.rsa, "k1", goodClaims())
	if _, err := v.Verify(t.Context(), old); err != nil {
		t.Fatalf("k1: %v", err)
	}

	// The provider rotates: k2 appears and k1 is withdrawn.
	ks.setKeys(t, pub{kid: "k2", alg: "ES256", key: k.ec.Public()})
	rotated := mint(t, jwt.SigningMethodES256, k.ec, "k2", goodClaims())
	if _, err := v.Verify(t.Context(), rotated); err != nil {
		t.Fatalf("k2 after rotation: %v", err)
	}
	if got := ks.jwksHits.Load(); got != 2 {
		t.Errorf("fetches = %d; want exactly one refresh for the new kid", got)
	}
	if _, err := v.Verify(t.Context(), rotated); err != nil {
		t.Fatalf("k2 again: %v", err)
	}
	if got := ks.jwksHits.Load(); got != 2 {
		t.Errorf("fetches = %d; a known kid must not refetch", got)
	}
	if _, err := v.Verify(t.Context(), old); reasonOf(err) != authn.ReasonUnknownKey {
		t.Errorf("withdrawn k1 after refresh: %v; want unknown_key", err)
	}
}

func TestRemoteRefreshRateLimit(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	ks := newKeyServer(t, pub{kid: "k1", alg: "RS256", key: k.rsa.Public()})
	v, _ := urlVerifier(t, ks) // RefreshInterval: 1h

	const flood = 64
	var wg sync.WaitGroup
	errs := make(chan error, flood)
	for i := range flood {
		wg.Go(func() {
			token := mint(t, jwt.SigningMethodRS256, k.rsa, fmt.Sprintf("bogus-%d", i), goodClaims())
			_, err := v.Verify(t.Context(), token)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if reasonOf(err) != authn.ReasonUnknownKey {
			t.Errorf("bogus kid: %v; want unknown_key", err)
		}
	}
	if got := ks.jwksHits.Load(); got != 2 {
		t.Errorf("fetches = %d; want 2 (start + one refresh for the whole flood)", got)
	}
	// Known keys are unaffected by the flood.
	if _, err := v.Verify(t.Context(), mint(t, jwt.SigningMethodRS256, k.rsa, "k1", goodClaims())); err != nil {
		t.Errorf("k1 after flood: %v", err)
	}
}

func TestRemoteRefreshRateLimitPerInterval(t *testing.T) {
	t.Parallel()
	const interval = 200 * time.Millisecond
	k := loadKeys()
	ks := newKeyServer(t, pub{kid: "k1", alg: "RS256", key: k.rsa.Public()})
	v, _ := urlVerifier(t, ks, func(c *authn.Config) { c.RefreshInterval = interval })
	bogus := mint(t, jwt.SigningMethodRS256, k.rsa, "bogus", goodClaims())

	start := time.Now()
	if _, err := v.Verify(t.Context(), bogus); reasonOf(err) != authn.ReasonUnknownKey {
		t.Fatalf("bogus: %v", err)
	}
	if got := ks.jwksHits.Load(); got != 2 {
		t.Fatalf("fetches = %d; want 2", got)
	}
	for ks.jwksHits.Load() == 2 {
		if _, err := v.Verify(t.Context(), bogus); reasonOf(err) != authn.ReasonUnknownKey {
			t.Fatalf("bogus: %v", err)
		}
		if ks.jwksHits.Load() == 2 && time.Since(start) > 10*time.Second {
			t.Fatal("no second refresh within 10s")
		}
	}
	if elapsed := time.Since(start); elapsed < interval {
		t.Errorf("second refresh after %v; want at least %v", elapsed, interval)
	}
	if got := ks.jwksHits.Load(); got != 3 {
		t.Errorf("fetches = %d; want 3", got)
	}
}

func TestRemoteServesStaleKeys(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	tests := map[string]func(ks *keyServer){
		"ServiceUnavailable": func(ks *keyServer) { ks.setResponse(http.StatusServiceUnavailable, "down") },
		"ErrorPage":          func(ks *keyServer) { ks.setResponse(http.StatusOK, "<html>maintenance</html>") },
		"NotAKeySet":         func(ks *keyServer) { ks.setResponse(http.StatusOK, `{"error":"oops"}`) },
		"ServerGone":         func(ks *keyServer) { ks.srv.Close() },
	}
	for name, breakIt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ks := newKeyServer(t, pub{kid: "k1", alg: "ES256", key: k.ec.Public()})
			v, logs := urlVerifier(t, ks)
			good := mint(t, jwt.SigningMethodES256, k.ec, "k1", goodClaims())
			if _, err := v.Verify(t.Context(), good); err != nil {
				t.Fatalf("before outage: %v", err)
			}

			breakIt(ks)
			// An unknown kid forces a refresh, which fails.
			unknown := mint(t, jwt.SigningMethodES256, k.ec, "k2", goodClaims())
			if _, err := v.Verify(t.Context(), unknown); reasonOf(err) != authn.ReasonUnknownKey {
				t.Errorf("unknown kid during outage: %v; want unknown_key", err)
			}
			if !strings.Contains(logs.String(), "still serving the cached keys") {
				t.Errorf("failed refresh not logged:\n%s", logs)
			}
			if _, err := v.Verify(t.Context(), good); err != nil {
				t.Errorf("cached key during outage: %v", err)
			}
			if err := v.Reload(t.Context()); err == nil {
				t.Errorf("Reload during outage succeeded")
			}
			if _, err := v.Verify(t.Context(), good); err != nil {
				t.Errorf("cached key after failed Reload: %v", err)
			}
		})
	}
}

func TestRemoteUnreachableAtStart(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	ks := newKeyServer(t, pub{kid: "k1", alg: "RS256", key: k.rsa.Public()})
	good := string(jwksFor(t, pub{kid: "k1", alg: "RS256", key: k.rsa.Public()}))
	ks.setResponse(http.StatusBadGateway, "")

	v, logs := urlVerifier(t, ks, func(c *authn.Config) { c.RefreshInterval = 20 * time.Millisecond })
	if !strings.Contains(logs.String(), "fetching issuer signing keys failed") {
		t.Errorf("start failure not logged:\n%s", logs)
	}
	token := mint(t, jwt.SigningMethodRS256, k.rsa, "k1", goodClaims())
	if _, err := v.Verify(t.Context(), token); reasonOf(err) != authn.ReasonKeysUnavailable {
		t.Errorf("while the provider is down: %v; want keys_unavailable", err)
	}

	ks.setResponse(http.StatusOK, good)
	waitFor(t, "the key set to be fetched after the provider recovered", func() bool {
		_, err := v.Verify(t.Context(), token)
		return err == nil
	})
}

func TestRemoteDiscovery(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	tests := map[string]struct {
		issuer     func(url string) string // configured issuer and token iss
		docIssuer  func(url string) string // issuer the discovery document names
		wantReason authn.Reason            // empty: accepted
	}{
		"Accepted": {
			issuer:    func(u string) string { return u },
			docIssuer: func(u string) string { return u },
		},
		"IssuerWithTrailingSlash": {
			issuer:    func(u string) string { return u + "/" },
			docIssuer: func(u string) string { return u + "/" },
		},
		"DocumentNamesAnotherIssuer": {
			issuer:     func(u string) string { return u },
			docIssuer:  func(string) string { return "https://impostor.test" },
			wantReason: authn.ReasonKeysUnavailable,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ks := newKeyServer(t, pub{kid: "d1", alg: "EdDSA", key: k.ed.Public()})
			iss := tt.issuer(ks.srv.URL)
			ks.mu.Lock()
			ks.issuer = tt.docIssuer(ks.srv.URL)
			ks.mu.Unlock()
			v, logs := urlVerifier(t, ks, func(c *authn.Config) {
				c.Issuers[0] = authn.IssuerConfig{Name: "oidc", Issuer: iss, Audiences: []string{testAudience}, Discovery: true}
			})
			token := mint(t, jwt.SigningMethodEdDSA, k.ed, "d1", with(jwt.MapClaims{"iss": iss}))
			_, err := v.Verify(t.Context(), token)
			if tt.wantReason != "" {
				if reasonOf(err) != tt.wantReason {
					t.Errorf("Verify = %v; want %s", err, tt.wantReason)
				}
				if !strings.Contains(logs.String(), "names issuer") {
					t.Errorf("issuer mismatch not logged:\n%s", logs)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if d, j := ks.discHits.Load(), ks.jwksHits.Load(); d != 1 || j != 1 {
				t.Errorf("hits at start: discovery %d, jwks %d; want 1, 1", d, j)
			}

			// Rotation through the discovered jwks_uri.
			ks.setKeys(t, pub{kid: "d1", alg: "EdDSA", key: k.ed.Public()}, pub{kid: "d2", alg: "ES256", key: k.ecOther.Public()})
			rotated := mint(t, jwt.SigningMethodES256, k.ecOther, "d2", with(jwt.MapClaims{"iss": iss}))
			if _, err := v.Verify(t.Context(), rotated); err != nil {
				t.Errorf("rotated key: %v", err)
			}
			if d, j := ks.discHits.Load(), ks.jwksHits.Load(); d != 1 || j != 2 {
				t.Errorf("hits after rotation: discovery %d, jwks %d; want 1, 2", d, j)
			}
		})
	}
}

func TestRemoteCanceledWhileFetching(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	ks := newKeyServer(t, pub{kid: "k1", alg: "RS256", key: k.rsa.Public()})
	v, _ := urlVerifier(t, ks)

	release := make(chan struct{})
	ks.mu.Lock()
	ks.block = release
	ks.mu.Unlock()
	t.Cleanup(func() { close(release) }) // runs before the server closes

	ctx, cancel := context.WithCancel(t.Context())
	hits := ks.jwksHits.Load()
	go func() {
		defer cancel()
		deadline := time.Now().Add(10 * time.Second)
		for ks.jwksHits.Load() == hits && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}()
	_, err := v.Verify(ctx, mint(t, jwt.SigningMethodRS256, k.rsa, "k2", goodClaims()))
	if reasonOf(err) != authn.ReasonCanceled || !errors.Is(err, context.Canceled) || !errors.Is(err, authn.ErrUnauthenticated) {
		t.Errorf("Verify = %v; want canceled, wrapping context.Canceled and ErrUnauthenticated", err)
	}
}

func TestCloseStopsRefreshes(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	ks := newKeyServer(t, pub{kid: "k1", alg: "RS256", key: k.rsa.Public()})
	ks.setResponse(http.StatusServiceUnavailable, "")
	// Count requests on the client side: once Close returns no request may
	// start, while one already sent may still reach the server late.
	rt := &countingTransport{next: ks.srv.Client().Transport}
	// Failing fetches retry every RefreshInterval in the background.
	v, _ := urlVerifier(t, ks, func(c *authn.Config) {
		c.RefreshInterval = time.Millisecond
		c.HTTPClient = &http.Client{Transport: rt}
	})
	waitFor(t, "background retries", func() bool { return rt.n.Load() >= 3 })
	v.Close()
	v.Close() // idempotent
	after := rt.n.Load()
	// After Close no fetch starts, whatever Verify asks for.
	if _, err := v.Verify(t.Context(), mint(t, jwt.SigningMethodRS256, k.rsa, "k1", goodClaims())); reasonOf(err) != authn.ReasonKeysUnavailable {
		t.Errorf("Verify after Close: %v", err)
	}
	if err := v.Reload(t.Context()); err == nil {
		t.Errorf("Reload after Close succeeded")
	}
	if got := rt.n.Load(); got != after {
		t.Errorf("requests after Close: %d -> %d", after, got)
	}
}

type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

func TestNewVerifierGivesUpWithContext(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	ks := newKeyServer(t, pub{kid: "k1", alg: "RS256", key: k.rsa.Public()})
	release := make(chan struct{})
	ks.mu.Lock()
	ks.block = release
	ks.mu.Unlock()
	t.Cleanup(func() { close(release) })

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := authn.NewVerifier(ctx, authn.Config{
		Issuers:    []authn.IssuerConfig{{Name: "idp", Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: ks.srv.URL + "/jwks"}},
		HTTPClient: ks.srv.Client(),
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("NewVerifier = %v; want context.DeadlineExceeded", err)
	}
}

func TestRemoteRefusesRedirectOffHTTPS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.RedirectHandler("http://idp.example.com/jwks", http.StatusFound))
	t.Cleanup(srv.Close)
	logs := &logBuffer{}
	// No HTTPClient: the verifier's own client applies the redirect policy.
	v, err := authn.NewVerifier(t.Context(), authn.Config{
		Issuers: []authn.IssuerConfig{{Name: "idp", Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: srv.URL + "/jwks"}},
		Logger:  newLogger(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if !strings.Contains(logs.String(), "redirect refused") {
		t.Errorf("redirect to plain http was not refused:\n%s", logs)
	}
}
