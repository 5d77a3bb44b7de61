package authn_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/credbroker/credbroker/authn"
)

// testCA is a private CA made by the test, and a server certificate it
// signed for 127.0.0.1.
type testCA struct {
	pemFile string // the CA certificate, PEM
	server  tls.Certificate
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test cluster CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, srvKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return testCA{pemFile: path, server: tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}
}

// fakeAPIServer stands in for kube-apiserver's service-account issuer
// discovery: it serves GET /openid/v1/jwks over HTTPS with a certificate of
// the test CA, and only to a request bearing the current valid token.
type fakeAPIServer struct {
	srv *httptest.Server

	mu       sync.Mutex
	jwks     []byte
	valid    string // the bearer token it accepts
	accepted int    // requests served with keys
	refused  int    // requests refused for their bearer
}

func newFakeAPIServer(t *testing.T, ca testCA, valid string, keys ...pub) *fakeAPIServer {
	t.Helper()
	f := &fakeAPIServer{jwks: jwksFor(t, keys...), valid: valid}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/openid/v1/jwks" {
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+f.valid {
			f.refused++
			http.Error(w, `{"kind":"Status","status":"Failure","reason":"Unauthorized","code":401}`, http.StatusUnauthorized)
			return
		}
		f.accepted++
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(f.jwks)
	}))
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.server}, MinVersion: tls.VersionTLS12}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPIServer) rotate(t *testing.T, valid string, keys ...pub) {
	t.Helper()
	b := jwksFor(t, keys...)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.valid, f.jwks = valid, b
}

func (f *fakeAPIServer) counts() (accepted, refused int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepted, f.refused
}

const k8sIssuer = "https://kubernetes.default.svc.cluster.local"

// k8sClaims is the claim set of a projected service-account token.
func k8sClaims(ns, sa string) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": k8sIssuer,
		"sub": "system:serviceaccount:" + ns + ":" + sa,
		"aud": []string{testAudience},
		"iat": testNow.Add(-time.Minute).Unix(),
		"nbf": testNow.Add(-time.Minute).Unix(),
		"exp": testNow.Add(59 * time.Minute).Unix(),
		"kubernetes.io": map[string]any{
			"namespace": ns,
			"pod":       map[string]any{"name": sa + "-7d4b9c-x2x9z", "uid": "1f0c5c7e-3c1a-4b55-9d2a-2b8e0b1c6d01"},
			"serviceaccount": map[string]any{
				"name": sa, "uid": "6f1e5b0a-8a43-4d8e-b1a4-3f2d7c9e0a12",
			},
		},
	}
}

func k8sVerifier(t *testing.T, kc authn.KubernetesConfig, edit ...func(*authn.Config)) (*authn.Verifier, *logBuffer, error) {
	t.Helper()
	logs := &logBuffer{}
	cfg := authn.Config{
		Issuers: []authn.IssuerConfig{{
			Name: "k8s", Audiences: []string{testAudience}, Kubernetes: &kc,
		}},
		RefreshInterval: 200 * time.Millisecond,
		Logger:          newLogger(logs),
		Now:             func() time.Time { return testNow },
	}
	for _, e := range edit {
		e(&cfg)
	}
	v, err := authn.NewVerifier(t.Context(), cfg)
	if err == nil {
		t.Cleanup(v.Close)
	}
	return v, logs, err
}

