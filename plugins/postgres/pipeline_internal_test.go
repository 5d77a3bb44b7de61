package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/secret"
)

// openInternal opens the plugin on dbURL with a pool of maxConns, the pool
// configuration edited by configure when not nil; it is closed when the test
// ends.
func openInternal(t *testing.T, dbURL string, maxConns int32, configure func(*pgxpool.Config)) *Plugin {
	t.Helper()
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dbURL), 0o600); err != nil {
		t.Fatal(err)
	}
	ref, err := secret.ParseRef("file:" + dsnFile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := open(t.Context(), &Connection{DSN: ref, MaxConns: maxConns}, configure)
	if err != nil {
		t.Fatal(plugins.Sanitize(err))
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// groupRole makes a NOLOGIN role with a random name and attributes, dropped
// (with what it owns in dbURL's database) when the test ends, and returns
// its name.
func groupRole(t *testing.T, admin execer, attributes string) string {
	t.Helper()
	name := plugins.NewUsername("grp", 63)
	if _, err := admin.Exec(t.Context(), "CREATE ROLE "+ident(name)+" NOLOGIN "+attributes); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = admin.Exec(ctx, "DROP OWNED BY "+ident(name))
		_, _ = admin.Exec(ctx, "DROP ROLE IF EXISTS "+ident(name))
	})
	return name
}

