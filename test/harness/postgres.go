package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/plugins/plugintest"
)

// ManagedRole is the postgres plugin's marker role. On PostgreSQL 16+ issued
// users are members of it (WITH INHERIT FALSE, SET FALSE); on 15 and older
// they are not, and only ManagedComment tells them apart.
const ManagedRole = "credbroker_managed"

// ManagedComment starts the role comment the postgres plugin writes on every
// user it makes, and is what it recognises its users by. A role commented
// exactly ManagedComment is one the plugin takes for its own, undated.
const ManagedComment = "credbroker:"

// dbTimeout bounds each helper query.
const dbTimeout = 30 * time.Second

// Store is a lease store database of the test's own.
type Store struct {
	// URL connects to it as a superuser.
	URL string
}

// NewStore creates an empty database for a broker's lease store, dropped
// when the test ends. The test is skipped (or, under
// CREDBROKER_REQUIRE_SERVICES=1, fails) when no PostgreSQL answers.
func NewStore(t testing.TB) *Store {
	t.Helper()
	return &Store{URL: plugintest.NewTestDatabase(t, plugintest.PostgresURL(t))}
}

// LeaseRow is a row of the store's leases table.
type LeaseRow struct {
	ID, Role, Backend, Username, State, RevokeReason, Subject string
	ExpiresAt, MaxExpiresAt                                   time.Time
}

// Leases returns every lease in the store.
func (s *Store) Leases(t testing.TB) []LeaseRow {
	t.Helper()
	var out []LeaseRow
	query(t, s.URL, func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT id, role, backend, username, state, revoke_reason, subject, expires_at, max_expires_at
			FROM leases ORDER BY created_at, id`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (LeaseRow, error) {
			var l LeaseRow
			err := r.Scan(&l.ID, &l.Role, &l.Backend, &l.Username, &l.State, &l.RevokeReason, &l.Subject, &l.ExpiresAt, &l.MaxExpiresAt)
			return l, err
		})
		return err
	})
	return out
}

// PluginStates returns each lease's plugin_state by lease id: nil where the
// column is NULL (a lease written before contract v2 and not upgraded).
func (s *Store) PluginStates(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	query(t, s.URL, func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT id, plugin_state FROM leases`)
		if err != nil {
			return err
		}
		var id string
		var state []byte
		_, err = pgx.ForEachRow(rows, []any{&id, &state}, func() error {
			out[id] = bytes.Clone(state) // nil stays nil
			return nil
		})
		return err
	})
	return out
}

// EventCount returns how many events of kind the store holds, sealed into
// lease_events or still queued for the sealer.
func (s *Store) EventCount(t testing.TB, kind string) int {
	t.Helper()
	var n int
	query(t, s.URL, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `
			SELECT (SELECT count(*) FROM lease_events WHERE kind = $1)
			     + (SELECT count(*) FROM lease_event_queue WHERE kind = $1)`, kind).Scan(&n)
	})
	return n
}

// Backend is a PostgreSQL database of the test's own that credentials are
// issued for: tables customers and orders (with rows), and a group role of
// the test's own with SELECT on them, for roles' `member_of`.
type Backend struct {
	// URL connects to the database as a superuser (the broker's admin DSN).
	URL string
	// Database is the database's name.
	Database string
	// ReadGroup is a NOLOGIN role with USAGE on schema public and SELECT on
	// every table in it. Every user issued with member_of: [ReadGroup] in
	// this test is a member, which tells them apart from other tests' users
	// (roles are cluster-wide).
	ReadGroup string
}

// NewBackend creates the backend database and its group role. When the test
// ends the database is dropped, then the group role and every user still a
// member of it that carries the plugin's comment (whatever the broker left
// behind).
func NewBackend(t testing.TB) *Backend {
	t.Helper()
	admin := plugintest.PostgresURL(t)
	group := "cbtest_read_" + strings.ToLower(rand.Text()[:10])
	be := &Backend{ReadGroup: group}
	// Registered before the database exists, so it runs after the database
	// (and with it the group's grants) is dropped.
	t.Cleanup(func() { dropGroup(t, admin, group) })
	be.URL = plugintest.NewTestDatabase(t, admin)
	cfg, err := pgx.ParseConfig(be.URL)
	if err != nil {
		t.Fatalf("harness: parse backend URL: %v", err)
	}
	be.Database = cfg.Database
	g := pgx.Identifier{group}.Sanitize()
	be.Exec(t, `
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers, item text NOT NULL, qty int NOT NULL);
INSERT INTO customers (name) VALUES ('Ada'), ('Grace'), ('Linus');
INSERT INTO orders (customer_id, item, qty) VALUES (1, 'keyboard', 2), (2, 'compiler', 1);
CREATE ROLE `+g+` NOLOGIN;
GRANT USAGE ON SCHEMA public TO `+g+`;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO `+g+`;
`)
	return be
}

// dropGroup drops group and every member of it the plugin made.
func dropGroup(t testing.TB, adminURL, group string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Errorf("harness: drop %s: %v", group, err)
		return
	}
	defer conn.Close(ctx)
	users, err := managedMembers(ctx, conn, group)
	if err != nil {
		t.Errorf("harness: list the members of %s: %v", group, err)
	}
	for _, u := range append(users, group) {
		if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{u}.Sanitize()); err != nil {
			t.Errorf("harness: drop role %s: %v", u, err)
		}
	}
}

