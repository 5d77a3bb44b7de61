package e2e_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/credbroker/credbroker/test/harness"
)

// spiffeAPI is the SPIFFE ID the policy of these tests grants readonly.
const spiffeAPI = "spiffe://example.org/ns/prod/sa/api"

// spire plays a SPIRE server of trust domain example.org: JWT authorities
// it can prepare and activate (`spire-server localauthority jwt prepare /
// activate`), its bundle in the exact format of `spire-server bundle show
// -format spiffe` and of its bundle endpoint (built with go-spiffe's own
// types), and JWT-SVIDs minted as SPIRE does without jwt_issuer: no iss.
type spire struct {
	t       *testing.T
	ca      *x509.Certificate
	mu      sync.Mutex
	keys    map[string]*ecdsa.PrivateKey // kid → key, in the bundle
	active  string                       // kid that signs new JWT-SVIDs
	counter int
}

func newSPIRE(t *testing.T) *spire {
	s := &spire{t: t, keys: map[string]*ecdsa.PrivateKey{}}
	caKey := s.newKey()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"SPIFFE"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	if s.ca, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	s.active = s.prepare()
	return s
}

func (s *spire) newKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	return k
}

// prepare adds a new JWT authority to the bundle and returns its kid.
func (s *spire) prepare() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counter++
	kid := fmt.Sprintf("jwt-authority-%d-%s", s.counter, strings.ToLower(rand.Text()[:6]))
	s.keys[kid] = s.newKey()
	return kid
}

// activate makes kid sign new JWT-SVIDs and drops every other authority
// from the bundle (the old one tainted and revoked).
func (s *spire) activate(kid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active = kid
	for k := range s.keys {
		if k != kid {
			delete(s.keys, k)
		}
	}
}

// bundle returns the trust bundle as SPIRE serves it.
func (s *spire) bundle(refreshHint time.Duration) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := spiffebundle.New(spiffeid.RequireTrustDomainFromString("example.org"))
	b.AddX509Authority(s.ca)
	for kid, k := range s.keys {
		if err := b.AddJWTAuthority(kid, k.Public()); err != nil {
			s.t.Fatal(err)
		}
	}
	b.SetSequenceNumber(uint64(s.counter))
	b.SetRefreshHint(refreshHint)
	data, err := b.Marshal()
	if err != nil {
		s.t.Fatal(err)
	}
	if (len(s.keys) > 0) != strings.Contains(string(data), `"use":"jwt-svid"`) || !strings.Contains(string(data), `"use":"x509-svid"`) ||
		!strings.Contains(string(data), `"spiffe_refresh_hint"`) {
		s.t.Fatalf("bundle is not in SPIRE's format: %s", data)
	}
	return data
}

// svid mints a JWT-SVID for sub with the active authority, without iss.
func (s *spire) svid(sub string) string {
	s.mu.Lock()
	kid, key := s.active, s.keys[s.active]
	s.mu.Unlock()
	return signSVID(s.t, kid, key, sub)
}

func signSVID(t *testing.T, kid string, key crypto.Signer, sub string) string {
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"sub": sub, "aud": []string{harness.Audience}, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	})
	tok.Header["kid"] = kid
	tok.Header["typ"] = "JWT"
	raw, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// spiffeBroker starts a broker whose issuers are the deployment's test
// issuer and a spiffe issuer for example.org with the given bundle source
// ("bundle_file: …" or "bundle_url: …"); the policy grants readonly to
// spiffeAPI only.
func spiffeBroker(t *testing.T, d *harness.Deployment, source string) *harness.Broker {
	t.Helper()
	cfg := d.Config(fmt.Sprintf(`roles:
  - name: readonly
    backend: %s
    owner: e2e
    default_ttl: 10m
    max_ttl: 1h
    postgres:
      member_of: [%s]
policies:
  - name: prod-api
    issuer: spire
    subject: %q
    roles: [readonly]
`, harness.BackendName, d.Backend.ReadGroup, spiffeAPI))
	issuer := fmt.Sprintf(`  - name: spire
    audiences: [%s]
    algorithms: [ES256]
    spiffe:
      trust_domain: example.org
      %s
`, harness.Audience, source)
	cfg = strings.Replace(cfg, "backends:\n", issuer+"backends:\n", 1)
	return harness.StartBroker(t, cfg, d.Env()...)
}

