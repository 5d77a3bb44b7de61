package e2e_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
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

	"github.com/credbroker/credbroker/test/harness"
)

// kubeAPIServer stands in for kube-apiserver (none can run here): it serves
// the service-account issuer's key set at GET /openid/v1/jwks over HTTPS with
// a certificate from a CA this test makes, and only to a request whose
// bearer is the token it currently accepts, as an API server with the
// system:service-account-issuer-discovery binding does.
type kubeAPIServer struct {
	srv    *httptest.Server
	caFile string

	mu       sync.Mutex
	keys     map[string]*rsa.PrivateKey // kid → signing key it publishes
	bearer   string
	refusals int
}

func newKubeAPIServer(t *testing.T, bearer string) *kubeAPIServer {
	t.Helper()
	caFile, cert := makeClusterCA(t)
	k := &kubeAPIServer{caFile: caFile, bearer: bearer, keys: map[string]*rsa.PrivateKey{}}
	k.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		defer k.mu.Unlock()
		if r.Method != http.MethodGet || r.URL.Path != "/openid/v1/jwks" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+k.bearer {
			k.refusals++
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`))
			return
		}
		var set []map[string]string
		for kid, key := range k.keys {
			// The shape kube-apiserver publishes: RSA, use sig, alg RS256.
			set = append(set, map[string]string{
				"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
				"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
				"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
			})
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": set})
	}))
	k.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	k.srv.StartTLS()
	t.Cleanup(k.srv.Close)
	return k
}

// rotate makes the API server accept only bearer and publish only key.
func (k *kubeAPIServer) rotate(bearer, kid string, key *rsa.PrivateKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.bearer, k.keys = bearer, map[string]*rsa.PrivateKey{kid: key}
}

func (k *kubeAPIServer) refused() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.refusals
}

// makeClusterCA writes a fresh CA certificate to a file and returns it with
// a server certificate for 127.0.0.1 that the CA signed.
func makeClusterCA(t *testing.T) (string, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, srvKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: srvKey}
}

const clusterIssuer = "https://kubernetes.default.svc.cluster.local"

// projectedToken mints what the kubelet mounts for a pod with a projected
// service-account token of audience credbroker: RS256, the cluster's claim
// set, valid for an hour.
func projectedToken(t *testing.T, key *rsa.PrivateKey, kid, ns, sa string) string {
	t.Helper()
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": clusterIssuer,
		"sub": fmt.Sprintf("system:serviceaccount:%s:%s", ns, sa),
		"aud": []string{harness.Audience},
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
		"kubernetes.io": map[string]any{
			"namespace": ns,
			"pod":       map[string]any{"name": sa + "-6c9f8b7d5-q2x7k", "uid": "0c5a2f4e-9d1b-4e36-8a7f-3b2c1d0e9f8a"},
			"serviceaccount": map[string]any{
				"name": sa, "uid": "a4b3c2d1-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
			},
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A pod's projected service-account token gets a PostgreSQL credential from
// the built broker, whose kubernetes: issuer fetches the cluster's keys from
// the (stand-in) API server with its own token and the cluster CA, and
// re-reads that token when the kubelet rotates it.
func TestIdentityKubernetes(t *testing.T) {
	t.Parallel()
	key1, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	key2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	api := newKubeAPIServer(t, "broker-sa-token-1")
	api.rotate("broker-sa-token-1", "sa-key-1", key1)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("broker-sa-token-1"), 0o600); err != nil {
		t.Fatal(err)
	}

	d := harness.NewDeployment(t)
	issuerYAML := fmt.Sprintf(`  - name: k8s
    audiences: [%s]
    max_token_lifetime: 2h
    kubernetes:
      issuer: %s
      api_server: %s
      ca_file: %s
      token_file: %s
`, harness.Audience, clusterIssuer, api.srv.URL, api.caFile, tokenFile)
	policies := `  - name: orders-api-pods
    issuer: k8s
    subject: "system:serviceaccount:orders:*"
    claims:
      kubernetes.io.namespace: orders
      kubernetes.io.serviceaccount.name: api
    roles: [readonly]
`
	cfg := d.Config(rolesConfig(d.Backend, "10m", "1h", "") + policies)
	cfg = strings.Replace(cfg, "backends:\n", issuerYAML+"backends:\n", 1)
	b := harness.StartBroker(t, cfg, d.Env()...)

	t.Run("ProjectedTokenGetsPostgresCredential", func(t *testing.T) {
		token := projectedToken(t, key1, "sa-key-1", "orders", "api")
		cred := issue(t, b, token, map[string]any{"role": "readonly"})
		checkReadOnlyWithPGX(t, cred.URI)
		if got := str(cred.Raw, "lease", "subject"); got != "system:serviceaccount:orders:api" {
			t.Errorf("lease.subject = %q", got)
		}
	})

	t.Run("PolicyChecksNestedClaims", func(t *testing.T) {
		for name, token := range map[string]string{
			"OtherServiceAccount": projectedToken(t, key1, "sa-key-1", "orders", "web"),
			"OtherNamespace":      projectedToken(t, key1, "sa-key-1", "billing", "api"),
		} {
			status, resp := b.Call(t, token, "IssueCredential", map[string]any{"role": "readonly"})
			wantError(t, name, status, resp, http.StatusForbidden, "permission_denied")
		}
	})

	t.Run("TokenFileRotates", func(t *testing.T) {
		// The kubelet rotates the broker's token (the old one stops working)
		// and the cluster rotates its signing key.
		api.rotate("broker-sa-token-2", "sa-key-2", key2)
		if err := os.WriteFile(tokenFile+".new", []byte("broker-sa-token-2\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tokenFile+".new", tokenFile); err != nil {
			t.Fatal(err)
		}
		before := api.refused()
		// The first token with the new kid makes the broker fetch the keys
		// again, with the token it reads from the file now.
		token := projectedToken(t, key2, "sa-key-2", "orders", "api")
		cred := issue(t, b, token, map[string]any{"role": "readonly"})
		checkReadOnlyWithPGX(t, cred.URI)
		if n := api.refused() - before; n != 0 {
			t.Errorf("the API server refused %d key fetches after the token file rotated", n)
		}
	})

	if logs := b.Logs(); strings.Contains(logs, "broker-sa-token") {
		t.Errorf("the broker's own service-account token reached its log")
	}
}

// A person's lease records who they are (the email claim, else
// preferred_username) next to the opaque sub, in the lease and in its issued
// event; a workload's has no name.
func TestIdentityLeaseRecordsPersonName(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "10m", "1h", "")
	person := d.Issuer.Token(t, appSubject, map[string]any{"email": "ada@example.com", "preferred_username": "ada"}, time.Hour)
	cred := issue(t, b, person, map[string]any{"role": "readonly"})
	if got := str(cred.Raw, "lease", "subjectName"); got != "ada@example.com" {
		t.Errorf("lease.subjectName = %q; want ada@example.com", got)
	}
	workload := issue(t, b, d.Issuer.Token(t, otherSubject, nil, time.Hour), map[string]any{"role": "readonly"})
	if got, ok := dig(workload.Raw, "lease", "subjectName").(string); ok {
		t.Errorf("workload lease.subjectName = %q; want none", got)
	}
	status, resp := b.Call(t, person, "ListLeases", map[string]any{})
	if status != http.StatusOK || !strings.Contains(fmt.Sprint(resp["leases"]), "subjectName:ada@example.com") {
		t.Errorf("ListLeases: HTTP %d %v; want the lease with subjectName", status, resp)
	}
	// Dump is rows as PostgreSQL text, where a quote in a field is doubled.
	if dump := strings.ReplaceAll(d.Store.Dump(t), `""`, `"`); !strings.Contains(dump, `"subject_name": "ada@example.com"`) {
		t.Errorf("the issued event does not record subject_name:\n%s", dump)
	}
}

