package leases

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credbroker/credbroker/plugins"
)

// ReaperConfig configures a [Reaper]. Zero durations and counts take the
// defaults shown.
type ReaperConfig struct {
	// Store is the lease store. Required.
	Store *Store
	// Plugin returns the live plugin of a backend, opened with
	// [plugins.Open] (the reaper does not sanitize a plugin's errors again),
	// and the current spec of the role on it: nil when the role is no longer
	// in the config, is now on another backend, or role is "" (an orphan of
	// the sweep). ok is false when the backend is not configured. Required.
	Plugin func(backend, role string) (p plugins.Plugin, spec any, ok bool)
	// Backends returns the backends Sweep asks for their managed users; nil
	// sweeps none.
	Backends func() []string
	// SweepInterval is the time between sweeps in Run. Default 10m.
	SweepInterval time.Duration
	// Interval is the time between passes of Run. Default 5s.
	Interval time.Duration
	// PendingGrace is how old a PENDING lease must be before it counts as an
	// abandoned issue and is revoked. Default 2m; keep it well above the time
	// an issue takes.
	PendingGrace time.Duration
	// Workers is how many revokes run at once. Default 4.
	Workers int
	// BatchSize is the most leases one pass claims. Default 100.
	BatchSize int
	// RevokeTimeout bounds each plugin Revoke call. Default 30s.
	RevokeTimeout time.Duration
	// ClaimTimeout is how long a claim hides a lease from other replicas;
	// after it a replica that died mid-revoke loses the lease to another.
	// Default 2m; keep it above RevokeTimeout.
	ClaimTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before retrying a failed
	// revoke: the n-th failure waits between half and all of
	// min(MaxBackoff, MinBackoff·2^(n-1)), never less than MinBackoff.
	// Retries never stop. Defaults 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// Registerer receives the reaper's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger receives the reaper's logs. Default: the store's logger.
	Logger *slog.Logger
	// Now is the reaper's clock. Default: the store's clock.
	Now func() time.Time
}

// Reaper revokes leases that are due: expired ACTIVE leases, PENDING leases
// older than PendingGrace and REVOKING leases whose retry time has come. Any
// number of Reapers, in any number of replicas, may share one store; each
// due lease is claimed by exactly one of them at a time.
type Reaper struct {
	cfg   ReaperConfig
	store *Store // for Revoke, on behalf of a caller
	// loop is the store on the reaper's own pool, for Run, RunOnce and
	// Sweep: callers exhausting the API pool cannot stop expiry.
	loop    *Store
	logger  *slog.Logger
	metrics *reaperMetrics
}

// reaperActor is the actor of the events the reaper records on its own.
const reaperActor = "reaper"

// finishTimeout bounds recording an outcome, which goes on after the
// caller's context is cancelled so a finished revoke is not done again.
const finishTimeout = 10 * time.Second

// errBackendNotConfigured marks a lease whose backend is missing from the
// configuration; such a lease is retried until the backend returns.
var errBackendNotConfigured = errors.New("backend not configured")

// NewReaper checks cfg, fills its defaults and registers the metrics.
func NewReaper(cfg ReaperConfig) (*Reaper, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: reaper needs a Store", ErrInvalidArgument)
	}
	if cfg.Plugin == nil {
		return nil, fmt.Errorf("%w: reaper needs a Plugin lookup", ErrInvalidArgument)
	}
	for name, d := range map[string]time.Duration{
		"Interval": cfg.Interval, "SweepInterval": cfg.SweepInterval, "PendingGrace": cfg.PendingGrace, "RevokeTimeout": cfg.RevokeTimeout,
		"ClaimTimeout": cfg.ClaimTimeout, "MinBackoff": cfg.MinBackoff, "MaxBackoff": cfg.MaxBackoff,
	} {
		if d < 0 {
			return nil, fmt.Errorf("%w: reaper %s %s is negative", ErrInvalidArgument, name, d)
		}
	}
	if cfg.Workers < 0 || cfg.BatchSize < 0 {
		return nil, fmt.Errorf("%w: reaper Workers and BatchSize must not be negative", ErrInvalidArgument)
	}
	cfg.Interval = cmp.Or(cfg.Interval, 5*time.Second)
	cfg.SweepInterval = cmp.Or(cfg.SweepInterval, 10*time.Minute)
	cfg.PendingGrace = cmp.Or(cfg.PendingGrace, 2*time.Minute)
	cfg.Workers = cmp.Or(cfg.Workers, 4)
	cfg.BatchSize = cmp.Or(cfg.BatchSize, 100)
	cfg.RevokeTimeout = cmp.Or(cfg.RevokeTimeout, 30*time.Second)
	cfg.ClaimTimeout = cmp.Or(cfg.ClaimTimeout, 2*time.Minute)
	cfg.MinBackoff = cmp.Or(cfg.MinBackoff, time.Second)
	cfg.MaxBackoff = cmp.Or(cfg.MaxBackoff, 5*time.Minute)
	if cfg.MinBackoff > cfg.MaxBackoff {
		return nil, fmt.Errorf("%w: reaper MinBackoff %s exceeds MaxBackoff %s", ErrInvalidArgument, cfg.MinBackoff, cfg.MaxBackoff)
	}
	if cfg.Now == nil {
		cfg.Now = cfg.Store.clock
	}
	logger := cmp.Or(cfg.Logger, cfg.Store.logger)

	r := &Reaper{
		cfg:    cfg,
		store:  cfg.Store,
		loop:   cfg.Store.forReaper(),
		logger: logger.With(slog.String("component", "reaper")),
	}
	if cfg.Registerer != nil {
		m, err := newReaperMetrics(cfg.Registerer)
		if err != nil {
			return nil, fmt.Errorf("register reaper metrics: %w", err)
		}
		r.metrics = m
	}
	return r, nil
}

