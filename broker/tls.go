package broker

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// Client certificate policies of tls.client_auth.
const (
	ClientAuthRequire       = "require"
	ClientAuthVerifyIfGiven = "verify_if_given"
)

// tlsMaterial is what the TLS files hold: the server certificate and the
// client certificate authorities (nil without client_ca_file).
type tlsMaterial struct {
	cert       tls.Certificate
	clientCAs  *x509.CertPool
	clientAuth tls.ClientAuthType
}

// loadTLS reads the files cfg names.
func loadTLS(cfg *TLSConfig) (*tlsMaterial, error) {
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: cert_file %s, key_file %s: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	m := &tlsMaterial{cert: cert, clientAuth: tls.NoClientCert}
	if cfg.ClientCAFile == "" {
		return m, nil
	}
	pem, err := os.ReadFile(cfg.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("tls.client_ca_file: %w", err)
	}
	m.clientCAs = x509.NewCertPool()
	if !m.clientCAs.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls.client_ca_file: %s holds no PEM certificate", cfg.ClientCAFile)
	}
	m.clientAuth = tls.RequireAndVerifyClientCert
	if cfg.ClientAuth == ClientAuthVerifyIfGiven {
		m.clientAuth = tls.VerifyClientCertIfGiven
	}
	return m, nil
}

// notAfter is when the serving certificate expires.
func (m *tlsMaterial) notAfter() (time.Time, error) {
	leaf := m.cert.Leaf // tls.LoadX509KeyPair fills it
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(m.cert.Certificate[0]); err != nil {
			return time.Time{}, err
		}
	}
	return leaf.NotAfter, nil
}

// certReloader serves the current TLS material to every new connection, so
// that a SIGHUP replaces the certificate (and the client CAs) without closing
// the connections already open.
type certReloader struct {
	cur atomic.Pointer[tlsMaterial]
}

// config returns the tls.Config of a listener: each handshake takes the
// material current at that moment.
func (r *certReloader) config(nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := r.cur.Load()
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				NextProtos:   nextProtos,
				Certificates: []tls.Certificate{m.cert},
				ClientCAs:    m.clientCAs,
				ClientAuth:   m.clientAuth,
			}, nil
		},
	}
}
