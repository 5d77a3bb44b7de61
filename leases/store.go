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
	// Logger receives the store's logs. Default: discard.
	Logger *slog.Logger
	// Now is the store's clock. Default time.Now. Every time the store
	// writes or compares comes from it, truncated to the microsecond
	// PostgreSQL keeps.
	Now func() time.Time
}

// Store is the PostgreSQL lease store. It is safe for concurrent use, and any
// number of Stores (replicas) may share one database.
type Store struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	clock  func() time.Time
}

// Open connects to the lease store, checks that the database answers and
// applies any pending migrations. An unreachable database is an error that
// names the host and database (never the password).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.DSN == "" {
		return nil, fmt.Errorf("%w: lease store DSN is empty", ErrInvalidArgument)
	}
	if cfg.MaxConns < 0 {
		return nil, fmt.Errorf("%w: MaxConns %d is negative", ErrInvalidArgument, cfg.MaxConns)
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
	return s, nil
}

// Close closes every connection. The Store is unusable afterwards.
func (s *Store) Close() { s.pool.Close() }

// Ping reports whether the lease store answers.
func (s *Store) Ping(ctx context.Context) error {
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
