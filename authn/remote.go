package authn

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

const (
	// fetchTimeout bounds one refresh (discovery plus JWKS) whatever the
	// HTTP client's own timeout.
	fetchTimeout = 30 * time.Second
	// coldRetry is the longest wait between fetches while an issuer has no
	// keys at all, so a provider that was down when the broker started is
	// picked up soon after it recovers.
	coldRetry = 5 * time.Second
)

// remote keeps the keys of a jwks_url or discovery issuer fresh: one fetch at
// start, a periodic refresh, and a refresh when a token names an unknown kid,
// at most once per minInterval (coldRetry while it has no keys at all). A
// failed fetch leaves the cached keys in place.
type remote struct {
	v            *Verifier
	iss          *issuer
	client       *http.Client
	ownClient    bool                   // client was made for this issuer (ca_file, insecure_http); closed on Close
	jwksURL      string                 // configured jwks_url, or the API server's for kubernetes; empty with discovery
	discoveryURL string                 // <issuer>/.well-known/openid-configuration; empty without discovery
	insecureHTTP bool                   // insecure_http: plain http allowed on any host
	bearer       func() (string, error) // Authorization for the JWKS request (kubernetes); nil: none
	minInterval  time.Duration
	periodic     time.Duration

	mu           sync.Mutex
	discovered   string        // jwks_uri from the last good discovery document
	lastOnDemand time.Time     // start of the last refresh an unknown kid triggered
	inflight     chan struct{} // closed when the running fetch ends; nil when idle
	lastErr      error         // outcome of the last fetch
	failures     int           // consecutive failed fetches, for the retry backoff
}

// newRemote sets up the key fetches of a jwks_url, discovery or kubernetes
// issuer. base is the verifier's HTTP client; an issuer with ca_file or
// insecure_http gets a client of its own. It reads ca_file, so a missing or
// bad file is an error at start.
func newRemote(v *Verifier, is *issuer, base *http.Client, minInterval, periodic time.Duration) (*remote, error) {
	ic := is.cfg
	r := &remote{
		v:            v,
		iss:          is,
		client:       base,
		jwksURL:      ic.JWKSURL,
		insecureHTTP: ic.InsecureHTTP,
		minInterval:  minInterval,
		periodic:     periodic,
	}
	if ic.Discovery {
		r.discoveryURL = discoveryURL(ic.Issuer)
	}
	if k := ic.Kubernetes; k != nil {
		r.jwksURL = k.jwksURL()
		r.bearer = bearerFromFile(k.TokenFile)
	}
	if s := ic.SPIFFE; s != nil {
		r.jwksURL = s.BundleURL
	}
	if ic.CAFile != "" || ic.InsecureHTTP {
		client, err := issuerClient(base, ic.CAFile, ic.InsecureHTTP)
		if err != nil {
			return nil, err
		}
		r.client, r.ownClient = client, true
	}
	return r, nil
}

// issuerClient makes an HTTP client like base that trusts the CA
// certificates in caFile (when set) instead of the system roots, and whose
// redirects may go to plain http when insecureHTTP is set.
func issuerClient(base *http.Client, caFile string, insecureHTTP bool) (*http.Client, error) {
	t, ok := base.Transport.(*http.Transport)
	if !ok || t == nil {
		t = http.DefaultTransport.(*http.Transport)
	}
	t = t.Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: %s holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")", caFile)
		}
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if t.TLSClientConfig != nil {
			tc = t.TLSClientConfig.Clone()
		}
		tc.RootCAs = pool
		t.TLSClientConfig = tc
	}
	return &http.Client{
		Transport:     t,
		Timeout:       cmp.Or(base.Timeout, defaultHTTPTimeout),
		CheckRedirect: redirectPolicy(insecureHTTP),
	}, nil
}

// closeIdle closes the idle connections of a client made for this issuer.
func (r *remote) closeIdle() {
	if r != nil && r.ownClient {
		r.client.CloseIdleConnections()
	}
}

