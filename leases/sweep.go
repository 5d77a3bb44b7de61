package leases

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/plugins"
)

// EventOrphanRevoked is the kind of the event a sweep records for each orphan
// it revokes; sweepLockSpace is the first key of the per-backend sweep lock.
const (
	EventOrphanRevoked = "orphan_revoked"
	sweepLockSpace     = 0x63627377 // "cbsw": the first key of the per-backend sweep lock
)

// Sweep asks every backend for the users this broker manages and revokes
// the orphans: users no lease accounts for. A user is accounted for while a
// lease with its backend and username is PENDING, ACTIVE or REVOKING, or was
// revoked after the listing began (the reaper got there first). Leases are
// written before their users are created, so a user being issued right now
// always has its PENDING lease already. Users the backend dates are spared
// until they are older than PendingGrace.
//
// The markers plugins list by (a marker role, the cb_ prefix, a tag) are
// shared by every credbroker deployment on a server: two deployments with
// separate stores must not both sweep one backend server (turn the sweep off
// for the backend in one of them).
//
// One replica sweeps a backend at a time (a session advisory lock, held on
// a connection of the reaper's pool with no transaction open, since the
// backend is called meanwhile); the others skip it. Each orphan revoked is recorded as an
// orphan_revoked event. Sweep returns how many orphans it revoked; a failing
// backend does not stop the others.
func (r *Reaper) Sweep(ctx context.Context) (revoked int, err error) {
	if r.cfg.Backends == nil {
		return 0, nil
	}
	var errs []error
	for _, backend := range r.cfg.Backends() {
		n, err := r.sweepBackend(ctx, backend)
		revoked += n
		if err != nil {
			if ctx.Err() != nil {
				return revoked, ctx.Err()
			}
			errs = append(errs, fmt.Errorf("sweep %s: %w", backend, err))
		}
	}
	return revoked, errors.Join(errs...)
}

func (r *Reaper) sweepBackend(ctx context.Context, backend string) (revoked int, err error) {
	p, _, ok := r.cfg.Plugin(backend, "")
	if !ok || p == nil {
		return 0, fmt.Errorf("%w: %q", errBackendNotConfigured, backend)
	}
	// The lock is session-level on a connection of the reaper's own pool,
	// with no transaction open: the backend is called while it is held, and
	// no store transaction may wait on a backend.
	conn, err := r.loop.pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, sweepLockSpace, backendKey(backend)).Scan(&locked); err != nil {
		return 0, err
	}
	if !locked {
		r.logger.Debug("another replica is sweeping this backend", slog.String("backend", backend))
		return 0, nil
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
		defer cancel()
		if _, uerr := conn.Exec(uctx, `SELECT pg_advisory_unlock($1, $2)`, sweepLockSpace, backendKey(backend)); uerr != nil {
			// Closing the session is what releases the lock then.
			_ = conn.Conn().Close(uctx)
		}
	}()

	started := r.now()
	lctx, cancel := context.WithTimeout(ctx, r.cfg.RevokeTimeout)
	users, err := p.ListManaged(lctx)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("list managed users: %w", err)
	}
	var names []string
	for _, u := range users {
		if u.CreatedAt.IsZero() || u.CreatedAt.Before(started.Add(-r.cfg.PendingGrace)) {
			names = append(names, u.Username)
		}
	}
	if len(names) == 0 {
		return 0, nil
	}
	// A lease of any backend accounts for a user: several backends of
	// one broker may share a server (two databases of one PostgreSQL
	// cluster share its roles), and usernames are unique across them.
	// Leases are written before their users are created, so this read,
	// after the listing, sees the lease of every user listed.
	rows, err := conn.Query(ctx, `
		SELECT u FROM unnest($1::text[]) AS u
		WHERE NOT EXISTS (
			SELECT 1 FROM leases l
			WHERE l.username = u
			  AND (l.state <> 'REVOKED' OR l.revoked_at >= $2))`,
		names, started)
	if err != nil {
		return 0, err
	}
	orphans, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, err
	}
	for _, username := range orphans {
		if err := r.revokeOrphan(ctx, p, backend, username); err != nil {
			r.logger.Warn("cannot revoke orphan; the next sweep tries again",
				slog.String("backend", backend), slog.String("username", username),
				slog.String("error", plugins.SanitizeString(err.Error())))
			continue
		}
		revoked++
	}
	return revoked, nil
}

func (r *Reaper) revokeOrphan(ctx context.Context, p plugins.Plugin, backend, username string) error {
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RevokeTimeout)
	// An orphan has no lease: no role, no spec, no state.
	_, err := p.Revoke(rctx, plugins.RevokeRequest{Username: username})
	cancel()
	r.metrics.countRevoke(backend, err == nil)
	if err != nil {
		return err
	}
	r.metrics.countOrphan(backend)
	r.logger.Warn("revoked a managed user no lease accounts for",
		slog.String("backend", backend), slog.String("username", username))
	// The user is gone: record it even if the reaper is stopping now.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	return r.loop.RecordEvent(wctx, Event{
		Kind:    EventOrphanRevoked,
		Actor:   reaperActor,
		Details: map[string]string{"backend": backend, "username": username},
	})
}

// backendKey maps a backend name onto the second key of its sweep lock.
func backendKey(backend string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(backend))
	return int32(h.Sum32())
}
