package leases

import (
	"errors"
	"sync"
	"testing"

	"github.com/golang-migrate/migrate/v4"
	"github.com/jackc/pgx/v5"
)

// TestMigrateConcurrently starts several replicas on one fresh database at
// once: golang-migrate's advisory lock must let exactly one apply each
// migration and the rest find the schema ready.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	b := &testBundle{dsn: testDatabase(t), clock: newTestClock()}
	const replicas = 8
	stores := make([]*Store, replicas)
	errs := make([]error, replicas)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = Open(t.Context(), Config{DSN: b.dsn, Now: b.clock.Now, MaxConns: 2})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Open: %v", i, err)
			continue
		}
		t.Cleanup(stores[i].Close)
	}
	if t.Failed() {
		t.FailNow()
	}

	var version int64
	var dirty bool
	if err := stores[0].pool.QueryRow(t.Context(), `SELECT version, dirty FROM schema_migrations`).Scan(&version, &dirty); err != nil {
		t.Fatal(err)
	}
	if version != 8 || dirty {
		t.Fatalf("schema version %d dirty=%v, want 8 clean", version, dirty)
	}
	// Every replica works against the one schema.
	for i, s := range stores {
		l := newLease(b, 60e9)
		if _, err := s.CreatePending(t.Context(), l); err != nil {
			t.Fatalf("replica %d: CreatePending: %v", i, err)
		}
	}
}

// TestMigrateDownUp checks that the down migration undoes the up migration
// completely.
func TestMigrateDownUp(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	s.Close()

	cfg, err := pgx.ParseConfig(b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMigrate(cfg, s.logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Down(); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		t.Fatalf("Up after Down: %v", err)
	}
	if srcErr, dbErr := m.Close(); srcErr != nil || dbErr != nil {
		t.Fatalf("Close: %v, %v", srcErr, dbErr)
	}
	s2 := openStore(t, b)
	if _, err := s2.CreatePending(t.Context(), newLease(b, 60e9)); err != nil {
		t.Fatal(err)
	}
}