// trigger starts a fetch unless one is running, and returns a channel closed
// when that fetch ends. After Close it returns a closed channel.
func (r *remote) trigger() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.triggerLocked()
}

func (r *remote) triggerLocked() <-chan struct{} {
	if r.inflight != nil {
		return r.inflight
	}
	done := make(chan struct{})
	if !r.v.goAdd() {
		close(done)
		return done
	}
	r.inflight = done
	go func() {
		defer r.v.wg.Done()
		err := r.fetch(r.v.ctx)
		r.mu.Lock()
		r.inflight = nil
		r.lastErr = err
		if err != nil {
			r.failures++
		} else {
			r.failures = 0
		}
		r.mu.Unlock()
		close(done)
	}()
	return done
}

// refreshUnknownKID runs (or joins) a refresh because a token named a key the
// cache lacks, unless one already ran within minInterval. It reports whether
// a refresh ran, and waits for it unless ctx ends first.
func (r *remote) refreshUnknownKID(ctx context.Context) (bool, error) {
	r.mu.Lock()
	if r.inflight == nil && !r.lastOnDemand.IsZero() && time.Since(r.lastOnDemand) < r.spacing() {
		r.mu.Unlock()
		return false, nil
	}
	if r.inflight == nil {
		r.lastOnDemand = time.Now()
	}
	done := r.triggerLocked()
	r.mu.Unlock()
	select {
	case <-done:
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// spacing is the minimum time between fetches an unknown kid triggers, and
// the retry delay after a failed fetch.
func (r *remote) spacing() time.Duration {
	if r.iss.keys.Load() == nil {
		return min(r.minInterval, coldRetry)
	}
	return r.minInterval
}

// refreshNow runs a refresh outside the rate limit (Reload) and returns its
// outcome.
func (r *remote) refreshNow(ctx context.Context) error {
	// A refresh already in flight may have started before the caller's
	// request; let it finish, then run one of our own.
	r.mu.Lock()
	prior := r.inflight
	r.mu.Unlock()
	if prior != nil {
		select {
		case <-prior:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case <-r.trigger():
	case <-ctx.Done():
		return ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// run refreshes periodically until ctx ends; after a failed fetch it retries
// with a jittered exponential backoff capped at spacing.
func (r *remote) run(ctx context.Context) {
	defer r.v.wg.Done()
	for {
		r.mu.Lock()
		wait := r.period()
		if r.lastErr != nil {
			wait = retryDelay(r.failures, r.spacing(), rand.Int64N)
		}
		r.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		select {
		case <-ctx.Done():
			return
		case <-r.trigger():
		}
	}
}

// retryDelay is the wait before the next fetch after failures consecutive
// failed ones: it starts at min(1s, limit/8), doubles with each failure up to
// limit, and is jittered down by up to half so that many brokers do not
// retry in step. randN returns a number in [0, n).
func retryDelay(failures int, limit time.Duration, randN func(n int64) int64) time.Duration {
	if limit <= 0 {
		return 0
	}
	d := min(time.Second, max(limit/8, time.Millisecond))
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	half := d / 2
	return d - half + time.Duration(randN(int64(half)+1))
}

// fetch gets the JWK Set (discovering its URL first if needed) and swaps it
// in. On failure the previous keys stay.
func (r *remote) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	log := r.iss.log
	err := r.fetchOnce(ctx)
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) && r.v.ctx.Err() != nil {
		return err // the verifier is closing; nothing to report
	}
	if cached := r.iss.keys.Load(); cached != nil {
		log.Warn("refreshing issuer signing keys failed; still serving the cached keys",
			slog.Any("error", err), slog.Int("cached_keys", len(cached.keys)))
	} else {
		log.Warn("fetching issuer signing keys failed; its tokens are rejected until a fetch succeeds",
			slog.Any("error", err))
	}
	return err
}

func (r *remote) fetchOnce(ctx context.Context) error {
	u := r.jwksURL
	if r.discoveryURL != "" {
		r.mu.Lock()
		u = r.discovered
		r.mu.Unlock()
		if u == "" {
			var err error
			if u, err = r.discover(ctx); err != nil {
				return err
			}
			r.mu.Lock()
			r.discovered = u
			r.mu.Unlock()
		}
	}
	body, err := r.get(ctx, u)
	if err == nil {
		var set *keySet
		if set, err = r.parseKeys(body, r.iss.log.With(slog.String("jwks_url", u))); err == nil && len(set.keys) == 0 {
			// A set with nothing to verify with is a failed fetch, not a
			// rotation to no keys: swapping it in would reject every token.
			err = noUsableKeys(body)
		}
		if err == nil {
			prev := r.iss.keys.Swap(set)
			level := slog.LevelDebug
			if prev == nil {
				level = slog.LevelInfo
			}
			r.iss.log.Log(ctx, level, "issuer signing keys loaded",
				slog.String("jwks_url", u), slog.Any("kids", set.kids()))
			return nil
		}
		err = fmt.Errorf("JWK Set from %s: %w", u, err)
	}
	if r.discoveryURL != "" {
		// The provider may have moved its keys; discover again next time.
		r.mu.Lock()
		r.discovered = ""
		r.mu.Unlock()
	}
	return err
}

// noUsableKeys explains a JWK Set that parsed but holds no key this verifier
// can use. parseJWKS has logged why each entry was skipped.
func noUsableKeys(body []byte) error {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	_ = json.Unmarshal(body, &doc) // parsed once already
	if len(doc.Keys) == 0 {
		return errors.New(`holds no keys ("keys" is empty)`)
	}
	return fmt.Errorf("holds no usable signing keys: all %d entries were skipped (each reason is logged as \"skipping JWK Set entry\")", len(doc.Keys))
}

// discover reads the OpenID Provider configuration and returns its jwks_uri.
func (r *remote) discover(ctx context.Context) (string, error) {
	body, err := r.get(ctx, r.discoveryURL)
	if err != nil {
		return "", fmt.Errorf("OIDC discovery: %w", err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("OIDC discovery: %s is not a JSON document: %w", r.discoveryURL, err)
	}
	// OpenID Connect Discovery 1.0 §4.3: the document's issuer must be
	// exactly the one it was fetched for.
	if doc.Issuer != r.iss.cfg.Issuer {
		return "", fmt.Errorf("OIDC discovery: %s names issuer %q, not %q", r.discoveryURL, doc.Issuer, r.iss.cfg.Issuer)
	}
	if doc.JWKSURI == "" {
		return "", fmt.Errorf("OIDC discovery: %s has no jwks_uri", r.discoveryURL)
	}
	if err := checkURL(doc.JWKSURI, r.insecureHTTP); err != nil {
		return "", fmt.Errorf("OIDC discovery: jwks_uri %w", err)
	}
	return doc.JWKSURI, nil
}

func (r *remote) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if r.bearer != nil && u == r.jwksURL {
		tok, err := r.bearer()
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("GET %s: response is larger than %d bytes", u, maxJWKSSize)
	}
	return body, nil
}

// checkRedirect keeps the verifier's own HTTP client from following a
// redirect off https, so a key fetch cannot be downgraded to plain http.
func checkRedirect(req *http.Request, via []*http.Request) error {
	return redirectPolicy(false)(req, via)
}

// redirectPolicy is checkRedirect for an issuer, which with insecureHTTP may
// be redirected to plain http.
func redirectPolicy(insecureHTTP bool) func(*http.Request, []*http.Request) error {
	check := checkFetchURL
	if insecureHTTP {
		check = func(raw string) error { return checkURL(raw, true) }
	}
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("stopped after 5 redirects")
		}
		if err := check(req.URL.String()); err != nil {
			return fmt.Errorf("redirect refused: %w", err)
		}
		return nil
	}
}

func discoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}
