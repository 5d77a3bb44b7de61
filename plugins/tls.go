package plugins

import (
	"crypto/x509"
	"fmt"
	"os"
)

// CAPool reads a PEM file of certificate authorities (a connection's
// `tls.ca_file`) into a pool for tls.Config.RootCAs. A file that cannot be
// read or holds no PEM certificate is an error naming it.
func CAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
