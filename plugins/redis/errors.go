package redis

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"

	goredis "github.com/redis/go-redis/v9"

	"github.com/credbroker/credbroker/plugins"
)

// Errors a Plugin returns, wrapped with what it was doing; test them with
// errors.Is.
var (
	// ErrUserExists is returned by Create for a username a node already
	// has: Create does not take over a user it did not make.
	ErrUserExists = errors.New("the user already exists")
	// ErrNoUser is returned by Renew for a user the server does not have.
	ErrNoUser = errors.New("the user does not exist")
	// ErrNotManaged is returned for a username without [plugins.ManagedPrefix]:
	// credbroker did not make it, so it never creates, changes or deletes it.
	ErrNotManaged = errors.New("the username does not start with " + plugins.ManagedPrefix + ": credbroker did not make it")
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("the plugin is closed")
)

// classify marks err with [plugins.ErrUnavailable] when it says the server
// could not be reached, dropped the connection, refused the admin's login or
// cannot serve yet, so the broker answers `unavailable` rather than
// `internal`.
func classify(err error) error {
	if err == nil || errors.Is(err, plugins.ErrUnavailable) || !connectionFailure(err) {
		return err
	}
	return fmt.Errorf("%w: %w", plugins.ErrUnavailable, err)
}

func connectionFailure(err error) bool {
	if errors.Is(err, goredis.ErrClosed) {
		return false // the plugin was closed: not the server's fault
	}
	switch {
	case goredis.IsAuthError(err), // the admin's credentials no longer work
		goredis.IsLoadingError(err), goredis.IsMasterDownError(err), goredis.IsTryAgainError(err),
		goredis.IsClusterDownError(err), goredis.IsMaxClientsError(err),
		errors.Is(err, goredis.ErrPoolTimeout), errors.Is(err, goredis.ErrPoolExhausted):
		return true
	}
	// A TLS handshake that fails leaves the plugin as unable to work as a
	// refused connection does.
	var (
		verifyErr    *tls.CertificateVerificationError
		authorityErr x509.UnknownAuthorityError
		hostnameErr  x509.HostnameError
		recordErr    tls.RecordHeaderError
		netErr       net.Error
	)
	return errors.As(err, &verifyErr) || errors.As(err, &authorityErr) || errors.As(err, &hostnameErr) ||
		errors.As(err, &recordErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