func (r *Reaper) now() time.Time {
	return r.cfg.Now().UTC().Truncate(time.Microsecond)
}

// Run reaps until ctx is done, then returns nil. Each pass claims and revokes
// batches until fewer than BatchSize leases are due, then sleeps until the
// next lease is due, for at most Interval (the safety net for leases other
// replicas write), and wakes early when this process writes a lease due
// sooner; every SweepInterval it also sweeps the backends for orphans.
// Errors are logged and the next pass tries again.
func (r *Reaper) Run(ctx context.Context) error {
	timer := time.NewTimer(r.cfg.Interval)
	defer timer.Stop()
	sweep := time.NewTicker(r.cfg.SweepInterval)
	defer sweep.Stop()
	wake := r.loop.wake
	for {
		if wake != nil {
			wake.passing()
		}
		r.drain(ctx)
		if _, err := r.loop.Checkpoint(ctx); err != nil && ctx.Err() == nil {
			r.logger.Warn("cannot checkpoint the event chains", slog.String("error", plugins.SanitizeString(err.Error())))
		}
		wait := r.untilNextDue(ctx)
		var woken <-chan struct{}
		if wake != nil {
			wake.sleeping(r.now().Add(wait))
			woken = wake.ch
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-woken:
		case <-sweep.C:
			if n, err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
				r.logger.Error("sweep failed", slog.Int("orphans_revoked", n), slog.String("error", plugins.SanitizeString(err.Error())))
			}
		}
	}
}

// untilNextDue is how long the reaper sleeps after a pass: until the next
// lease is due, at least minReaperWait and at most Interval (also when the
// store cannot say).
func (r *Reaper) untilNextDue(ctx context.Context) time.Duration {
	next, err := r.loop.nextDue(ctx, r.cfg.PendingGrace)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			r.logger.Warn("cannot find the next due lease; polling", slog.String("error", plugins.SanitizeString(err.Error())))
		}
		return r.cfg.Interval
	case next.IsZero():
		return r.cfg.Interval
	}
	return min(max(next.Sub(r.now()), minReaperWait), r.cfg.Interval)
}

// drain runs batches until one comes back short of BatchSize.
func (r *Reaper) drain(ctx context.Context) {
	for ctx.Err() == nil {
		res, err := r.runOnce(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.logger.Error("reaper pass failed", slog.Any("error", err))
			}
			return
		}
		if res.revoked+res.failed > 0 {
			r.logger.Debug("reaper pass", slog.Int("claimed", res.claimed),
				slog.Int("revoked", res.revoked), slog.Int("failed", res.failed))
		}
		if res.claimed < r.cfg.BatchSize {
			return
		}
	}
}

// RunOnce claims one batch of due leases and revokes them with the worker
// pool. It returns how many it revoked and how many revokes failed (those are
// scheduled for retry). An error means the store failed, or ctx ended; leases
// claimed but not yet attempted when ctx ends are handed back at once.
func (r *Reaper) RunOnce(ctx context.Context) (revoked, failed int, err error) {
	res, err := r.runOnce(ctx)
	return res.revoked, res.failed, err
}

type runResult struct{ claimed, revoked, failed int }

