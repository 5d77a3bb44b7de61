package redis_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/redis"
)

// testPKI is a CA made inside the test and a server certificate it signed
// for the name redis.test only, so reaching 127.0.0.1 needs server_name.
type testPKI struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
}

const tlsServerName = "redis.test"

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "credbroker test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: tlsServerName},
		DNSNames:  []string{tlsServerName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{
		caFile:   write("ca.pem", "CERTIFICATE", caDER),
		certFile: write("server.pem", "CERTIFICATE", der),
		keyFile:  write("server-key.pem", "EC PRIVATE KEY", keyDER),
		pool:     pool,
	}
}

// TestTLS runs a server that only speaks TLS: ca_file and server_name reach
// it, the credential is a rediss:// URL that logs in, and every way of
// getting TLS wrong fails to open.
func TestTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	clientTLS := &tls.Config{RootCAs: pki.pool, ServerName: tlsServerName, MinVersion: tls.VersionTLS12}
	s := startServerWith(t, clientTLS, "",
		"--tls-cert-file", pki.certFile, "--tls-key-file", pki.keyFile, "--tls-ca-cert-file", pki.caFile,
		"--tls-auth-clients", "no")

	p := open(t, connection(t, "addr: "+s.addr()+"\ntls: {enabled: true, ca_file: "+pki.caFile+", server_name: "+tlsServerName+"}"))
	if err := p.Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	cred := create(t, p, "tls", parseRole(t, ordersRole))
	if !strings.HasPrefix(cred.URI.Reveal(), "rediss://") || !strings.HasPrefix(cred.Env["REDIS_URL"].Reveal(), "rediss://") {
		t.Errorf("URI = %s, want a rediss:// URL", plugins.SanitizeString(cred.URI.Reveal()))
	}
	opt, err := userOptions(cred)
	if err != nil {
		t.Fatal(err)
	}
	if opt.TLSConfig == nil {
		t.Fatal("the credential's URL does not ask for TLS")
	}
	opt.TLSConfig = clientTLS
	session, err := loginWith(t.Context(), opt, cred.Password)
	if err != nil {
		t.Fatalf("login over TLS: %v", err)
	}
	defer session.Close()
	if err := session.CheckGrants(t.Context()); err != nil {
		t.Errorf("CheckGrants over TLS: %v", err)
	}

	for name, tt := range map[string]struct {
		tls         string
		unavailable bool
		wantErr     string
	}{
		"UnknownCA":       {tls: "{enabled: true, server_name: " + tlsServerName + "}", unavailable: true},
		"WrongName":       {tls: "{enabled: true, ca_file: " + pki.caFile + "}", unavailable: true},
		"Plaintext":       {tls: "{enabled: false}", unavailable: true},
		"MissingCAFile":   {tls: "{enabled: true, ca_file: " + filepath.Join(t.TempDir(), "none.pem") + "}", wantErr: "ca_file"},
		"CAFileNoCertPEM": {tls: "{enabled: true, ca_file: " + emptyFile(t) + "}", wantErr: "holds no PEM certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := plugins.Open(t.Context(), redis.New(), connection(t, "addr: "+s.addr()+"\ntls: "+tt.tls))
			switch {
			case err == nil:
				t.Fatal("Open succeeded")
			case tt.unavailable && !errors.Is(err, plugins.ErrUnavailable):
				t.Errorf("Open = %v, want ErrUnavailable", err)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Open = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func emptyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(path, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
