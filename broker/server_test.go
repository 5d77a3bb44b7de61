package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/credbroker/credbroker/plugins/plugintest"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/proto/credbroker/v1/credbrokerv1connect"
)

// TestServeTLS runs the server with tls: configured, in process against the
// real store, and calls it with the gRPC protocol, which needs the HTTP/2
// that TLS negotiates.
func TestServeTLS(t *testing.T) {
	admin := plugintest.PostgresURL(t)
	store := plugintest.NewTestDatabase(t, admin)
	backend := plugintest.NewTestDatabase(t, admin)
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)

	iss := newTestIssuer(t, dir)
	t.Setenv("CB_TLS_TEST_STORE", store)
	t.Setenv("CB_TLS_TEST_BACKEND", backend)
	cfg, err := ParseConfig(fmt.Appendf(nil, `
listen: 127.0.0.1:8420
tls: {cert_file: %s, key_file: %s}
store: {dsn: env:CB_TLS_TEST_STORE}
issuers:
  - %s
backends:
  - {name: pg, plugin: postgres, environment: test, owner: team-test, connection: {dsn: env:CB_TLS_TEST_BACKEND}}
roles:
  - {name: reader, backend: pg, default_ttl: 1m, max_ttl: 5m, postgres: {member_of: [pg_read_all_data]}}
policies:
  - {name: p, issuer: test, subject: app, roles: [reader]}
`, certFile, keyFile, iss.yaml()), testDrivers)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	srv, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Close()
	})

	token := iss.token(t, "app", time.Hour)
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	t.Cleanup(httpClient.CloseIdleConnections)
	bearer := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	})
	c := credbrokerv1connect.NewCredentialServiceClient(httpClient, "https://"+ln.Addr().String(),
		connect.WithGRPC(), connect.WithInterceptors(bearer))
	resp, err := c.ListRoles(t.Context(), connect.NewRequest(&credbrokerv1.ListRolesRequest{}))
	if err != nil {
		t.Fatalf("ListRoles over gRPC with TLS: %v", err)
	}
	if len(resp.Msg.GetRoles()) != 1 || resp.Msg.GetRoles()[0].GetName() != "reader" {
		t.Errorf("roles = %v", resp.Msg.GetRoles())
	}

	// TLS negotiates HTTP/2, which gRPC clients other than Go's need.
	const health = "/grpc.health.v1.Health/Check"
	hres, err := httpClient.Post("https://"+ln.Addr().String()+health, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	hres.Body.Close()
	if hres.ProtoMajor != 2 || hres.StatusCode != http.StatusOK {
		t.Errorf("health check over TLS: %s %s, want HTTP/2 200", hres.Proto, hres.Status)
	}

	// Plaintext to the TLS port gets nowhere.
	plain, err := http.Post("http://"+ln.Addr().String()+health, "application/json", strings.NewReader("{}"))
	if err == nil {
		plain.Body.Close()
		if plain.StatusCode == http.StatusOK {
			t.Error("a plaintext request to the TLS listener was served")
		}
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	return selfSignedUntil(t, dir, time.Now().Add(time.Hour))
}

// selfSignedUntil is selfSigned with a certificate valid until notAfter.
func selfSignedUntil(t *testing.T, dir string, notAfter time.Time) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "credbroker test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
