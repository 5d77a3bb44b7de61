package postgres

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/credbroker/credbroker/plugins"
)

// classify marks err with [plugins.ErrUnavailable] when it says the server
// could not be reached or dropped the connection, so the broker answers
// `unavailable` rather than `internal`.
func classify(err error) error {
	if err == nil || errors.Is(err, plugins.ErrUnavailable) || !connectionFailure(err) {
		return err
	}
	return fmt.Errorf("%w: %w", plugins.ErrUnavailable, err)
}

func connectionFailure(err error) bool {
	// Any failure to connect, whether the network, the server's startup or the
	// admin's authentication failed, leaves the plugin unable to work.
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case pgerrcode.AdminShutdown, pgerrcode.CrashShutdown, pgerrcode.CannotConnectNow,
			pgerrcode.TooManyConnections:
			return true
		}
		return pgerrcode.IsConnectionException(pgErr.Code)
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// sqlState returns err's SQLSTATE, or "" when err did not come from the server.
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
