package leases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/credbroker/credbroker/plugins/plugintest"
)

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// TestOpenUnavailable: a store nobody answers at is ErrUnavailable, with
// the message that names where it looked and never the password.
func TestOpenUnavailable(t *testing.T) {
	t.Parallel()
	dsn := fmt.Sprintf("postgres://broker:s3cretpw@127.0.0.1:%d/leases?sslmode=disable&connect_timeout=2", closedPort(t))
	_, err := Open(t.Context(), Config{DSN: dsn})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Open on a closed port: %v, want ErrUnavailable", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "cannot reach the lease store at 127.0.0.1") || strings.Contains(msg, "s3cretpw") {
		t.Errorf("message %q: want where it looked, without the password", msg)
	}
	// A DSN that does not parse is the caller's mistake, not an outage.
	if _, err := Open(t.Context(), Config{DSN: "postgres://broker@127.0.0.1:notaport/x"}); err == nil || errors.Is(err, ErrUnavailable) {
		t.Errorf("Open with a malformed DSN: %v, want an error that is not ErrUnavailable", err)
	}
}

// setAllowConnections turns connections to database on or off, terminating
// the sessions it has when off, from a connection to the admin database.
func setAllowConnections(t *testing.T, admin, database string, allow bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to the admin database: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s ALLOW_CONNECTIONS %t", pgx.Identifier{database}.Sanitize(), allow)); err != nil {
		t.Fatalf("allow connections %t: %v", allow, err)
	}
	if allow {
		return
	}
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, database); err != nil {
		t.Fatalf("terminate the store's sessions: %v", err)
	}
}

// TestStoreReportsUnavailable takes the store's own test database away
// under it (its sessions terminated, new ones refused): every call that
// needs the database answers ErrUnavailable, and the store recovers once
// the database takes connections again. Errors that are not an outage are
// not marked.
func TestStoreReportsUnavailable(t *testing.T) {
	t.Parallel()
	admin := plugintest.PostgresURL(t)
	dsn := plugintest.NewTestDatabase(t, admin)
	clock := newTestClock()
	b := &testBundle{dsn: dsn, clock: clock}
	s := openStore(t, b)
	r, err := NewReaper(ReaperConfig{Store: s, Plugin: lookup(newFakePlugin(), "orders-pg"), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	l := createActive(t, s, newLease(b, time.Hour))

	// Not an outage: a missing lease, a backend's network error in the
	// renewal callback, a cancelled caller.
	if _, err := s.Get(t.Context(), "lease_missing"); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) {
		t.Errorf("Get of a missing lease: %v, want ErrNotFound only", err)
	}
	backendDown := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	_, err = s.Renew(t.Context(), l.ID, "t", func(Lease) (Renewal, error) { return Renewal{}, backendDown })
	if !errors.Is(err, backendDown) || errors.Is(err, ErrUnavailable) {
		t.Errorf("Renew whose backend call failed: %v, want the backend's error, not ErrUnavailable", err)
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Get(cancelled, l.ID); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Errorf("Get with a cancelled context: %v, want context.Canceled only", err)
	}

	database := dsn[strings.LastIndex(dsn, "/")+1:]
	database, _, _ = strings.Cut(database, "?")
	setAllowConnections(t, admin, database, false)
	t.Cleanup(func() { setAllowConnections(t, admin, database, true) }) // before the drop

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	calls := map[string]func() error{
		"Ping": func() error { return s.Ping(ctx) },
		"Get":  func() error { _, err := s.Get(ctx, l.ID); return err },
		"CreatePending": func() error {
			_, err := s.CreatePending(ctx, newLease(b, time.Hour))
			return err
		},
		"Renew": func() error {
			_, err := s.Renew(ctx, l.ID, "t", func(Lease) (Renewal, error) { return Renewal{ExpiresAt: clock.Now().Add(time.Hour)}, nil })
			return err
		},
		"List":         func() error { _, _, err := s.List(ctx, ListFilter{}); return err },
		"ActiveByRole": func() error { _, err := s.ActiveByRole(ctx); return err },
		"RecordEvent":  func() error { return s.RecordEvent(ctx, Event{Kind: "exported", Actor: "t"}) },
		"Events":       func() error { return s.Events(ctx, EventFilter{}, func(Event) error { return nil }) },
		"Revoke":       func() error { _, err := r.Revoke(ctx, l.ID, "test", "t"); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s with the database gone: %v, want ErrUnavailable", name, err)
		}
	}

	setAllowConnections(t, admin, database, true)
	if got, err := s.Get(ctx, l.ID); err != nil || got.State != StateActive {
		t.Errorf("Get once the database is back: %v %v, want the ACTIVE lease", got.State, err)
	}
}

// TestIsConnectionFailure covers the classification on its own, with the
// errors a restart or failover produces.
func TestIsConnectionFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"plain", errors.New("boom"), false},
		{"not found", ErrNotFound, false},
		{"network", fmt.Errorf("query: %w", &net.OpError{Op: "read", Err: errors.New("reset")}), true},
		{"cut stream", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"terminated", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}, true},
		{"connection exception", &pgconn.PgError{Code: "08006"}, true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"deadline", context.DeadlineExceeded, false},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), false},
		{"callback", &callerError{&net.OpError{Op: "dial", Err: errors.New("refused")}}, false},
	} {
		if got := isConnectionFailure(tc.err); got != tc.want {
			t.Errorf("%s: isConnectionFailure(%v) = %t, want %t", tc.name, tc.err, got, tc.want)
		}
	}
	var err error = errors.New("boom")
	markUnavailable(&err)
	if errors.Is(err, ErrUnavailable) {
		t.Error("a plain error was marked unavailable")
	}
	err = &net.OpError{Op: "read", Err: errors.New("reset")}
	markUnavailable(&err)
	if !errors.Is(err, ErrUnavailable) || err.Error() != "read: reset" {
		t.Errorf("marked network error %q: want ErrUnavailable with its own text", err)
	}
}
