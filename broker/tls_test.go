package broker

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadTLS: client_auth maps to the handshake's policy (require by
// default once client_ca_file is set) and bad files are named.
func TestLoadTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, dir)
	caFile := certFile // any PEM certificate will do as a CA here
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		cfg     TLSConfig
		want    tls.ClientAuthType
		wantErr string
	}{
		"NoClientCA":       {cfg: TLSConfig{CertFile: certFile, KeyFile: keyFile}, want: tls.NoClientCert},
		"DefaultIsRequire": {cfg: TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile}, want: tls.RequireAndVerifyClientCert},
		"Require":          {cfg: TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, ClientAuth: ClientAuthRequire}, want: tls.RequireAndVerifyClientCert},
		"VerifyIfGiven":    {cfg: TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, ClientAuth: ClientAuthVerifyIfGiven}, want: tls.VerifyClientCertIfGiven},
		"MissingCert":      {cfg: TLSConfig{CertFile: filepath.Join(dir, "nope.crt"), KeyFile: keyFile}, wantErr: "nope.crt"},
		"MissingCA":        {cfg: TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: filepath.Join(dir, "nope.pem")}, wantErr: "tls.client_ca_file"},
		"CANotPEM":         {cfg: TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: notPEM}, wantErr: "holds no PEM certificate"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m, err := loadTLS(&tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("loadTLS = %v, want an error naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var r certReloader
			r.cur.Store(m)
			got, err := r.config(nil).GetConfigForClient(&tls.ClientHelloInfo{})
			if err != nil {
				t.Fatal(err)
			}
			if got.ClientAuth != tc.want || (tc.want != tls.NoClientCert) != (got.ClientCAs != nil) || len(got.Certificates) != 1 {
				t.Errorf("handshake config: client auth %v (CAs %v), %d certificates; want %v", got.ClientAuth, got.ClientCAs != nil, len(got.Certificates), tc.want)
			}
		})
	}
}