func managedMembers(ctx context.Context, conn *pgx.Conn, group string) ([]string, error) {
	rows, err := conn.Query(ctx, `
		SELECT u.rolname FROM pg_roles u
		WHERE EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
		              WHERE m.member = u.oid AND g.rolname = $1)
		  AND starts_with(COALESCE(shobj_description(u.oid, 'pg_authid'), ''), $2)
		ORDER BY 1`, group, ManagedComment)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Exec runs sql (any number of statements) in the backend database.
func (be *Backend) Exec(t testing.TB, sql string) {
	t.Helper()
	query(t, be.URL, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql)
		return err
	})
}

// ManagedUsers returns the users issued for this backend that still exist:
// members of ReadGroup that carry the plugin's comment.
func (be *Backend) ManagedUsers(t testing.TB) []string {
	t.Helper()
	var out []string
	query(t, be.URL, func(ctx context.Context, conn *pgx.Conn) (err error) {
		out, err = managedMembers(ctx, conn, be.ReadGroup)
		return err
	})
	return out
}

// RoleExists reports whether a role (user) called name exists.
func (be *Backend) RoleExists(t testing.TB, name string) bool {
	t.Helper()
	var ok bool
	query(t, be.URL, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, name).Scan(&ok)
	})
	return ok
}

// ValidUntil returns pg_roles.rolvaliduntil of the role name; it fails the
// test if the role does not exist or has no VALID UNTIL.
func (be *Backend) ValidUntil(t testing.TB, name string) time.Time {
	t.Helper()
	var until *time.Time
	query(t, be.URL, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT rolvaliduntil FROM pg_roles WHERE rolname = $1`, name).Scan(&until)
	})
	if until == nil {
		t.Fatalf("harness: role %s has no VALID UNTIL", name)
	}
	return *until
}

// query runs f on a fresh connection to url, failing the test on error.
func query(t testing.TB, url string, f func(ctx context.Context, conn *pgx.Conn) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("harness: connect: %v", err)
	}
	defer conn.Close(ctx)
	if err := f(ctx, conn); err != nil {
		t.Fatalf("harness: query: %v", err)
	}
}

// Deployment is what one broker of a test runs against: an issuer, a store
// database and a backend database.
type Deployment struct {
	Issuer  *Issuer
	Store   *Store
	Backend *Backend
}

// BackendName is the name of the backend in [Deployment.Config].
const BackendName = "app-pg"

// NewDeployment makes an issuer called "test", a store and a backend.
func NewDeployment(t testing.TB) *Deployment {
	t.Helper()
	return &Deployment{Issuer: NewIssuer(t, "test"), Store: NewStore(t), Backend: NewBackend(t)}
}

// Env returns the environment the config of [Deployment.Config] refers to.
func (d *Deployment) Env() []string {
	return []string{"CB_TEST_STORE_DSN=" + d.Store.URL, "CB_TEST_BACKEND_DSN=" + d.Backend.URL}
}

// Config returns a broker config with listen {{LISTEN}}, the store, the
// issuer and the backend (called "app-pg"), followed by sections: the roles,
// policies and any other top-level keys (reaper:, limits: …) of the test.
func (d *Deployment) Config(sections string) string {
	return d.ConfigWithIssuers("", sections)
}

// ConfigWithIssuers is [Deployment.Config] with more issuers after the
// deployment's own: issuers holds their YAML list items, indented as under
// issuers:, each line ending in a newline.
func (d *Deployment) ConfigWithIssuers(issuers, sections string) string {
	return fmt.Sprintf(`listen: %s
store:
  dsn: env:CB_TEST_STORE_DSN
  max_conns: 20
issuers:
%s%sbackends:
  - name: %s
    plugin: postgres
    environment: test
    owner: harness
    connection:
      dsn: env:CB_TEST_BACKEND_DSN
      max_conns: 8
%s`, ListenPlaceholder, d.Issuer.YAML(), issuers, BackendName, sections)
}

// Dump returns every row of the store's leases, lease_events and
// lease_event_queue tables as text, for checking that no secret was ever
// stored.
func (s *Store) Dump(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	query(t, s.URL, func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT l::text FROM leases l UNION ALL SELECT e::text FROM lease_events e
			UNION ALL SELECT q::text FROM lease_event_queue q`)
		if err != nil {
			return err
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, l := range lines {
			b.WriteString(l)
			b.WriteByte('\n')
		}
		return err
	})
	return b.String()
}

// Database returns the name of the store database.
func (s *Store) Database(t testing.TB) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(s.URL)
	if err != nil {
		t.Fatalf("harness: parse store URL: %v", err)
	}
	return cfg.Database
}

// SetDown makes the store unreachable (down true) or reachable again (down
// false) without touching the shared server: it disallows connections to the
// store database and ends the ones open, as a restarting or failed-over
// store would look to the broker. A store left down is brought back when the
// test ends.
func (s *Store) SetDown(t testing.TB, down bool) {
	t.Helper()
	db := pgx.Identifier{s.Database(t)}.Sanitize()
	admin := plugintest.PostgresURL(t)
	query(t, admin, func(ctx context.Context, conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s WITH ALLOW_CONNECTIONS %t", db, !down)); err != nil {
			return err
		}
		if !down {
			return nil
		}
		_, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, s.Database(t))
		return err
	})
	if down {
		t.Cleanup(func() {
			query(t, admin, func(ctx context.Context, conn *pgx.Conn) error {
				_, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s WITH ALLOW_CONNECTIONS true", db))
				return err
			})
		})
	}
}
