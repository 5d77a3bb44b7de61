package deploy

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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/test/harness"
)

// TestChartProbesAgainstBroker runs the broker with the config the chart
// renders (addresses, certificate files and the issuer swapped for the
// test's) and sends the chart's readiness probe as the kubelet does: an
// HTTPS GET that does not check the certificate and carries no token. It
// must answer 200. The metrics listener must answer /metrics over TLS with
// the same certificate, as the ServiceMonitor scrapes it.
func TestChartProbesAgainstBroker(t *testing.T) {
	o := mustRender(t, []string{filepath.Join(chartDir(t), "ci", "defaults-values.yaml")})
	dep := mustOne(t, "Deployment", o.Deployments)
	probe := dep.Spec.Template.Spec.Containers[0].ReadinessProbe
	if probe == nil || probe.HTTPGet == nil {
		t.Fatal("the default readiness probe is not an HTTP GET")
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(mustOne(t, "ConfigMap", o.ConfigMaps).Data["credbroker.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, pool := selfSignedCert(t)
	iss := harness.NewIssuer(t, "probe")
	cfg["listen"] = harness.ListenPlaceholder
	cfg["metrics_listen"] = harness.MetricsListenPlaceholder
	cfg["tls"] = map[string]any{"cert_file": certFile, "key_file": keyFile}
	cfg["issuers"] = []any{map[string]any{
		"name": iss.Name, "issuer": iss.URL, "audiences": []any{harness.Audience}, "jwks_file": iss.JWKSPath,
	}}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	store := harness.NewStore(t)
	b := harness.StartBrokerWith(t, harness.Options{
		Config:     string(out),
		Env:        []string{"CREDBROKER_DATABASE_URL=" + store.URL},
		HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
	})

	// The kubelet: no certificate check, no token, a plain GET.
	kubelet := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // as the kubelet's HTTPS probes do
	}}
	url := b.Addr + probe.HTTPGet.Path
	if !strings.HasPrefix(url, "https://") || probe.HTTPGet.Scheme != "HTTPS" {
		t.Fatalf("probe %s, scheme %s: want HTTPS", url, probe.HTTPGet.Scheme)
	}
	resp, err := kubelet.Get(url)
	if err != nil {
		t.Fatalf("readiness probe GET %s: %v", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("readiness probe GET %s = %s, want 200", url, resp.Status)
	}

	// Prometheus, as the ServiceMonitor configures it: HTTPS, the CA.
	scraper := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err = scraper.Get(b.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET %s/metrics: %v", b.MetricsAddr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s/metrics = %s, want 200", b.MetricsAddr, resp.Status)
	}
}

// selfSignedCert writes a self-signed P-256 certificate for 127.0.0.1 and
// its key, and returns their paths and a pool that trusts it.
func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "credbroker.credbroker.svc"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
