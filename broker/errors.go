package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/credbroker/credbroker/authn"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/plugins"
)

// Errors a caller can act on, each with its code; their messages are what
// the caller sees. These and the table of toConnect are the only places the
// broker makes Connect errors: handlers return them (or their collaborators'
// errors) through toConnect.
var (
	errLeaseNotFound = connect.NewError(connect.CodeNotFound, errors.New("lease not found: check the lease id (you can only see your own leases)"))
	errNotRenewable  = connect.NewError(connect.CodeFailedPrecondition, errors.New("the lease's role is not renewable: issue a new credential instead"))
	errNotActive     = connect.NewError(connect.CodeFailedPrecondition, errors.New("the lease is not active (it expired or was revoked): issue a new credential"))
	errStoreDown     = connect.NewError(connect.CodeUnavailable, errors.New("the lease store is unavailable; nothing was issued: retry shortly"))

	errMissingToken    = connect.NewError(connect.CodeUnauthenticated, errors.New("missing identity token: send Authorization: Bearer <token>"))
	errNotAdmin        = connect.NewError(connect.CodePermissionDenied, errors.New("this call needs an identity an admin policy matches"))
	errIssueRate       = connect.NewError(connect.CodeResourceExhausted, errors.New("too many credentials issued to this identity: slow down and reuse (renew) the ones you have"))
	errLeaseIDRequired = connect.NewError(connect.CodeInvalidArgument, errors.New("lease_id is required"))
	errPageSize        = connect.NewError(connect.CodeInvalidArgument, errors.New("page_size must be between 0 and 500"))
	errRevokeAll       = connect.NewError(connect.CodeInvalidArgument, errors.New("give at least one of role, backend, subject: revoking every lease is not one call"))
	errEndBeforeStart  = connect.NewError(connect.CodeInvalidArgument, errors.New("end_time is before start_time"))
)

// errUnauthenticated: the token did not verify; err says why.
func errUnauthenticated(err error) error { return connect.NewError(connect.CodeUnauthenticated, err) }

// errSlowDown: the identity is over limits.request_rate.
func errSlowDown(rate float64, burst int) error {
	return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
		"too many requests from this identity (limits.request_rate %g a second, bursts of %d): slow down and retry in a moment", rate, burst))
}

// errFieldTooLong: a caller-controlled string over its cap.
func errFieldTooLong(name string, n, limit int) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s is %d bytes; at most %d", name, n, limit))
}

// errTTLTooShort: a requested ttl or increment below minTTL.
func errTTLTooShort(field string) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s must be at least %s", field, minTTL))
}

// errIssueDenied: the role does not exist or is not granted; the same answer
// either way, so that it does not tell which roles exist.
func errIssueDenied(role string) error {
	return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("role %q does not exist or is not granted to you: `credbroker roles` lists the roles you may request, `credbroker whoami` how the broker sees your token", role))
}

// errBreakGlassOnly: the role is granted only with a break-glass reason.
func errBreakGlassOnly(role, subject string, maxTTL time.Duration) error {
	return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("role %q is break-glass only for %s: give a break_glass_reason (credbroker creds %s --break-glass \"why\"); it is recorded, and the lease ends within %s",
		role, subject, role, maxTTL))
}

// errBackendUnreachable: the backend did not answer a create; nothing was issued.
func errBackendUnreachable(backend string) error {
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("backend %s could not be reached to create the user; nothing was issued: retry shortly", backend))
}

// errBackendRefused: the backend refused a create; retrying will not help
// until the role or the backend is fixed, and the (sanitized) reason helps
// whoever fixes it.
func errBackendRefused(backend string, err error) error {
	return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("backend %s refused to create the user; nothing was issued: %v", backend, err))
}

// errBackendRenew: the backend could not extend the lease's user.
func errBackendRenew(backend string, err error) error {
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("backend %s could not extend the user: %w", backend, err))
}

// errRoleGone: a lease's role left the config.
func errRoleGone(role string) error {
	return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("role %q is no longer configured: the lease cannot be renewed", role))
}

// errBackendGone: a lease's backend left the config.
func errBackendGone(backend string) error {
	return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("backend %q is no longer configured", backend))
}

// errNoLongerGranted: the holder's policies no longer grant the lease's role.
func errNoLongerGranted(role string, expires time.Time) error {
	return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("role %q is no longer granted to you (`credbroker whoami` shows what is): the lease cannot be renewed and ends at %s",
		role, expires.UTC().Format(time.RFC3339)))
}

// errUnknownService: a health check of a service the broker does not offer.
func errUnknownService(name string) error {
	return connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q", name))
}

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
		return errUnauthenticated(err)
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
	case errors.Is(err, leases.ErrUnavailable): // the store says so itself
		log.WarnContext(ctx, op+": lease store unavailable", slog.String("error", plugins.SanitizeString(err.Error())))
		return errStoreDown
	}
	log.ErrorContext(ctx, op+" failed", slog.String("error", plugins.SanitizeString(err.Error())))
	return connect.NewError(connect.CodeInternal, errors.New(op+" failed: an internal error was logged on the server"))
}