// outcome is what one revoke attempt came to.
type outcome int

const (
	outcomeRevoked  outcome = iota // backend user gone, lease REVOKED
	outcomeFailed                  // revoke failed and is scheduled for retry
	outcomeLost                    // someone else voided the claim; nothing recorded
	outcomeReleased                // ctx ended; the lease was handed back
	outcomeError                   // the store failed
)

func (r *Reaper) runOnce(ctx context.Context) (runResult, error) {
	var res runResult
	now := r.now()
	pendingBefore := now.Add(-r.cfg.PendingGrace)
	if r.metrics != nil {
		st, err := r.loop.stats(ctx, now, pendingBefore)
		if err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			r.logger.Warn("cannot count leases for metrics", slog.Any("error", err))
		} else {
			r.metrics.observe(st)
		}
	}

	until := now.Add(r.cfg.ClaimTimeout)
	batch, err := r.loop.claimDue(ctx, now, pendingBefore, until, r.cfg.BatchSize)
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, fmt.Errorf("claim due leases: %w", err)
	}
	res.claimed = len(batch)
	if len(batch) == 0 {
		return res, nil
	}

	jobs := make(chan Lease, len(batch))
	for _, l := range batch {
		jobs <- l
	}
	close(jobs)
	var (
		mu      sync.Mutex
		errs    []error
		release []string
		wg      sync.WaitGroup
	)
	for range min(r.cfg.Workers, len(batch)) {
		wg.Go(func() {
			for l := range jobs {
				if ctx.Err() != nil {
					mu.Lock()
					release = append(release, l.ID)
					mu.Unlock()
					continue
				}
				_, oc, err := r.attempt(ctx, r.loop, l, reaperActor)
				mu.Lock()
				switch oc {
				case outcomeRevoked:
					res.revoked++
				case outcomeFailed:
					res.failed++
				case outcomeError:
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	if len(release) > 0 {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
		if err := r.loop.releaseClaims(wctx, release, until, r.now()); err != nil {
			r.logger.Warn("cannot hand back claimed leases; they wait for the claim timeout",
				slog.Int("leases", len(release)), slog.Any("error", err))
		}
		cancel()
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, errors.Join(errs...)
}

// Revoke revokes a lease now, through the same path as the reaper, with
// reason as its revoke reason (a lease already REVOKING keeps its first
// reason) and actor on its events. If the backend revoke fails, the lease
// stays REVOKING for the reaper to retry, and the returned lease says so
// (State, LastError, NextAttemptAt); the error is nil unless the store failed
// or ctx ended. Revoking a REVOKED lease returns it unchanged. An unknown id
// gives [ErrNotFound].
func (r *Reaper) Revoke(ctx context.Context, id, reason, actor string) (_ Lease, err error) {
	return r.revoke(ctx, id, nil, reason, actor)
}

// RevokeHeld is [Reaper.Revoke] for the holder of the lease: the claim that
// starts the revoke checks, in the same statement, that holder holds it. A
// lease someone else holds is returned unchanged, with [ErrNotHeld] and
// nothing changed; callers report it as they would a missing lease.
func (r *Reaper) RevokeHeld(ctx context.Context, id string, holder Holder, reason, actor string) (_ Lease, err error) {
	return r.revoke(ctx, id, &holder, reason, actor)
}

// ErrNotHeld reports a lease that is not the caller's to revoke.
var ErrNotHeld = errors.New("leases: the lease is held by someone else")

func (r *Reaper) revoke(ctx context.Context, id string, holder *Holder, reason, actor string) (_ Lease, err error) {
	defer markUnavailable(&err)
	l, claimed, err := r.store.claimOne(ctx, id, nonEmpty(reason, "revoked"), r.now().Add(r.cfg.ClaimTimeout), holder)
	if err != nil {
		return Lease{}, fmt.Errorf("revoke lease %s: %w", id, err)
	}
	if !claimed {
		if holder != nil && (l.Issuer != holder.Issuer || l.Subject != holder.Subject) {
			return l, fmt.Errorf("revoke lease %s: %w", id, ErrNotHeld)
		}
		return l, nil
	}
	out, oc, err := r.attempt(ctx, r.store, l, actor)
	switch oc {
	case outcomeRevoked, outcomeFailed, outcomeLost:
		return out, nil
	default:
		return out, fmt.Errorf("revoke lease %s: %w", id, err)
	}
}

// attempt revokes one claimed lease in its backend and records the outcome
// in st (the reaper's pool or the callers'). No transaction is open while
// the backend is called.
func (r *Reaper) attempt(ctx context.Context, st *Store, l Lease, actor string) (Lease, outcome, error) {
	revokeErr := r.revokeBackend(ctx, l)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	log := r.logger.With(slog.String("lease", l.ID), slog.String("backend", l.Backend),
		slog.String("username", l.Username))

	if revokeErr != nil && ctx.Err() != nil {
		// Cancelled, not failed: hand the lease back without a penalty.
		if err := st.releaseClaims(wctx, []string{l.ID}, l.NextAttemptAt, r.now()); err != nil {
			log.Warn("cannot hand back claimed lease; it waits for the claim timeout", slog.Any("error", err))
		}
		return l, outcomeReleased, ctx.Err()
	}
	r.metrics.countRevoke(l.Backend, revokeErr == nil)
	now := r.now()

	if revokeErr == nil {
		out, err := st.finishRevoked(wctx, l, now, actor)
		if errors.Is(err, errLostClaim) {
			log.Debug("revoked, but the claim was taken over; the new holder records the outcome")
			return r.current(wctx, st, l), outcomeLost, nil
		}
		if err != nil {
			log.Error("revoked in the backend but cannot record it; the revoke will be repeated", slog.Any("error", err))
			return l, outcomeError, err
		}
		log.Info("lease revoked", slog.String("reason", out.RevokeReason), slog.String("actor", actor))
		return out, outcomeRevoked, nil
	}

	msg := revokeErr.Error() // sanitized by the plugin's decorator (plugins.Open)
	next := now.Add(r.backoff(l.RevokeAttempts + 1))
	out, err := st.finishFailed(wctx, l, now, next, msg, actor)
	if errors.Is(err, errLostClaim) {
		log.Debug("revoke failed, but the claim was taken over", slog.String("error", msg))
		return r.current(wctx, st, l), outcomeLost, nil
	}
	if err != nil {
		log.Error("revoke failed and cannot record it", slog.String("error", msg), slog.Any("store_error", err))
		return l, outcomeError, err
	}
	attrs := []any{slog.String("error", msg), slog.Int("attempts", out.RevokeAttempts),
		slog.Time("next_attempt_at", next)}
	if errors.Is(revokeErr, errBackendNotConfigured) {
		log.Error("cannot revoke: the lease's backend is not configured; it stays REVOKING and is retried until the backend is configured again", attrs...)
	} else {
		log.Warn("revoke failed; will retry", attrs...)
	}
	return out, outcomeFailed, nil
}

// current reads a lease after its claim was taken over, falling back to what
// the caller had.
func (r *Reaper) current(ctx context.Context, st *Store, l Lease) Lease {
	if cur, err := st.Get(ctx, l.ID); err == nil {
		return cur
	}
	return l
}

// revokeBackend calls the lease's plugin with its own timeout, with the
// lease's role, the role's current spec (nil when it is gone) and the
// lease's plugin state. A missing backend and a panicking plugin are
// failures like any other.
func (r *Reaper) revokeBackend(ctx context.Context, l Lease) (err error) {
	p, spec, ok := r.cfg.Plugin(l.Backend, l.Role)
	if !ok || p == nil {
		return fmt.Errorf("%w: backend %q (plugin %s) is not in the configuration", errBackendNotConfigured, l.Backend, l.Plugin)
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RevokeTimeout)
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			// A panic bypasses the sanitizing decorator: its value is
			// the plugin's own text.
			err = fmt.Errorf("plugin %s panicked revoking %s on backend %s: %s", l.Plugin, l.Username, l.Backend,
				plugins.SanitizeString(fmt.Sprint(v)))
		}
	}()
	_, err = p.Revoke(ctx, plugins.RevokeRequest{Username: l.Username, Role: l.Role, Spec: spec, State: l.StateForPlugin()})
	if err != nil {
		return fmt.Errorf("revoke %s on backend %s: %w", l.Username, l.Backend, err)
	}
	return nil
}

// backoff is the wait before the next try after the n-th failure: uniformly
// between half and all of min(MaxBackoff, MinBackoff·2^(n-1)), and at least
// MinBackoff. The jitter spreads the retries of leases that failed together.
func (r *Reaper) backoff(n int) time.Duration {
	d := r.cfg.MinBackoff
	for i := 1; i < n && d < r.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.cfg.MaxBackoff)
	half := d / 2
	d = d - half + time.Duration(rand.Int64N(int64(half)+1))
	return max(d, r.cfg.MinBackoff)
}
