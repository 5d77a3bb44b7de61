package leases

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/credbroker/credbroker/plugins"
)

// Config configures a [Store].
type Config struct {
	// DSN is the PostgreSQL connection string, as a URL
	// (postgres://user@host:5432/db) or key=value pairs. Required.
	DSN string
	// MaxConns is the most connections the store opens. Default 10; it
	// overrides pool_max_conns in the DSN.
	MaxConns int32
	// ReaperMaxConns is the most connections of the reaper's own pool,
	// which API calls never use, so a flood of requests cannot starve
	// expiry. Default and minimum 2 (one for a sweep's lock, one for
	// everything else).
	ReaperMaxConns int32
	// Logger receives the store's logs. Default: discard.
	Logger *slog.Logger
	// Now is the store's clock. Default time.Now. Every time the store
	// writes or compares comes from it, truncated to the microsecond
	// PostgreSQL keeps.
	Now func() time.Time
	// DenialKeys is the most (identity, role, minute) counts of refused
	// requests kept in memory between flushes; refusals beyond it are
	// counted in one overflow event. Default 10000.
	DenialKeys int
	// DenialFlushInterval is how often counted denials whose minute has
	// ended are written as `denied` events. Default 10s.
	DenialFlushInterval time.Duration
	// Keyring holds the key-encryption keys of the admin secrets the store
	// keeps (see [Store.AdminSecrets]). Default nil: the store keeps none,
	// and those methods return [ErrNoKEK].
	Keyring *Keyring
}

// Store is the PostgreSQL lease store. It is safe for concurrent use, and any
// number of Stores (replicas) may share one database.
type Store struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	clock  func() time.Time
	// reaper is this store on the reaper's own pool; nil on that copy.
	reaper *Store
	// denials aggregates refused requests until they are flushed; shared
	// by the copy on the reaper's pool.
	denials *denials
	// wake wakes the reaper when a lease written here is due sooner than
	// it planned to look; shared by the copy on the reaper's pool.
	wake *wakeup
	// sealer seals queued events into the history; shared by the copy on
	// the reaper's pool.
	sealer *sealer
	// writes batch the request path's writes (group commit); nil on the
	// copy on the reaper's pool, which makes none of them.
	writes *storeWrites
	// keys encrypt the admin secrets; nil when none are configured.
	keys *Keyring
}

// Open connects to the lease store, checks that the database answers and
// applies any pending migrations. An unreachable database is an error that
// names the host and database (never the password).
func Open(ctx context.Context, cfg Config) (_ *Store, err error) {
	defer markUnavailable(&err)
	if cfg.DSN == "" {
		return nil, fmt.Errorf("%w: lease store DSN is empty", ErrInvalidArgument)
	}
	if cfg.MaxConns < 0 || cfg.ReaperMaxConns < 0 {
		return nil, fmt.Errorf("%w: MaxConns %d or ReaperMaxConns %d is negative", ErrInvalidArgument, cfg.MaxConns, cfg.ReaperMaxConns)
	}
	poolCfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("leases: parse lease store DSN: %w", plugins.Sanitize(err))
	}
	poolCfg.MaxConns = cmp.Or(cfg.MaxConns, 10)
	if poolCfg.MinConns > poolCfg.MaxConns {
		poolCfg.MinConns = poolCfg.MaxConns
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	clock := cfg.Now
	if clock == nil {
		clock = time.Now
	}
	s := &Store{
		logger: logger.With(slog.String("component", "leases")),
		clock:  clock,
		keys:   cfg.Keyring,
	}
	cc := poolCfg.ConnConfig
	where := fmt.Sprintf("%s:%d/%s as %s", cc.Host, cc.Port, cc.Database, cc.User)

	s.pool, err = pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("leases: open lease store %s: %w", where, plugins.Sanitize(err))
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("leases: cannot reach the lease store at %s: %w", where, plugins.Sanitize(err))
	}
	if err := migrateUp(ctx, cc, s.logger); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("leases: migrate lease store %s: %w", where, plugins.Sanitize(err))
	}
	reaperCfg := poolCfg.Copy()
	reaperCfg.MaxConns = max(cmp.Or(cfg.ReaperMaxConns, 2), 2) // a sweep holds one for its lock
	reaperCfg.MinConns = min(reaperCfg.MinConns, reaperCfg.MaxConns)
	rpool, err := pgxpool.NewWithConfig(ctx, reaperCfg)
	if err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("leases: open the reaper's pool on %s: %w", where, plugins.Sanitize(err))
	}
	s.reaper = &Store{pool: rpool, logger: s.logger, clock: clock}
	s.denials = newDenials(cfg.DenialKeys)
	s.reaper.denials = s.denials
	s.wake = newWakeup()
	s.reaper.wake = s.wake
	s.startDenialFlusher(cmp.Or(cfg.DenialFlushInterval, 10*time.Second))
	s.startSealer()
	s.reaper.sealer = s.sealer
	s.startWrites()
	return s, nil
}

// Close writes the denials not yet recorded, seals the queued events, then
// closes every connection. The Store is unusable afterwards.
func (s *Store) Close() {
	s.stopDenialFlusher()
	s.stopSealer()
	s.pool.Close()
	if s.reaper != nil {
		s.reaper.pool.Close()
	}
}

// forReaper returns the store on the reaper's own pool (itself for a store
// without one).
func (s *Store) forReaper() *Store {
	if s.reaper != nil {
		return s.reaper
	}
	return s
}

// Ping reports whether the lease store answers.
func (s *Store) Ping(ctx context.Context) (err error) {
	defer markUnavailable(&err)
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("leases: ping lease store: %w", err)
	}
	return nil
}

// now is the store's clock at the precision PostgreSQL stores, so a time the
// store wrote compares equal to the same time read back.
func (s *Store) now() time.Time {
	return s.clock().UTC().Truncate(time.Microsecond)
}

// NewID returns a new lease id: "lease_" followed by 26 lower-case base32
// characters (130 bits) from crypto/rand.
func NewID() string {
	return "lease_" + strings.ToLower(rand.Text())
}

// errLostClaim reports that a revoke's outcome was not recorded because the
// lease no longer carries the claim it was taken with.
var errLostClaim = errors.New("leases: claim lost")
