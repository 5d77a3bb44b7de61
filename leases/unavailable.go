package leases

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrUnavailable means the lease store could not be reached or dropped the
// connection: nothing the call was to write is known to be written, and
// retrying shortly may succeed. Every exported method of [Store] and
// [Reaper] that talks to the database marks such failures with it, so
// callers need not inspect driver errors.
var ErrUnavailable = errors.New("leases: lease store unavailable")

// unavailableError marks err as [ErrUnavailable] without changing its text,
// which callers log.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() []error {
	return []error{e.err, ErrUnavailable}
}

// callerError carries an error returned by a caller's callback (the backend
// call of [Store.Renew], the sink of [Store.Events]) through the store: it
// is the caller's, so it is never marked unavailable, even when it is a
// network error of some other service.
type callerError struct{ err error }

func (e *callerError) Error() string { return e.err.Error() }
func (e *callerError) Unwrap() error { return e.err }

// markUnavailable wraps err in [ErrUnavailable] when it says the database
// could not be reached; it returns any other error, and nil, unchanged.
// Exported methods defer it over their named error result.
func markUnavailable(err *error) {
	if *err != nil && isConnectionFailure(*err) {
		*err = &unavailableError{err: *err}
	}
}

// isConnectionFailure reports whether err says PostgreSQL could not be
// reached or dropped the connection: a failed connect, a network error, a
// connection exception (class 08), a server shutting down or terminating
// sessions (57P01-57P03, what every restart and failover sends), or a cut
// stream. The caller's context ending is the caller's, not the store being
// down; so is an error of the caller's own callback.
func isConnectionFailure(err error) bool {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if _, ok := errors.AsType[*callerError](err); ok {
		return false
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &connErr), errors.As(err, &netErr), pgconn.SafeToRetry(err),
		errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case errors.As(err, &pgErr):
		return strings.HasPrefix(pgErr.Code, "08") || slices.Contains([]string{"57P01", "57P02", "57P03"}, pgErr.Code)
	}
	return false
}