// execer runs a statement: a test's admin connection.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// queryRower runs a query of one row: a test's admin connection.
type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// roleExists reports whether a role named name exists.
func roleExists(t *testing.T, q queryRower, name string) bool {
	t.Helper()
	var n int
	if err := q.QueryRow(context.Background(), "SELECT count(*) FROM pg_roles WHERE rolname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestPipelineAllOrNothing: a step the server refuses rolls back the steps
// before it, names itself in the error, and the connection it ran on is
// closed rather than put back in the pool; a pipeline that succeeds commits
// and leaves its connection in the pool.
func TestPipelineAllOrNothing(t *testing.T) {
	t.Parallel()
	dbURL := plugintest.NewTestDatabase(t, plugintest.PostgresURL(t))
	admin := connect(t, dbURL)
	p := openInternal(t, dbURL, 1, nil)
	ctx := t.Context()
	pid := func() uint32 {
		c, err := p.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Release()
		return c.Conn().PgConn().PID()
	}

	name := plugins.NewUsername("pipe", 63)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+ident(name)) })
	before := pid()
	err := pipeline(ctx, p.pool, []step{
		{what: "create role", sql: "CREATE ROLE " + ident(name) + " NOLOGIN"},
		{what: "comment", sql: "COMMENT ON ROLE " + ident(name) + " IS 'half made'"},
		{what: "fail", sql: "SELECT 1 / (count(*) - count(*))::int FROM pg_roles WHERE rolname = $1", args: []any{name}},
		{what: "never run", sql: "CREATE ROLE " + ident(name+"_2") + " NOLOGIN"},
	})
	if failedStep(err) != 2 || sqlState(err) != pgerrcode.DivisionByZero || !strings.HasPrefix(err.Error(), "fail: ") {
		t.Fatalf("pipeline = %v (step %d), want the error of step 2, named", err, failedStep(err))
	}
	if roleExists(t, admin, name) || roleExists(t, admin, name+"_2") {
		t.Error("a role of a failed pipeline exists: it was not rolled back")
	}
	if after := pid(); after == before {
		t.Error("the connection of a failed pipeline went back to the pool")
	}

	before = pid()
	err = pipeline(ctx, p.pool, []step{
		{what: "create role", sql: "CREATE ROLE " + ident(name) + " NOLOGIN"},
		{what: "count", sql: "SELECT count(*) FROM pg_roles WHERE rolname = ANY ($1) AND oid <> $2 AND $3::bigint > $4",
			args: []any{[]string{name, ""}, uint32(0), int64(1), 0}},
		{what: "prepared", sql: "SELECT count(*) FROM pg_roles WHERE rolname = $1", args: []any{name}, prepare: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !roleExists(t, admin, name) {
		t.Error("the role of a pipeline that succeeded does not exist")
	}
	if after := pid(); after != before {
		t.Error("the connection of a pipeline that succeeded was closed")
	}
	if err := pipeline(ctx, p.pool, []step{{what: "bad argument", sql: "SELECT $1", args: []any{1.5}}}); err == nil {
		t.Error("a pipeline with an argument of a type it cannot bind succeeded")
	}
}

// TestCreateCancelledMidPipeline cancels a Create while its pipeline waits,
// on the server, for the grant lock a test session holds: the server is
// asked to cancel, nothing is committed, no connection of the pool is left
// in a transaction, and the plugin works on.
func TestCreateCancelledMidPipeline(t *testing.T) {
	t.Parallel()
	dbURL := plugintest.NewTestDatabase(t, plugintest.PostgresURL(t))
	admin := connect(t, dbURL)
	if _, err := admin.Exec(t.Context(), "CREATE TABLE items (id int)"); err != nil {
		t.Fatal(err)
	}
	p := openInternal(t, dbURL, 2, nil)
	role := &Role{Grants: []Grant{{Privileges: []string{"SELECT"}, Schema: "public", Tables: []string{"*"}}}}
	request := func() plugins.CreateOf[*Role] {
		return plugins.CreateOf[*Role]{
			Username: plugins.NewUsername("cancel", 63), Password: plugins.NewPassword(),
			ExpiresAt: time.Now().Add(time.Hour), Role: "cancel", Spec: role,
		}
	}
	locker := connect(t, dbURL)
	if _, err := locker.Exec(t.Context(), "SELECT pg_advisory_lock($1)", grantLockKey); err != nil {
		t.Fatal(err)
	}
	waiting := func() int {
		var n int
		err := admin.QueryRow(t.Context(), `
			SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'credbroker'
			  AND wait_event_type = 'Lock' AND wait_event = 'advisory'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	req := request()
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP OWNED BY "+ident(req.Username))
		_, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+ident(req.Username))
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := p.Create(ctx, req)
		done <- err
	}()
	pollUntil(t, "the Create waits for the grant lock", func() bool { return waiting() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Create = %v, want an error matching context.Canceled", err)
	}
	// The server cancels the pipeline: no session of the plugin waits for
	// the lock, runs, or stays in a transaction (a pooled one is idle).
	pollUntil(t, "every session of the plugin is idle", func() bool {
		var busy int
		err := admin.QueryRow(t.Context(), `
			SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'credbroker' AND state <> 'idle'`).Scan(&busy)
		if err != nil {
			t.Fatal(err)
		}
		return busy == 0
	})
	if _, err := locker.Exec(t.Context(), "SELECT pg_advisory_unlock($1)", grantLockKey); err != nil {
		t.Fatal(err)
	}
	if roleExists(t, admin, req.Username) {
		t.Error("the user of a cancelled Create exists")
	}
	for _, c := range p.pool.AcquireAllIdle(t.Context()) {
		if s := c.Conn().PgConn().TxStatus(); s != 'I' {
			t.Errorf("a pooled connection has transaction status %q, want idle", s)
		}
		c.Release()
	}

	after := request()
	if _, err := p.Create(t.Context(), after); err != nil {
		t.Fatalf("Create after the cancelled one: %v", err)
	}
	if _, err := p.Revoke(t.Context(), plugins.RevokeOf[*Role]{Username: after.Username, Spec: role}); err != nil {
		t.Fatal(err)
	}
}

// pollUntil polls cond until it holds, failing the test after a minute.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNewUserCheckQuery runs the pipeline of a member_of Create directly:
// its last statement fails, and rolls the user back, for each way a group
// can make the user too strong that checkNewUser refuses (whose error
// Create then returns), and passes for a harmless group.
func TestNewUserCheckQuery(t *testing.T) {
	t.Parallel()
	dbURL := plugintest.NewTestDatabase(t, plugintest.PostgresURL(t))
	admin := connect(t, dbURL)
	p := openInternal(t, dbURL, 2, nil)
	member := func(of string) func(string) {
		return func(g string) {
			if _, err := admin.Exec(t.Context(), "GRANT "+ident(of)+" TO "+ident(g)); err != nil {
				t.Fatal(err)
			}
		}
	}
	adminOf := func(of string) func(string) {
		return func(g string) {
			if _, err := admin.Exec(t.Context(), "GRANT "+ident(of)+" TO "+ident(g)+" WITH ADMIN OPTION"); err != nil {
				t.Fatal(err)
			}
		}
	}
	keeper := groupRole(t, admin, "")
	tests := map[string]struct {
		attributes string
		setup      func(group string)
		reassignTo string
		tooStrong  bool
	}{
		"Harmless":            {},
		"HarmlessReassign":    {reassignTo: keeper},
		"Superuser":           {attributes: "SUPERUSER", tooStrong: true},
		"CreateRole":          {attributes: "CREATEROLE", tooStrong: true},
		"Replication":         {attributes: "REPLICATION", tooStrong: true},
		"BypassRLS":           {attributes: "BYPASSRLS", tooStrong: true},
		"AdminOption":         {setup: adminOf(groupRole(t, admin, "")), tooStrong: true},
		"NestedCreateDB":      {setup: member(groupRole(t, admin, "CREATEDB")), tooStrong: true},
		"SignalBackend":       {setup: member("pg_signal_backend"), tooStrong: true},
		"ReachesMarker":       {setup: member(markerRole), tooStrong: true},
		"ReachesReassignRole": {setup: member(keeper), reassignTo: keeper, tooStrong: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			group := groupRole(t, admin, tt.attributes)
			if tt.setup != nil {
				tt.setup(group)
			}
			req := plugins.CreateOf[*Role]{
				Username: plugins.NewUsername("check", 63), Password: plugins.NewPassword(),
				ExpiresAt: time.Now().Add(time.Hour), Role: "check",
				Spec: &Role{MemberOf: []string{group}, ReassignOwnedTo: tt.reassignTo},
			}
			t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+ident(req.Username)) })
			steps, err := p.createSteps(req)
			if err != nil {
				t.Fatal(err)
			}
			check := step{what: "check", sql: newUserCheckQuery(p.version),
				args: []any{req.Username, dangerousPredefinedRoles, forbiddenRoles(tt.reassignTo)}, prepare: true}
			err = pipeline(t.Context(), p.pool, append(steps, check))
			if !tt.tooStrong {
				if err != nil {
					t.Fatalf("pipeline = %v, want success", err)
				}
				if !roleExists(t, admin, req.Username) {
					t.Error("the user does not exist after its pipeline succeeded")
				}
				return
			}
			if failedStep(err) != len(steps) || sqlState(err) != pgerrcode.InvalidTextRepresentation || !strings.Contains(err.Error(), tooStrongSignal) {
				t.Fatalf("pipeline = %v (step %d), want the check (step %d) to fail with %q", err, failedStep(err), len(steps), tooStrongSignal)
			}
			if roleExists(t, admin, req.Username) {
				t.Error("the too-strong user exists: the pipeline was not rolled back")
			}
			// Create itself says what is too strong, as checkNewUser does.
			if _, err := p.Create(t.Context(), req); !errors.Is(err, ErrTooStrong) {
				t.Errorf("Create = %v, want ErrTooStrong", err)
			}
			if roleExists(t, admin, req.Username) {
				t.Error("the too-strong user exists after Create")
			}
		})
	}
}

// roundTrips counts the round trips a client makes on the connections it
// wraps: each Sync or simple Query message the client sends ends one (the
// client then waits for the server's ReadyForQuery).
type roundTrips struct {
	mu      sync.Mutex
	on      bool
	n       int
	pending []byte // the start of a message a Write cut in two
}

func (r *roundTrips) wrap(_ context.Context, _ *pgconn.Config, c net.Conn) (net.Conn, error) {
	return &countingConn{Conn: c, r: r}, nil
}

// count starts counting from zero, or stops and returns the count.
func (r *roundTrips) count(on bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.n, r.pending = 0, nil
	}
	r.on = on
	return r.n
}

func (r *roundTrips) sent(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.on {
		return
	}
	buf := append(r.pending, b...)
	for len(buf) >= 5 {
		size := 1 + int(binary.BigEndian.Uint32(buf[1:5]))
		if len(buf) < size {
			break
		}
		if buf[0] == 'S' || buf[0] == 'Q' {
			r.n++
		}
		buf = buf[size:]
	}
	r.pending = append([]byte(nil), buf...)
}

type countingConn struct {
	net.Conn
	r *roundTrips
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.r.sent(b)
	return c.Conn.Write(b)
}

// TestRoundTrips counts what the calls of a member_of lease cost once the
// admin connection is warm: Create and Renew one round trip each; Revoke of
// a user that owns nothing four (the lookup, NOLOGIN committed, terminate
// and drop, the last terminate).
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	dbURL := plugintest.NewTestDatabase(t, plugintest.PostgresURL(t))
	admin := connect(t, dbURL)
	rt := &roundTrips{}
	// One connection, never pinged before use, so every call's messages are
	// counted on it and its statement cache is warm after the first lease.
	p := openInternal(t, dbURL, 1, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.AfterNetConnect = rt.wrap
		cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	})
	role := &Role{MemberOf: []string{groupRole(t, admin, "")}}
	lease := func() (create, renew, revoke int) {
		req := plugins.CreateOf[*Role]{
			Username: plugins.NewUsername("trips", 63), Password: p.NewPassword(),
			ExpiresAt: time.Now().Add(time.Hour), Role: "trips", Spec: role,
		}
		t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+ident(req.Username)) })
		rt.count(true)
		created, err := p.Create(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		create = rt.count(false)
		rt.count(true)
		if _, err := p.Renew(t.Context(), plugins.RenewOf[*Role]{Username: req.Username, Spec: role, State: created.State, ExpiresAt: req.ExpiresAt.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		renew = rt.count(false)
		rt.count(true)
		if _, err := p.Revoke(t.Context(), plugins.RevokeOf[*Role]{Username: req.Username, Spec: role, State: created.State}); err != nil {
			t.Fatal(err)
		}
		revoke = rt.count(false)
		if roleExists(t, admin, req.Username) {
			t.Error("the user exists after Revoke")
		}
		return create, renew, revoke
	}
	lease() // warms the statement cache
	if create, renew, revoke := lease(); create != 1 || renew != 1 || revoke != 4 {
		t.Errorf("round trips: Create %d, Renew %d, Revoke %d; want 1, 1, 4", create, renew, revoke)
	}
}
