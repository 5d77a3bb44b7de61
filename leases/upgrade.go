package leases

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/plugins"
)

// upgradeTimeout bounds each plugin UpgradeState call.
const upgradeTimeout = 10 * time.Second

// UpgradeResult counts what [Reaper.UpgradeStates] did.
type UpgradeResult struct {
	// Upgraded leases now have the state their plugin derived.
	Upgraded int
	// NoState leases' plugins derived nothing (they keep no state, or have
	// no [plugins.StateUpgrader]); they get an empty state, as a lease of
	// such a plugin issued now does, and are not asked again.
	NoState int
	// Failed leases' plugins returned an error, or were not asked because
	// their backend did not answer or is not configured; they are retried
	// at the next start. Revoke derives their state itself meanwhile.
	Failed int
}

// UpgradeStates derives the plugin state of leases written before contract
// v2 (the store holds NULL for them) from what their backend's markers hold
// today: for every PENDING, ACTIVE or REVOKING lease without a state whose
// backend is configured, it asks the plugin's [plugins.StateUpgrader] with
// the lease's username, role and the role's current spec, and stores the
// result. Call it once at start, after the backends are open and before
// serving. Leases are read in keyset batches of BatchSize; each call has its
// own timeout; once a backend is unavailable its remaining leases are left
// for the next start, so a backend that is down delays start by one timeout,
// not one per lease. Failures are logged and counted, never fatal: a lease
// without a state is still revoked (the plugin's Revoke derives the state
// itself). The error is the store's, or ctx's.
//
// Several replicas may run it at once: a lease whose state is set meanwhile
// (by another replica, or by Activate) keeps that state.
func (r *Reaper) UpgradeStates(ctx context.Context) (_ UpgradeResult, err error) {
	defer markUnavailable(&err)
	var (
		res   UpgradeResult
		after string
		down  = map[string]bool{} // backends that did not answer in this run
	)
	for {
		batch, err := r.loop.stateless(ctx, after, r.cfg.BatchSize)
		if err != nil {
			return res, fmt.Errorf("list leases without plugin state: %w", err)
		}
		for _, l := range batch {
			after = l.ID
			log := r.logger.With(slog.String("lease", l.ID), slog.String("backend", l.Backend), slog.String("username", l.Username))
			if down[l.Backend] {
				res.Failed++
				continue
			}
			state, err := r.upgradeOne(ctx, l)
			switch {
			case ctx.Err() != nil:
				return res, ctx.Err()
			case errors.Is(err, errBackendNotConfigured):
				down[l.Backend] = true
				res.Failed++
				log.Warn("cannot derive the plugin state of a lease written before contract v2: its backend is not configured; its revoke waits for the backend")
			case err != nil:
				res.Failed++
				// A backend that cannot be reached, or that hangs until the
				// call's timeout, is asked no more in this run: start must
				// not wait a timeout per lease.
				if plugins.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded) {
					down[l.Backend] = true
				}
				log.Warn("cannot derive the plugin state of a lease written before contract v2; the next start tries again, and its revoke derives it itself",
					slog.String("error", err.Error()))
			default:
				if state == nil {
					state = []byte{} // stored empty, not NULL: nothing to derive, now or later
				}
				stored, err := r.loop.setPluginState(ctx, l.ID, state)
				if err != nil {
					return res, fmt.Errorf("store the plugin state of lease %s: %w", l.ID, err)
				}
				switch {
				case !stored:
				case len(state) == 0:
					res.NoState++
				default:
					res.Upgraded++
				}
			}
		}
		if len(batch) < r.cfg.BatchSize {
			break
		}
	}
	if res != (UpgradeResult{}) {
		r.logger.Info("plugin states of leases written before contract v2",
			slog.Int("upgraded", res.Upgraded), slog.Int("no_state", res.NoState), slog.Int("failed", res.Failed))
	}
	return res, nil
}

// upgradeOne asks the plugin of l's backend for l's state. A plugin without
// an upgrader gives nil.
func (r *Reaper) upgradeOne(ctx context.Context, l Lease) (state []byte, err error) {
	p, spec, ok := r.cfg.Plugin(l.Backend, l.Role)
	if !ok || p == nil {
		return nil, fmt.Errorf("%w: backend %q (plugin %s)", errBackendNotConfigured, l.Backend, l.Plugin)
	}
	u, ok := p.(plugins.StateUpgrader)
	if !ok {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, upgradeTimeout)
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("plugin %s panicked deriving the state of %s: %s", l.Plugin, l.Username, plugins.SanitizeString(fmt.Sprint(v)))
		}
	}()
	return u.UpgradeState(ctx, plugins.UpgradeStateRequest{Username: l.Username, Role: l.Role, Spec: spec})
}

// stateless returns up to limit leases that are not REVOKED and have no
// plugin state (NULL), with ids after after, in id order.
func (s *Store) stateless(ctx context.Context, after string, limit int) ([]Lease, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT `+leaseColumns+` FROM leases
		WHERE plugin_state IS NULL AND state <> 'REVOKED' AND id > $1
		ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lease, error) { return scanLease(r) })
}

// setPluginState stores state as the plugin state of lease id unless it has
// one already; stored reports whether it did.
func (s *Store) setPluginState(ctx context.Context, id string, state []byte) (stored bool, err error) {
	tag, err := s.pool.Exec(ctx, `UPDATE leases SET plugin_state = $2 WHERE id = $1 AND plugin_state IS NULL`, id, nonNilState(state))
	if err != nil {
		return false, interpretError(err)
	}
	return tag.RowsAffected() == 1, nil
}
