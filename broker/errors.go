package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/credbroker/credbroker/authn"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/plugins"
)

// Errors a caller can act on. Their messages are what the caller sees.
var (
	errLeaseNotFound = connect.NewError(connect.CodeNotFound, errors.New("lease not found: check the lease id (you can only see your own leases)"))
	errNotRenewable  = connect.NewError(connect.CodeFailedPrecondition, errors.New("the lease's role is not renewable: issue a new credential instead"))
	errNotActive     = connect.NewError(connect.CodeFailedPrecondition, errors.New("the lease is not active (it expired or was revoked): issue a new credential"))
	errStoreDown     = connect.NewError(connect.CodeUnavailable, errors.New("the lease store is unavailable; nothing was issued: retry shortly"))
)

// toConnect turns any error from the broker's collaborators into a Connect
// error a caller can act on, without leaking what the caller should not learn.
// Unexpected errors become `internal`; their (sanitized) detail is logged
// server-side only. This is the one place that decides codes.
func toConnect(ctx context.Context, log *slog.Logger, op string, err error) error {
	var ce *connect.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return ce
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeOf(err), err)
	case errors.Is(err, authn.ErrUnauthenticated):
		return connect.NewError(connect.CodeUnauthenticated, err)
	case errors.Is(err, leases.ErrNotFound):
		return errLeaseNotFound
	case errors.Is(err, leases.ErrNotActive):
		return errNotActive
	case errors.Is(err, leases.ErrNotRenewable):
		return errNotRenewable
	case errors.Is(err, leases.ErrInvalidArgument):
		return connect.NewError(connect.CodeInvalidArgument, errors.New(strings.TrimPrefix(err.Error(), "leases: ")))
	case errors.Is(err, leases.ErrConflict):
		return connect.NewError(connect.CodeAborted, errors.New("the lease changed while "+op+" ran (it may have been revoked): check it with credbroker lease get and retry"))
	case isStoreDown(err):
		log.WarnContext(ctx, op+": lease store unavailable", slog.String("error", plugins.SanitizeString(err.Error())))
		return errStoreDown
	}
	log.ErrorContext(ctx, op+" failed", slog.String("error", plugins.SanitizeString(err.Error())))
	return connect.NewError(connect.CodeInternal, errors.New(op+" failed: an internal error was logged on the server"))
}

// isStoreDown reports whether err says PostgreSQL could not be reached or
// dropped the connection: a failed connect, a network error, a connection
// exception (class 08), a server shutting down or terminating sessions
// (57P01-57P03, what every restart and failover sends), or a cut stream.
func isStoreDown(err error) bool {
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