// The kubernetes: preset fetches the service-account keys from the API
// server over TLS with the cluster CA, authenticated with the broker's own
// token, which it reads again when the kubelet rotates it.
func TestKubernetesIssuer(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	ca := newTestCA(t)
	api := newFakeAPIServer(t, ca, "broker-token-1", pub{kid: "sa-key-1", alg: "RS256", key: k.rsa.Public()})
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, []byte("broker-token-1\n"))

	v, logs, err := k8sVerifier(t, authn.KubernetesConfig{
		Issuer: k8sIssuer, APIServer: api.srv.URL, CAFile: ca.pemFile, TokenFile: tokenFile,
	}, func(c *authn.Config) { c.PeriodicRefresh = 50 * time.Millisecond })
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	if accepted, _ := api.counts(); accepted != 1 {
		t.Fatalf("key fetches served at start = %d; want 1\n%s", accepted, logs)
	}

	id, err := v.Verify(t.Context(), mint(t, jwt.SigningMethodRS256, k.rsa, "sa-key-1", k8sClaims("orders", "api")))
	if err != nil {
		t.Fatalf("service-account token: %v\n%s", err, logs)
	}
	if id.Issuer != "k8s" || id.IssuerURL != k8sIssuer || id.Subject != "system:serviceaccount:orders:api" {
		t.Errorf("identity = %+v", id)
	}
	if ns := id.Claims["kubernetes.io"].(map[string]any)["namespace"]; ns != "orders" {
		t.Errorf("kubernetes.io.namespace = %v", ns)
	}

	// A token whose iss is the API server, not the configured issuer, is
	// not from this issuer.
	wrongIss := k8sClaims("orders", "api")
	wrongIss["iss"] = api.srv.URL
	if _, err := v.Verify(t.Context(), mint(t, jwt.SigningMethodRS256, k.rsa, "sa-key-1", wrongIss)); reasonOf(err) != authn.ReasonUnknownIssuer {
		t.Errorf("iss = API server URL: %v; want unknown_issuer", err)
	}

	// The kubelet rotates the broker's token and the old one stops working;
	// the cluster rotates its signing key. The next fetch must use the new
	// token from the file.
	// The file first, as the kubelet writes the new token before the old
	// one is refused, so no fetch can race it.
	_, refusedBefore := api.counts()
	writeFile(t, tokenFile, []byte("broker-token-2"))
	api.rotate(t, "broker-token-2", pub{kid: "sa-key-2", alg: "RS256", key: k.rsaOther.Public()})
	rotated := mint(t, jwt.SigningMethodRS256, k.rsaOther, "sa-key-2", k8sClaims("orders", "api"))
	waitFor(t, "a token signed with the rotated key to verify", func() bool {
		_, err := v.Verify(t.Context(), rotated)
		return err == nil
	})
	if _, refused := api.counts(); refused > refusedBefore+1 {
		// At most one fetch can race the file write.
		t.Errorf("API server refused %d fetches after the token file rotated", refused-refusedBefore)
	}
	if strings.Contains(logs.String(), "broker-token") {
		t.Errorf("the broker's bearer token reached the log:\n%s", logs)
	}
}

func TestKubernetesIssuerFetchFailures(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	ca := newTestCA(t)
	otherCA := newTestCA(t)
	api := newFakeAPIServer(t, ca, "broker-token", pub{kid: "sa-key-1", alg: "RS256", key: k.rsa.Public()})
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	writeFile(t, good, []byte("broker-token"))
	stale := filepath.Join(dir, "stale")
	writeFile(t, stale, []byte("expired-token"))
	notPEM := filepath.Join(dir, "not.pem")
	writeFile(t, notPEM, []byte("hello"))

	tests := map[string]struct {
		kc       authn.KubernetesConfig
		startErr string // NewVerifier fails with this
		logged   string // otherwise the failed fetch logs this
	}{
		"WrongCA":          {kc: authn.KubernetesConfig{CAFile: otherCA.pemFile, TokenFile: good}, logged: "certificate signed by unknown authority"},
		"RefusedToken":     {kc: authn.KubernetesConfig{CAFile: ca.pemFile, TokenFile: stale}, logged: "401 Unauthorized"},
		"NoTokenFile":      {kc: authn.KubernetesConfig{CAFile: ca.pemFile, TokenFile: filepath.Join(dir, "missing")}, logged: "kubernetes.token_file: open "},
		"MissingCAFile":    {kc: authn.KubernetesConfig{CAFile: filepath.Join(dir, "missing.crt"), TokenFile: good}, startErr: "issuer k8s: ca_file: open "},
		"CAFileNotPEM":     {kc: authn.KubernetesConfig{CAFile: notPEM, TokenFile: good}, startErr: "holds no PEM certificate"},
		"DefaultInCluster": {kc: authn.KubernetesConfig{}, startErr: "ca_file: open " + authn.DefaultKubernetesCAFile},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			kc := tt.kc
			kc.Issuer = k8sIssuer
			if kc.APIServer == "" && kc.CAFile != "" {
				kc.APIServer = api.srv.URL
			}
			v, logs, err := k8sVerifier(t, kc)
			if tt.startErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.startErr) {
					t.Fatalf("NewVerifier = %v; want an error with %q", err, tt.startErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewVerifier: %v", err)
			}
			if !strings.Contains(logs.String(), tt.logged) {
				t.Errorf("log lacks %q:\n%s", tt.logged, logs)
			}
			token := mint(t, jwt.SigningMethodRS256, k.rsa, "sa-key-1", k8sClaims("orders", "api"))
			if _, err := v.Verify(t.Context(), token); reasonOf(err) != authn.ReasonKeysUnavailable {
				t.Errorf("Verify = %v; want keys_unavailable", err)
			}
		})
	}
}

