package leases

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var (
	// ErrNotFound means no lease has the given id.
	ErrNotFound = errors.New("leases: lease not found")
	// ErrNotActive means the operation needs an ACTIVE, unexpired lease and
	// the lease is not one (renewing a revoked or expired lease).
	ErrNotActive = errors.New("leases: lease is not active")
	// ErrNotRenewable means the lease was issued as not renewable.
	ErrNotRenewable = errors.New("leases: lease is not renewable")
	// ErrConflict means the lease changed state under the caller: it is no
	// longer PENDING when the issue completes (the reaper took it), or a
	// lease with the same id or the same backend user already exists.
	ErrConflict = errors.New("leases: lease state conflict")
	// ErrInvalidArgument means a request is malformed: a missing field, a bad
	// state name, an expiry past the maximum, a page token this store did not
	// make.
	ErrInvalidArgument = errors.New("leases: invalid argument")
	// ErrChainBroken means the event hash chain does not verify: an event was
	// altered, removed or reordered. The error names the first bad seq.
	ErrChainBroken = errors.New("leases: event hash chain broken")
)

// Codes of PostgreSQL errors this package interprets.
const (
	pgUniqueViolation = "23505"
	pgCheckViolation  = "23514"
)

// interpretError translates driver errors into this package's sentinels at
// the store's edge, once.
func interpretError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case pgUniqueViolation:
			return fmt.Errorf("%w: %s already exists (%s)", ErrConflict, pgErr.TableName, pgErr.ConstraintName)
		case pgCheckViolation:
			return fmt.Errorf("%w: %s violates %s", ErrInvalidArgument, pgErr.TableName, pgErr.ConstraintName)
		}
	}
	return err
}