// config check reports the remote-issuer options as serve would: the
// insecure_http warning, a plain-http key URL that says how to fix it, and a
// kubernetes: block without its issuer.
func TestIdentityKubernetesConfigCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	check := func(name, issuers string, args ...string) (string, int) {
		t.Helper()
		p := filepath.Join(dir, name)
		yaml := `listen: 127.0.0.1:8420
store:
  dsn: env:CB_UNSET_STORE_DSN
issuers:
` + issuers + `backends:
  - name: app-pg
    plugin: postgres
    environment: test
    owner: team-test
    connection: {dsn: env:CB_UNSET_BACKEND_DSN}
roles:
  - name: readonly
    backend: app-pg
    default_ttl: 10m
    max_ttl: 1h
    postgres: {member_of: [app_read]}
policies:
  - name: api
    issuer: k8s
    subject: "system:serviceaccount:orders:api"
    claims: {kubernetes.io.namespace: orders}
    roles: [readonly]
`
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := harness.RunCLI(t, nil, append([]string{"config", "check"}, append(args, p)...)...)
		return stdout + stderr, code
	}
	k8s := `  - name: k8s
    audiences: [credbroker]
    kubernetes: {issuer: https://kubernetes.default.svc.cluster.local}
`
	if out, code := check("k8s.yaml", k8s, "--strict"); code != 0 {
		t.Errorf("config check --strict of a kubernetes: issuer: exit %d\n%s", code, out)
	}

	dev := k8s + `  - name: dev
    issuer: http://hydra.dev.internal:4444/
    audiences: [credbroker]
    discovery: true
    insecure_http: true
`
	if out, code := check("dev.yaml", dev); code != 0 || !strings.Contains(out, "issuers[1].insecure_http: true: ") {
		t.Errorf("config check with insecure_http: exit %d, want 0 and a warning\n%s", code, out)
	}
	if out, code := check("dev-strict.yaml", dev, "--strict"); code != 1 {
		t.Errorf("config check --strict with insecure_http: exit %d, want 1\n%s", code, out)
	}

	plain := strings.Replace(dev, "    insecure_http: true\n", "", 1)
	if out, code := check("plain.yaml", plain); code != 1 || !strings.Contains(out, "or set insecure_http: true") {
		t.Errorf("config check of a plain-http issuer: exit %d, want 1 and how to fix it\n%s", code, out)
	}

	noIssuer := strings.Replace(k8s, "{issuer: https://kubernetes.default.svc.cluster.local}", "{api_server: https://10.0.0.1:6443}", 1)
	if out, code := check("noissuer.yaml", noIssuer); code != 1 || !strings.Contains(out, "issuers[0]: kubernetes.issuer: is required") {
		t.Errorf("config check of kubernetes: without issuer: exit %d\n%s", code, out)
	}
}