// ca_file works for every remote issuer, not only kubernetes.
func TestRemoteCAFile(t *testing.T) {
	t.Parallel()
	k := loadKeys()
	ca := newTestCA(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(jwksFor(t, pub{kid: "k1", alg: "ES256", key: k.ec.Public()}))
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.server}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	token := mint(t, jwt.SigningMethodES256, k.ec, "k1", goodClaims())

	for name, tt := range map[string]struct {
		caFile string
		want   authn.Reason
	}{
		"WithCAFile":      {caFile: ca.pemFile},
		"SystemRootsOnly": {want: authn.ReasonKeysUnavailable},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v, err := authn.NewVerifier(t.Context(), authn.Config{
				Issuers: []authn.IssuerConfig{{
					Name: "idp", Issuer: testIssuer, Audiences: []string{testAudience},
					JWKSURL: srv.URL + "/jwks", CAFile: tt.caFile,
				}},
				RefreshInterval: time.Hour,
				Now:             func() time.Time { return testNow },
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(v.Close)
			if _, err := v.Verify(t.Context(), token); reasonOf(err) != tt.want {
				t.Errorf("Verify = %v; want reason %q", err, tt.want)
			}
		})
	}
}

func TestIssuerConfigRemoteOptions(t *testing.T) {
	t.Parallel()
	kube := func(edit func(*authn.IssuerConfig)) authn.IssuerConfig {
		c := authn.IssuerConfig{
			Name: "k8s", Audiences: []string{"credbroker"},
			Kubernetes: &authn.KubernetesConfig{Issuer: k8sIssuer},
		}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	url := func(edit func(*authn.IssuerConfig)) authn.IssuerConfig {
		c := authn.IssuerConfig{Name: "idp", Issuer: "https://idp.example.com", Audiences: []string{"credbroker"}, JWKSURL: "https://idp.example.com/jwks"}
		edit(&c)
		return c
	}
	tests := map[string]struct {
		cfg  authn.IssuerConfig
		want []string
	}{
		"KubernetesDefaults":        {cfg: kube(nil)},
		"KubernetesTopIssuer":       {cfg: kube(func(c *authn.IssuerConfig) { c.Issuer, c.Kubernetes.Issuer = k8sIssuer, "" })},
		"KubernetesSameIssuerTwice": {cfg: kube(func(c *authn.IssuerConfig) { c.Issuer = k8sIssuer })},
		"KubernetesEverything": {cfg: kube(func(c *authn.IssuerConfig) {
			c.Kubernetes = &authn.KubernetesConfig{Issuer: "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC", APIServer: "https://10.0.0.1:6443", CAFile: "/etc/k8s/ca.crt", TokenFile: "/var/run/secrets/tokens/credbroker"}
		})},
		"CAFileForURL": {cfg: url(func(c *authn.IssuerConfig) { c.CAFile = "/etc/ssl/private-ca.pem" })},
		"InsecureHTTP": {cfg: url(func(c *authn.IssuerConfig) { c.JWKSURL, c.InsecureHTTP = "http://idp.dev.internal/jwks", true })},
		"InsecureHTTPDiscovery": {cfg: url(func(c *authn.IssuerConfig) {
			c.JWKSURL, c.Issuer, c.Discovery, c.InsecureHTTP = "", "http://hydra.dev.internal:4444/", true, true
		})},

		"KubernetesNoIssuer": {cfg: kube(func(c *authn.IssuerConfig) { c.Kubernetes.Issuer = "" }), want: []string{"kubernetes.issuer: is required"}},
		"KubernetesTwoIssuers": {
			cfg:  kube(func(c *authn.IssuerConfig) { c.Issuer = "https://other.example" }),
			want: []string{`issuer: "https://other.example" differs from kubernetes.issuer`},
		},
		"KubernetesAndJWKSURL": {
			cfg:  kube(func(c *authn.IssuerConfig) { c.JWKSURL = "https://x.example/jwks" }),
			want: []string{"kubernetes: conflicts with jwks_url"},
		},
		"KubernetesPlainHTTPAPIServer": {
			cfg:  kube(func(c *authn.IssuerConfig) { c.Kubernetes.APIServer = "http://10.0.0.1:8080" }),
			want: []string{`kubernetes.api_server: "http://10.0.0.1:8080" must use https`},
		},
		"KubernetesTwoCAFiles": {
			cfg:  kube(func(c *authn.IssuerConfig) { c.CAFile, c.Kubernetes.CAFile = "/a.crt", "/b.crt" }),
			want: []string{"ca_file: conflicts with kubernetes.ca_file"},
		},
		"PlainHTTPSaysHow": {
			cfg:  url(func(c *authn.IssuerConfig) { c.JWKSURL = "http://idp.dev.internal/jwks" }),
			want: []string{`jwks_url: "http://idp.dev.internal/jwks" must use https (with ca_file for a private CA); plain http is allowed for loopback hosts, or set insecure_http: true`},
		},
		"CAFileWithJWKSFile": {
			cfg:  url(func(c *authn.IssuerConfig) { c.JWKSURL, c.JWKSFile, c.CAFile = "", "/k.json", "/ca.pem" }),
			want: []string{"ca_file: only applies to keys fetched over https"},
		},
		"KubernetesInsecureHTTP": {
			cfg:  kube(func(c *authn.IssuerConfig) { c.Kubernetes.APIServer, c.InsecureHTTP = "http://10.0.0.1:8080", true }),
			want: []string{"insecure_http: cannot be used with kubernetes"},
		},
		"KubernetesLogin": {
			cfg:  kube(func(c *authn.IssuerConfig) { c.Login = &authn.LoginConfig{ClientID: "credbroker"} }),
			want: []string{"login: is for issuers of people"},
		},
		"LoginOnInsecureDevProvider": {cfg: url(func(c *authn.IssuerConfig) {
			c.JWKSURL, c.Issuer, c.Discovery, c.InsecureHTTP = "", "http://hydra.dev.internal:4444/", true, true
			c.Login = &authn.LoginConfig{ClientID: "credbroker"}
		})},
		"InsecureHTTPWithJWKSFile": {
			cfg:  url(func(c *authn.IssuerConfig) { c.JWKSURL, c.JWKSFile, c.InsecureHTTP = "", "/k.json", true }),
			want: []string{"insecure_http: only applies"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			errs := tt.cfg.Validate()
			if len(errs) != len(tt.want) {
				t.Fatalf("Validate() = %q; want %d errors starting with %q", errs, len(tt.want), tt.want)
			}
			for i, err := range errs {
				if !strings.HasPrefix(err.Error(), tt.want[i]) {
					t.Errorf("error %d = %q; want it to start with %q", i, err, tt.want[i])
				}
			}
		})
	}

	if w := url(func(c *authn.IssuerConfig) { c.InsecureHTTP = true }).Warnings(); len(w) != 1 || !strings.HasPrefix(w[0], "insecure_http: true: ") {
		t.Errorf("Warnings with insecure_http = %q; want one insecure_http warning", w)
	}
	if w := kube(nil).Warnings(); len(w) != 0 {
		t.Errorf("Warnings without insecure_http = %q; want none", w)
	}
}

// Two issuers may not claim the same iss, whether it is written as issuer:
// or as kubernetes.issuer.
func TestConfigValidateKubernetesIssuerUnique(t *testing.T) {
	t.Parallel()
	cfg := authn.Config{Issuers: []authn.IssuerConfig{
		{Name: "k8s", Audiences: []string{"credbroker"}, Kubernetes: &authn.KubernetesConfig{Issuer: k8sIssuer}},
		{Name: "k8s-file", Issuer: k8sIssuer, Audiences: []string{"credbroker"}, JWKSFile: "/etc/credbroker/k8s.jwks.json"},
	}}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), `issuers[1] (k8s-file): issuer: "`+k8sIssuer+`" is already configured by issuers[0]`) {
		t.Errorf("Validate = %v; want the duplicate iss named", err)
	}
}
