package leases

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// migrationsFS holds the numbered migrations, NNN_name.up.sql and
// NNN_name.down.sql.
//
//go:embed migrations/*.sql
var migrationsFS embed.FS

// newMigrate returns a golang-migrate instance over the embedded migrations
// and a fresh database/sql handle for cc. Close it with m.Close.
func newMigrate(cc *pgx.ConnConfig, logger *slog.Logger) (*migrate.Migrate, error) {
	src, err := iofs.New(migrationsFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	db := stdlib.OpenDB(*cc.Copy())
	drv, err := migratepgx.WithInstance(db, &migratepgx.Config{})
	if err != nil {
		_ = db.Close()
		_ = src.Close()
		return nil, err
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", drv)
	if err != nil {
		_ = drv.Close()
		_ = src.Close()
		return nil, err
	}
	m.Log = migrateLogger{logger}
	return m, nil
}

// migrateUp applies every pending migration. golang-migrate holds a
// PostgreSQL advisory lock while it runs, so concurrent replicas wait for one
// another and the later ones find nothing to do. Cancelling ctx stops between
// migrations, never inside one.
func migrateUp(ctx context.Context, cc *pgx.ConnConfig, logger *slog.Logger) (err error) {
	m, err := newMigrate(cc, logger)
	if err != nil {
		return err
	}
	defer func() {
		srcErr, dbErr := m.Close()
		err = errors.Join(err, srcErr, dbErr)
	}()

	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			select {
			case m.GracefulStop <- true:
			default:
			}
		case <-done:
		}
	}()

	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	version, dirty, err := m.Version()
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if dirty {
		return fmt.Errorf("schema version %d is dirty: a migration failed half-way; repair it by hand", version)
	}
	logger.Debug("lease store schema ready", slog.Uint64("version", uint64(version)))
	return nil
}

// migrateLogger sends golang-migrate's messages to slog.
type migrateLogger struct{ logger *slog.Logger }

func (l migrateLogger) Printf(format string, v ...any) {
	l.logger.Info(strings.TrimSpace(fmt.Sprintf(format, v...)))
}

func (l migrateLogger) Verbose() bool { return false }