// verified reports whether the broker accepts token (ListRoles answers).
func verified(t *testing.T, b *harness.Broker, token string) bool {
	status, _ := b.Call(t, token, "ListRoles", map[string]any{})
	return status == http.StatusOK
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 30s waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestIdentitySPIFFEBundleFile(t *testing.T) {
	t.Parallel()
	d := harness.NewDeployment(t)
	sp := newSPIRE(t)
	path := filepath.Join(t.TempDir(), "bundle.json")
	writeAtomic(t, path, sp.bundle(5*time.Minute))
	b := spiffeBroker(t, d, "bundle_file: "+path)

	t.Run("JWTSVIDWithoutIss", func(t *testing.T) {
		cred := issue(t, b, sp.svid(spiffeAPI), map[string]any{"role": "readonly"})
		checkReadOnlyWithPGX(t, cred.URI)
		if got := str(cred.Raw, "lease", "subject"); got != spiffeAPI {
			t.Errorf("lease subject %q, want the SPIFFE ID %s", got, spiffeAPI)
		}
	})
	t.Run("CLICreds", func(t *testing.T) {
		stdout, stderr, code := b.CLI(t, sp.svid(spiffeAPI), "creds", "readonly", "--format", "env")
		if code != 0 || !strings.Contains(stdout, "PGPASSWORD=") {
			t.Fatalf("credbroker creds: exit %d\n%s", code, stderr)
		}
	})
	t.Run("OtherWorkloadDenied", func(t *testing.T) {
		status, resp := b.Call(t, sp.svid("spiffe://example.org/ns/dev/sa/api"), "IssueCredential", map[string]any{"role": "readonly"})
		if status != http.StatusForbidden {
			t.Fatalf("IssueCredential for another SPIFFE ID: HTTP %d %v", status, resp)
		}
	})
	t.Run("OtherTrustDomainRejected", func(t *testing.T) {
		status, resp := b.Call(t, sp.svid("spiffe://evil.org/ns/prod/sa/api"), "IssueCredential", map[string]any{"role": "readonly"})
		if status != http.StatusUnauthorized {
			t.Fatalf("IssueCredential for another trust domain: HTTP %d %v", status, resp)
		}
	})

	t.Run("Rotation", func(t *testing.T) {
		oldTok := sp.svid(spiffeAPI)
		next := sp.prepare() // localauthority jwt prepare: the bundle gains a key
		writeAtomic(t, path, sp.bundle(5*time.Minute))
		sp.mu.Lock()
		newKey := sp.keys[next]
		sp.mu.Unlock()
		newTok := signSVID(t, next, newKey, spiffeAPI)
		waitUntil(t, "the prepared key to be read from bundle_file", func() bool { return verified(t, b, newTok) })
		if !verified(t, b, oldTok) {
			t.Fatal("the current key stopped verifying while still in the bundle")
		}

		sp.activate(next) // localauthority jwt activate, and the old key removed
		writeAtomic(t, path, sp.bundle(5*time.Minute))
		waitUntil(t, "the removed key to stop verifying", func() bool { return !verified(t, b, oldTok) })
		cred := issue(t, b, sp.svid(spiffeAPI), map[string]any{"role": "readonly"})
		checkReadOnlyWithPGX(t, cred.URI)
		if !strings.Contains(b.Logs(), "bundle_file changed") {
			t.Error("the broker did not log the bundle reload")
		}
	})
}

// bundleEndpoint is a SPIFFE bundle endpoint on loopback (plain http is
// allowed there; https_web elsewhere).
type bundleEndpoint struct {
	srv  *httptest.Server
	mu   sync.Mutex
	body []byte
	hits atomic.Int64
}

func newBundleEndpoint(t *testing.T, body []byte) *bundleEndpoint {
	e := &bundleEndpoint{body: body}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		e.hits.Add(1)
		e.mu.Lock()
		b := e.body
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *bundleEndpoint) set(b []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.body = b
}

func TestIdentitySPIFFEBundleURL(t *testing.T) {
	t.Parallel()
	d := harness.NewDeployment(t)
	sp := newSPIRE(t)
	// A 1s hint is raised to the broker's 5s floor.
	ep := newBundleEndpoint(t, sp.bundle(time.Second))
	b := spiffeBroker(t, d, "bundle_url: "+ep.srv.URL+"/bundle")

	oldTok := sp.svid(spiffeAPI)
	cred := issue(t, b, oldTok, map[string]any{"role": "readonly"})
	checkReadOnlyWithPGX(t, cred.URI)

	// prepare: the bundle endpoint serves the new key; the broker picks it
	// up on the refresh hint, before any token names it.
	next := sp.prepare()
	ep.set(sp.bundle(time.Second))
	hits := ep.hits.Load()
	waitUntil(t, "a refresh on the bundle's refresh hint", func() bool { return ep.hits.Load() > hits })
	sp.activate(next)
	ep.set(sp.bundle(time.Second))
	cred = issue(t, b, sp.svid(spiffeAPI), map[string]any{"role": "readonly"})
	checkReadOnlyWithPGX(t, cred.URI)
	// The old key left the bundle: only a refresh on the hint (the
	// periodic refresh is 1h, and a known kid triggers none) drops it.
	waitUntil(t, "the removed key to stop verifying", func() bool { return !verified(t, b, oldTok) })
}

// TestIdentitySPIFFEConfigCheck: `config check` reads jwks_file and
// bundle_file keys as serve does; SPIRE's bundle works as either.
func TestIdentitySPIFFEConfigCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sp := newSPIRE(t)
	good := filepath.Join(dir, "bundle.json")
	writeAtomic(t, good, sp.bundle(time.Minute))
	sp.activate("none") // no JWT authority left: X.509 only
	x509Only := filepath.Join(dir, "x509-only.json")
	writeAtomic(t, x509Only, sp.bundle(time.Minute))

	config := func(name, issuer string) string {
		p := filepath.Join(dir, name+".yaml")
		writeAtomic(t, p, []byte(`listen: 127.0.0.1:8420
store: {dsn: env:CB_STORE}
issuers:
`+issuer+`backends:
  - name: app-pg
    plugin: postgres
    environment: test
    owner: team-test
    connection: {dsn: env:CB_PG}
roles:
  - name: readonly
    backend: app-pg
    default_ttl: 10m
    max_ttl: 1h
    postgres: {member_of: [g]}
policies:
  - name: p
    issuer: spire
    subject: spiffe://example.org/ns/prod/sa/api
    roles: [readonly]
`))
		return p
	}
	spiffeIss := func(path string) string {
		return "  - {name: spire, audiences: [credbroker], spiffe: {trust_domain: example.org, bundle_file: " + path + "}}\n"
	}
	jwksIss := func(path string) string {
		return "  - {name: spire, issuer: https://spire.example.org, audiences: [credbroker], jwks_file: " + path + "}\n"
	}
	for name, tc := range map[string]struct {
		issuer string
		want   string // "" means ok
	}{
		"BundleFile":        {issuer: spiffeIss(good)},
		"SPIREBundleAsJWKS": {issuer: jwksIss(good)},
		"BundleFileNoJWT":   {issuer: spiffeIss(x509Only), want: "issuers[0]: spiffe.bundle_file: " + x509Only + " holds no usable JWT-SVID signing keys"},
		"JWKSFileNoKeys":    {issuer: jwksIss(x509Only), want: "issuers[0]: jwks_file: " + x509Only + " holds no usable signing keys"},
		"BundleFileMissing": {issuer: spiffeIss(filepath.Join(dir, "nope.json")), want: "issuers[0]: spiffe.bundle_file: open "},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := config(name, tc.issuer)
			stdout, stderr, code := harness.RunCLI(t, nil, "config", "check", path)
			if tc.want == "" {
				if code != 0 || !strings.Contains(stdout, "ok") {
					t.Fatalf("config check: exit %d\n%s%s", code, stdout, stderr)
				}
				return
			}
			if code != 1 || !strings.Contains(stdout+stderr, tc.want) {
				t.Fatalf("config check: exit %d, want 1 and %q:\n%s%s", code, tc.want, stdout, stderr)
			}
			_, stderr, code = harness.RunCLI(t, nil, "serve", "--config", path)
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("serve: exit %d, want 1 and %q:\n%s", code, tc.want, stderr)
			}
		})
	}
}

// writeAtomic replaces a file the way a deploy tool should (write, rename).
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
