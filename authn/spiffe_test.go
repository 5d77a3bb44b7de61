package authn_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
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

	"github.com/credbroker/credbroker/authn"
)

const (
	spiffeTD   = "example.org"
	spiffeSub  = "spiffe://example.org/ns/prod/sa/api"
	spireIssue = "https://spire.example.org"
)

// spireBundle marshals a trust bundle the way `spire-server bundle show
// -format spiffe` and the bundle endpoint serve it, with go-spiffe's own
// types: an X.509 authority ("use": "x509-svid"), the given JWT authorities
// ("use": "jwt-svid"), spiffe_sequence and spiffe_refresh_hint.
func spireBundle(t testing.TB, refreshHint time.Duration, jwtKeys ...pub) []byte {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString(spiffeTD)
	b := spiffebundle.New(td)
	b.AddX509Authority(caCert(t))
	for _, k := range jwtKeys {
		if err := b.AddJWTAuthority(k.kid, k.key); err != nil {
			t.Fatal(err)
		}
	}
	b.SetSequenceNumber(7)
	if refreshHint > 0 {
		b.SetRefreshHint(refreshHint)
	}
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// The exact format: check the fields SPIRE's bundles carry.
	var doc struct {
		Keys []struct {
			Use string `json:"use"`
		} `json:"keys"`
		Seq  *int64 `json:"spiffe_sequence"`
		Hint *int64 `json:"spiffe_refresh_hint"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Seq == nil || (refreshHint > 0) != (doc.Hint != nil) ||
		len(doc.Keys) != 1+len(jwtKeys) || !strings.Contains(string(data), `"use":"x509-svid"`) {
		t.Fatalf("bundle is not in SPIRE's format: %s", data)
	}
	return data
}

var loadCA = sync.OnceValue(func() *x509.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"SPIFFE"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
})

func caCert(testing.TB) *x509.Certificate { return loadCA() }

// svidClaims are a JWT-SVID's claims as SPIRE without jwt_issuer mints them:
// sub, aud, exp, iat and no iss.
func svidClaims(edits jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub": spiffeSub,
		"aud": []string{testAudience},
		"iat": testNow.Add(-time.Minute).Unix(),
		"exp": testNow.Add(5 * time.Minute).Unix(),
	}
	for k, v := range edits {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// spiffeVerifier trusts a spiffe issuer for example.org with the bundle in
// a file, plus a jwks_file issuer (testIssuer) next to it.
func spiffeVerifier(t *testing.T, bundle []byte, edit func(*authn.SPIFFEConfig, *authn.IssuerConfig)) (*authn.Verifier, string, *logBuffer) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "bundle.json")
	writeFile(t, path, bundle)
	jwksPath := filepath.Join(dir, "jwks.json")
	writeFile(t, jwksPath, jwksFor(t, standardKeys()...))
	sc := &authn.SPIFFEConfig{TrustDomain: spiffeTD, BundleFile: path}
	ic := authn.IssuerConfig{Name: "spire", Audiences: []string{testAudience}, SPIFFE: sc}
	if edit != nil {
		edit(sc, &ic)
	}
	logs := &logBuffer{}
	v, err := authn.NewVerifier(t.Context(), authn.Config{
		Issuers: []authn.IssuerConfig{
			{Name: "test", Issuer: testIssuer, Audiences: []string{testAudience}, JWKSFile: jwksPath},
			ic,
		},
		Logger: newLogger(logs),
		Now:    func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return v, path, logs
}

func TestSPIFFEVerify(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	bundle := spireBundle(t, 5*time.Minute, pub{kid: "jwt-a", key: k.ec.Public()}, pub{kid: "jwt-r", key: k.rsa.Public()})
	noIssV, _, logs := spiffeVerifier(t, bundle, nil)
	withIssV, _, _ := spiffeVerifier(t, bundle, func(_ *authn.SPIFFEConfig, ic *authn.IssuerConfig) { ic.Issuer = spireIssue })

	es := func(c jwt.MapClaims) string { return mint(t, jwt.SigningMethodES256, k.ec, "jwt-a", c) }
	tests := map[string]struct {
		v          *authn.Verifier
		token      string
		wantReason authn.Reason // "" means accepted
		wantIss    string
	}{
		"NoIssuer":             {v: noIssV, token: es(svidClaims(nil))},
		"NoIssuerRSA":          {v: noIssV, token: mint(t, jwt.SigningMethodRS256, k.rsa, "jwt-r", svidClaims(nil))},
		"NoIssuerWithIssuer":   {v: withIssV, token: es(svidClaims(nil))},
		"IssuerMatches":        {v: withIssV, token: es(svidClaims(jwt.MapClaims{"iss": spireIssue})), wantIss: spireIssue},
		"IssuerNotConfigured":  {v: noIssV, token: es(svidClaims(jwt.MapClaims{"iss": spireIssue})), wantReason: authn.ReasonUnknownIssuer},
		"IssuerOther":          {v: withIssV, token: es(svidClaims(jwt.MapClaims{"iss": "https://evil.example"})), wantReason: authn.ReasonUnknownIssuer},
		"OtherTrustDomain":     {v: noIssV, token: es(svidClaims(jwt.MapClaims{"sub": "spiffe://evil.org/ns/prod/sa/api"})), wantReason: authn.ReasonNoIssuer},
		"NotSPIFFEID":          {v: noIssV, token: es(svidClaims(jwt.MapClaims{"sub": "system:serviceaccount:prod:api"})), wantReason: authn.ReasonNoIssuer},
		"InvalidSPIFFEID":      {v: withIssV, token: es(svidClaims(jwt.MapClaims{"iss": spireIssue, "sub": "spiffe://example.org/ns//api"})), wantReason: authn.ReasonInvalidClaim},
		"OtherTDWithIssuer":    {v: withIssV, token: es(svidClaims(jwt.MapClaims{"iss": spireIssue, "sub": "spiffe://evil.org/x"})), wantReason: authn.ReasonInvalidClaim},
		"WrongAudience":        {v: noIssV, token: es(svidClaims(jwt.MapClaims{"aud": "other"})), wantReason: authn.ReasonAudience},
		"Expired":              {v: noIssV, token: es(svidClaims(jwt.MapClaims{"exp": testNow.Add(-time.Hour).Unix()})), wantReason: authn.ReasonExpired},
		"SignedByOtherKey":     {v: noIssV, token: mint(t, jwt.SigningMethodES256, k.ecOther, "jwt-a", svidClaims(nil)), wantReason: authn.ReasonSignature},
		"UnknownKID":           {v: noIssV, token: mint(t, jwt.SigningMethodES256, k.ecOther, "jwt-x", svidClaims(nil)), wantReason: authn.ReasonUnknownKey},
		"JWKSIssuerStillWorks": {v: noIssV, token: mint(t, jwt.SigningMethodES256, k.ec, "ec1", goodClaims()), wantIss: testIssuer},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			id, err := tc.v.Verify(t.Context(), tc.token)
			if tc.wantReason != "" {
				if got := reasonOf(err); got != tc.wantReason {
					t.Fatalf("Verify: reason %q (%v), want %q", got, err, tc.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tc.wantIss == testIssuer {
				return
			}
			if id.Issuer != "spire" || id.Subject != spiffeSub || id.IssuerURL != tc.wantIss {
				t.Errorf("identity = issuer %q subject %q iss %q, want spire %s %q", id.Issuer, id.Subject, id.IssuerURL, spiffeSub, tc.wantIss)
			}
		})
	}
	// The X.509 authority is skipped without a warning.
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("loading a SPIRE bundle logged a warning:\n%s", logs)
	}
}

// TestSPIFFEBundleFileRotation plays SPIRE's `localauthority jwt prepare`
// (the bundle gains a key), `activate` (tokens are signed by it) and the old
// key's removal, with the bundle file rewritten in place and no Reload.
func TestSPIFFEBundleFileRotation(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	oldKey, newKey := pub{kid: "old", key: k.ec.Public()}, pub{kid: "new", key: k.ecOther.Public()}
	v, path, logs := spiffeVerifier(t, spireBundle(t, 0, oldKey), nil)
	oldTok := mint(t, jwt.SigningMethodES256, k.ec, "old", svidClaims(nil))
	newTok := mint(t, jwt.SigningMethodES256, k.ecOther, "new", svidClaims(nil))
	if _, err := v.Verify(t.Context(), newTok); reasonOf(err) != authn.ReasonUnknownKey {
		t.Fatalf("token of a key not yet in the bundle: %v, want unknown_key", err)
	}

	writeFile(t, path, spireBundle(t, 0, oldKey, newKey)) // prepare
	waitFor(t, "the new key to be picked up from bundle_file", func() bool {
		_, err := v.Verify(t.Context(), newTok)
		return err == nil
	})
	if _, err := v.Verify(t.Context(), oldTok); err != nil {
		t.Fatalf("old key stopped verifying while still in the bundle: %v", err)
	}

	writeFile(t, path, []byte(`{"keys": [`)) // a torn write keeps the keys
	writeFile(t, path, spireBundle(t, 0, newKey))
	waitFor(t, "the old key to be dropped", func() bool {
		_, err := v.Verify(t.Context(), oldTok)
		return reasonOf(err) == authn.ReasonUnknownKey
	})
	if _, err := v.Verify(t.Context(), newTok); err != nil {
		t.Fatalf("new key: %v", err)
	}
	if !strings.Contains(logs.String(), "bundle_file changed") {
		t.Errorf("no reload logged:\n%s", logs)
	}
}

func TestSPIFFEBundleFileStaysOnBadFile(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	v, path, logs := spiffeVerifier(t, spireBundle(t, 0, pub{kid: "a", key: k.ec.Public()}), nil)
	tok := mint(t, jwt.SigningMethodES256, k.ec, "a", svidClaims(nil))
	writeFile(t, path, spireBundle(t, 0)) // X.509 authorities only
	waitFor(t, "the bad bundle to be noticed", func() bool {
		return strings.Contains(logs.String(), "no usable JWT-SVID signing keys")
	})
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("keys were replaced by a bundle without JWT authorities: %v", err)
	}
}

// bundleServer is a SPIFFE bundle endpoint serving a bundle it can change.
type bundleServer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	body []byte
	hits atomic.Int64
}

func newBundleServer(t *testing.T, body []byte) *bundleServer {
	bs := &bundleServer{body: body}
	bs.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bs.hits.Add(1)
		bs.mu.Lock()
		b := bs.body
		bs.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(bs.srv.Close)
	return bs
}

func (bs *bundleServer) set(b []byte) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	bs.body = b
}

func urlSPIFFEVerifier(t *testing.T, bs *bundleServer) *authn.Verifier {
	t.Helper()
	v, err := authn.NewVerifier(t.Context(), authn.Config{
		Issuers: []authn.IssuerConfig{{
			Name: "spire", Audiences: []string{testAudience},
			SPIFFE: &authn.SPIFFEConfig{TrustDomain: "spiffe://" + spiffeTD, BundleURL: bs.srv.URL + "/bundle"},
		}},
		RefreshInterval: time.Hour,
		HTTPClient:      bs.srv.Client(),
		Now:             func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// TestSPIFFEBundleURLRefreshHint: the bundle endpoint's spiffe_refresh_hint
// (1s, raised to the 5s floor) drives the refresh, so a prepared key is
// known before any token names it.
func TestSPIFFEBundleURLRefreshHint(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	oldKey, newKey := pub{kid: "old", key: k.ec.Public()}, pub{kid: "new", key: k.ecOther.Public()}
	bs := newBundleServer(t, spireBundle(t, time.Second, oldKey))
	v := urlSPIFFEVerifier(t, bs)
	if _, err := v.Verify(t.Context(), mint(t, jwt.SigningMethodES256, k.ec, "old", svidClaims(nil))); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	bs.set(spireBundle(t, time.Second, oldKey, newKey)) // prepare
	start := time.Now()
	hits := bs.hits.Load()
	deadline := time.Now().Add(15 * time.Second)
	for bs.hits.Load() == hits {
		if time.Now().After(deadline) {
			t.Fatal("the bundle was not re-fetched on its refresh hint")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The hint (floored at 5s) asks for a refresh within seconds; the
	// periodic refresh would take an hour. Slack for a loaded machine.
	if since := time.Since(start); since > 12*time.Second {
		t.Errorf("refresh came after %s; the hint (floored at 5s) asks for sooner", since)
	}
	// The rate limit (1h) would refuse an on-demand fetch; none is needed.
	hits = bs.hits.Load()
	if _, err := v.Verify(t.Context(), mint(t, jwt.SigningMethodES256, k.ecOther, "new", svidClaims(nil))); err != nil {
		t.Fatalf("new key after the hinted refresh: %v", err)
	}
	if bs.hits.Load() != hits {
		t.Error("verifying the new key needed an on-demand fetch")
	}
}

// TestSPIFFEBundleURLUnknownKID: a token signed by a newly activated key
// makes the broker fetch the bundle at once (the bundle's hint is long).
func TestSPIFFEBundleURLUnknownKID(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	oldKey, newKey := pub{kid: "old", key: k.ec.Public()}, pub{kid: "new", key: k.ecOther.Public()}
	bs := newBundleServer(t, spireBundle(t, time.Hour, oldKey))
	v := urlSPIFFEVerifier(t, bs)
	bs.set(spireBundle(t, time.Hour, oldKey, newKey))
	if _, err := v.Verify(t.Context(), mint(t, jwt.SigningMethodES256, k.ecOther, "new", svidClaims(nil))); err != nil {
		t.Fatalf("new key: %v", err)
	}
	// A bundle without JWT authorities is a failed fetch: keys stay.
	bs.set(spireBundle(t, time.Hour))
	if err := v.Reload(t.Context()); err == nil || !strings.Contains(err.Error(), "no usable JWT-SVID signing keys") {
		t.Fatalf("Reload with a bundle of no JWT authorities: %v", err)
	}
	if _, err := v.Verify(t.Context(), mint(t, jwt.SigningMethodES256, k.ec, "old", svidClaims(nil))); err != nil {
		t.Fatalf("old key after a bad bundle: %v", err)
	}
}

func TestSPIFFEConfigValidate(t *testing.T) {
	t.Parallel()
	base := func() authn.IssuerConfig {
		return authn.IssuerConfig{Name: "spire", Audiences: []string{"credbroker"},
			SPIFFE: &authn.SPIFFEConfig{TrustDomain: "example.org", BundleFile: "/etc/spire/bundle.json"}}
	}
	tests := map[string]struct {
		edit func(*authn.IssuerConfig)
		want string // substring of the error; "" means valid
	}{
		"Valid":           {edit: func(*authn.IssuerConfig) {}},
		"ValidWithIssuer": {edit: func(c *authn.IssuerConfig) { c.Issuer = "https://spire.example.org" }},
		"ValidURL": {edit: func(c *authn.IssuerConfig) {
			c.SPIFFE.BundleFile, c.SPIFFE.BundleURL = "", "https://spire.example.org:8443"
		}},
		"ValidSPIFFEForm":   {edit: func(c *authn.IssuerConfig) { c.SPIFFE.TrustDomain = "spiffe://example.org" }},
		"NoTrustDomain":     {edit: func(c *authn.IssuerConfig) { c.SPIFFE.TrustDomain = "" }, want: "spiffe.trust_domain: is required"},
		"BadTrustDomain":    {edit: func(c *authn.IssuerConfig) { c.SPIFFE.TrustDomain = "Example.org" }, want: `spiffe.trust_domain: "Example.org" is not a SPIFFE trust domain`},
		"NoBundle":          {edit: func(c *authn.IssuerConfig) { c.SPIFFE.BundleFile = "" }, want: "spiffe.bundle_file: no bundle"},
		"BothBundles":       {edit: func(c *authn.IssuerConfig) { c.SPIFFE.BundleURL = "https://x.example" }, want: "spiffe.bundle_url: conflicts with bundle_file"},
		"PlainHTTP":         {edit: func(c *authn.IssuerConfig) { c.SPIFFE.BundleFile, c.SPIFFE.BundleURL = "", "http://spire.example.org" }, want: "spiffe.bundle_url:"},
		"LoopbackHTTP":      {edit: func(c *authn.IssuerConfig) { c.SPIFFE.BundleFile, c.SPIFFE.BundleURL = "", "http://127.0.0.1:8443" }},
		"JWKSFileConflicts": {edit: func(c *authn.IssuerConfig) { c.JWKSFile = "/x.json" }, want: "jwks_file: conflicts with spiffe"},
		"DiscoveryConflict": {edit: func(c *authn.IssuerConfig) { c.Issuer, c.Discovery = "https://x.example", true }, want: "discovery: conflicts with spiffe"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			err := authn.Config{Issuers: []authn.IssuerConfig{c}}.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("DuplicateTrustDomain", func(t *testing.T) {
		a, b := base(), base()
		b.Name = "spire2"
		b.SPIFFE = &authn.SPIFFEConfig{TrustDomain: "spiffe://example.org", BundleFile: "/b.json"}
		err := authn.Config{Issuers: []authn.IssuerConfig{a, b}}.Validate()
		if err == nil || !strings.Contains(err.Error(), "spiffe.trust_domain: example.org is already configured by issuers[0]") {
			t.Fatalf("Validate: %v", err)
		}
	})
}

// TestCheckKeyFile is what `config check` runs: a key file is read and
// parsed as the server does, and one without a usable key fails.
func TestCheckKeyFile(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	dir := t.TempDir()
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, data)
		return p
	}
	good := file("good.json", spireBundle(t, 0, pub{kid: "a", key: k.ec.Public()}))
	x509Only := file("x509.json", spireBundle(t, 0))
	spiffe := func(path string) authn.IssuerConfig {
		return authn.IssuerConfig{SPIFFE: &authn.SPIFFEConfig{TrustDomain: spiffeTD, BundleFile: path}}
	}
	tests := map[string]struct {
		cfg  authn.IssuerConfig
		want string
	}{
		"Bundle":              {cfg: spiffe(good)},
		"BundleNoJWTKeys":     {cfg: spiffe(x509Only), want: `spiffe.bundle_file: ` + x509Only + ` holds no usable JWT-SVID signing keys`},
		"BundleMissing":       {cfg: spiffe(filepath.Join(dir, "nope.json")), want: "spiffe.bundle_file: open "},
		"BundleNotJSON":       {cfg: spiffe(file("bad.json", []byte("<html>"))), want: "is not a SPIFFE bundle"},
		"SPIREBundleAsJWKS":   {cfg: authn.IssuerConfig{JWKSFile: good}},
		"JWKSNoUsableKeys":    {cfg: authn.IssuerConfig{JWKSFile: x509Only}, want: "jwks_file: " + x509Only + " holds no usable signing keys"},
		"RemoteIssuerNoCheck": {cfg: authn.IssuerConfig{JWKSURL: "https://x.example/jwks"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.cfg.CheckKeyFile()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("CheckKeyFile: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("CheckKeyFile: %v, want %q", err, tc.want)
			}
		})
	}
}
