package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/plugins/postgres"
	"github.com/credbroker/credbroker/secret"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// decoder decodes a YAML section strictly, as the broker does.
var decoder = plugintest.Decoder

// bundle is what setup gives a test.
type bundle struct {
	adminURL string               // superuser, connected to the test's own database
	database string               // the test's database
	conn     *postgres.Connection // the parsed connection section for adminURL
}

// setup makes a database of the test's own with tables items and orders
// (one row each), and a connection section pointing at it.
func setup(t *testing.T) bundle {
	t.Helper()
	dbURL := plugintest.NewTestDatabase(t, plugintest.PostgresURL(t))
	exec(t, dbURL,
		"CREATE TABLE items (id serial PRIMARY KEY, name text)",
		"CREATE TABLE orders (id serial PRIMARY KEY, item int)",
		"INSERT INTO items (name) VALUES ('one')",
		"INSERT INTO orders (item) VALUES (1)",
	)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return bundle{adminURL: dbURL, database: strings.TrimPrefix(u.Path, "/"), conn: connection(t, dbURL, "")}
}

// connection writes dsn to a file and parses a connection section that
// references it, plus extra YAML.
func connection(t *testing.T, dsn, extra string) *postgres.Connection {
	t.Helper()
	file := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(file, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := postgres.Driver{}.ParseConnection(decoder("dsn: file:" + file + "\n" + extra))
	if err != nil {
		t.Fatalf("ParseConnection: %v", err)
	}
	return c
}

func parseRole(t *testing.T, src string) *postgres.Role {
	t.Helper()
	r, _, err := postgres.Driver{}.ParseRole(decoder(src))
	if err != nil {
		t.Fatalf("ParseRole: %v", err)
	}
	return r
}

// open opens the backend as the broker does: through plugins.Open, with
// its sanitizing decorator.
func open(t *testing.T, conn *postgres.Connection) plugins.Plugin {
	t.Helper()
	p, err := plugins.Open(t.Context(), postgres.New(), conn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// testRole is the role name of the leases the tests make.
const testRole = "test"

// lease is an issued user as the broker keeps it: the credential, the role's
// spec and the state Create returned.
type lease struct {
	plugins.Credential
	spec  *postgres.Role
	state []byte
}

// create asks p for a user named prefix plus a random suffix, for role.
func create(ctx context.Context, p plugins.Plugin, prefix string, role *postgres.Role) (lease, error) {
	username := plugins.NewUsername(prefix, 63)
	resp, err := p.Create(ctx, plugins.CreateRequest{
		Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour),
		Role: testRole, Spec: role,
	})
	return lease{Credential: resp.Credential, spec: role, state: resp.State}, err
}

// issue creates a user for role, revoked when the test ends.
func issue(t *testing.T, p plugins.Plugin, prefix string, role *postgres.Role) lease {
	t.Helper()
	l, err := create(t.Context(), p, prefix, role)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = revoke(context.Background(), p, l) })
	return l
}

// revoke revokes l as the broker does while its role is in the config.
func revoke(ctx context.Context, p plugins.Plugin, l lease) error {
	_, err := p.Revoke(ctx, plugins.RevokeRequest{Username: l.Username, Role: testRole, Spec: l.spec, State: l.state})
	return err
}

// revokeRemoved revokes l as the broker does once its role is removed from
// the config: from its state alone.
func revokeRemoved(ctx context.Context, p plugins.Plugin, l lease) error {
	_, err := p.Revoke(ctx, plugins.RevokeRequest{Username: l.Username, Role: testRole, State: l.state})
	return err
}

// exec runs statements on a fresh connection to url.
func exec(t *testing.T, url string, statements ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", plugins.Sanitize(err))
	}
	defer conn.Close(ctx)
	for _, s := range statements {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// queryRow scans one row of sql on a fresh connection to url.
func queryRow(t *testing.T, url, sql string, args []any, dest ...any) error {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", plugins.Sanitize(err))
	}
	defer conn.Close(context.Background())
	return conn.QueryRow(t.Context(), sql, args...).Scan(dest...)
}

func roleExists(t *testing.T, url, username string) bool {
	t.Helper()
	var n int
	if err := queryRow(t, url, "SELECT count(*) FROM pg_roles WHERE rolname = $1", []any{username}, &n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// session is a login as an issued credential.
type session struct{ conn *pgx.Conn }

func login(ctx context.Context, c plugins.Credential) (plugintest.Session, error) {
	conn, err := pgx.Connect(ctx, c.URI.Reveal())
	if err != nil {
		return nil, plugins.Sanitize(err, c.Password)
	}
	return &session{conn: conn}, nil
}

func (s *session) Ping(ctx context.Context) error {
	_, err := s.conn.Exec(ctx, "SELECT 1")
	return err
}

// CheckGrants proves the user can read items but not write it.
func (s *session) CheckGrants(ctx context.Context) error {
	var n int
	if err := s.conn.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil {
		return fmt.Errorf("SELECT from items: %w", err)
	}
	_, err := s.conn.Exec(ctx, "INSERT INTO items (name) VALUES ('two')")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != pgerrcode.InsufficientPrivilege {
		return fmt.Errorf("INSERT into items = %v, want permission denied", err)
	}
	return nil
}

func (s *session) Close() error { return s.conn.Close(context.Background()) }

// validUntil reads the role's VALID UNTIL.
func validUntil(url string) func(ctx context.Context, username string) (time.Time, error) {
	return func(ctx context.Context, username string) (time.Time, error) {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return time.Time{}, err
		}
		defer conn.Close(context.Background())
		var t *time.Time
		if err := conn.QueryRow(ctx, "SELECT rolvaliduntil FROM pg_roles WHERE rolname = $1", username).Scan(&t); err != nil {
			return time.Time{}, err
		}
		if t == nil {
			return time.Time{}, errors.New("the role has no VALID UNTIL")
		}
		return *t, nil
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	t.Run("Grants", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		plugintest.Run(t, plugintest.Harness{
			Driver:        postgres.New(),
			Connection:    b.conn,
			Role:          parseRole(t, `grants: [{privileges: [SELECT], schema: public, tables: ["*"]}]`),
			Login:         login,
			BackendExpiry: validUntil(b.adminURL),
		})
	})
	t.Run("MemberOf", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		group := "cbtest_readers_" + strings.ToLower(plugins.NewPassword().Reveal()[:8])
		exec(t, b.adminURL,
			"CREATE ROLE "+group+" NOLOGIN",
			"GRANT USAGE ON SCHEMA public TO "+group,
			"GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+group,
		)
		t.Cleanup(func() { exec(t, b.adminURL, "DROP OWNED BY "+group, "DROP ROLE "+group) })
		plugintest.Run(t, plugintest.Harness{
			Driver:        postgres.New(),
			Connection:    b.conn,
			Role:          parseRole(t, "member_of: ["+group+"]"),
			Login:         login,
			BackendExpiry: validUntil(b.adminURL),
		})
	})
	t.Run("MemberOfCreateRoleAdmin", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		group := newRole(t, b.adminURL, "cbtest_readers", "NOLOGIN")
		exec(t, b.adminURL, "GRANT USAGE ON SCHEMA public TO "+group, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+group)
		pw := plugins.NewPassword()
		admin := newRole(t, b.adminURL, "cbtest_admin", "LOGIN CREATEROLE PASSWORD '"+postgres.SCRAMVerifier(pw.Reveal())+"'")
		plugintest.Run(t, plugintest.Harness{
			Driver:        postgres.New(),
			Connection:    connection(t, withUser(t, b.adminURL, admin, pw).Reveal(), ""),
			Role:          parseRole(t, "member_of: ["+group+"]"),
			Login:         login,
			BackendExpiry: validUntil(b.adminURL),
		})
	})
	t.Run("CreationStatements", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		plugintest.Run(t, plugintest.Harness{
			Driver:     postgres.New(),
			Connection: b.conn,
			Role: parseRole(t, `
creation_statements:
  - CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
  - GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";
revocation_statements:
  - REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{{name}}"
`),
			Login:         login,
			BackendExpiry: validUntil(b.adminURL),
		})
	})
}

func TestRenewMovesValidUntil(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	username := plugins.NewUsername("renew", 63)
	first := time.Now().Add(10 * time.Minute).Truncate(time.Microsecond)
	role := parseRole(t, "member_of: [pg_read_all_data]")
	created, err := p.Create(t.Context(), plugins.CreateRequest{
		Username: username, Password: plugins.NewPassword(), ExpiresAt: first, Role: testRole, Spec: role,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = revoke(context.Background(), p, lease{Credential: created.Credential, spec: role, state: created.State})
	})
	expiry := validUntil(b.adminURL)
	if got, err := expiry(t.Context(), username); err != nil || !got.Equal(first) {
		t.Fatalf("rolvaliduntil after Create = %v, %v; want %v", got, err, first)
	}
	second := first.Add(time.Hour)
	// Renew keeps the state (a response without one), also once the role is
	// gone from the config.
	for _, spec := range []any{role, nil} {
		renewed, err := p.Renew(t.Context(), plugins.RenewRequest{
			Username: username, Role: testRole, Spec: spec, State: created.State, ExpiresAt: second,
		})
		if err != nil {
			t.Fatal(err)
		}
		if renewed.State != nil {
			t.Errorf("Renew returned state %s, want none: the lease's state stays as it is", renewed.State)
		}
	}
	if got, err := expiry(t.Context(), username); err != nil || !got.Equal(second) {
		t.Fatalf("rolvaliduntil after Renew = %v, %v; want %v", got, err, second)
	}
}

func TestListManagedDatesRoles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	before := time.Now().Add(-time.Second)
	username := issue(t, p, "dated", parseRole(t, "member_of: [pg_read_all_data]")).Username
	users, err := p.ListManaged(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if u.Username == username {
			if u.CreatedAt.Before(before) || u.CreatedAt.After(time.Now().Add(time.Second)) {
				t.Errorf("CreatedAt = %v, want about now", u.CreatedAt)
			}
			return
		}
	}
	t.Fatalf("ListManaged does not list %s", username)
}

func TestRenewMissingRole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	_, err := p.Renew(t.Context(), plugins.RenewRequest{
		Username: plugins.NewUsername("gone", 63), Role: testRole, State: []byte(`{"v":1}`), ExpiresAt: time.Now().Add(time.Hour),
	})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Renew of a missing role = %v, want an error saying it does not exist", err)
	}
}

// TestConcurrentCreatesWithGrants creates 40 users with explicit grants on 20
// tables at once, then revokes them while 40 more are created: PostgreSQL
// fails concurrent ACL updates of a table unless the plugin serializes them.
func TestConcurrentCreatesWithGrants(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var tables []string
	for i := range 20 {
		tables = append(tables, fmt.Sprintf("CREATE TABLE t%02d (id int)", i))
	}
	exec(t, b.adminURL, tables...)
	p := open(t, b.conn)
	role := parseRole(t, `
grants:
  - {privileges: [SELECT, INSERT], schema: public, tables: ["*"]}
  - {privileges: [UPDATE], schema: public, tables: [t01, t02, t03]}
`)
	const n = 40
	var (
		mu      sync.Mutex
		made    = map[string]lease{}
		removed []string
	)
	t.Cleanup(func() {
		for _, l := range made {
			_ = revoke(context.Background(), p, l)
		}
	})
	createBatch := func(wg *sync.WaitGroup) {
		for range n {
			wg.Go(func() {
				l, err := create(t.Context(), p, "concurrent", role)
				if err != nil {
					t.Errorf("Create: %v", err)
					return
				}
				mu.Lock()
				made[l.Username] = l
				mu.Unlock()
			})
		}
	}
	revokeAll := func(wg *sync.WaitGroup) {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range made {
			removed = append(removed, l.Username)
			wg.Go(func() {
				if err := revoke(t.Context(), p, l); err != nil {
					t.Errorf("Revoke %s: %v", l.Username, err)
				}
			})
		}
		clear(made)
	}

	var wg sync.WaitGroup
	createBatch(&wg)
	wg.Wait()
	revokeAll(&wg)
	createBatch(&wg)
	wg.Wait()
	revokeAll(&wg)
	wg.Wait()
	if len(removed) != 2*n {
		t.Fatalf("revoked %d users, want %d", len(removed), 2*n)
	}

	var left int
	if err := queryRow(t, b.adminURL, "SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)",
		[]any{removed}, &left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d roles are left after revoking all", left)
	}
}

// TestRevokeOwnerInOtherDatabase revokes a user that owns a table in another
// database and has a session open there.
func TestRevokeOwnerInOtherDatabase(t *testing.T) {
	t.Parallel()
	b := setup(t)
	otherURL := plugintest.NewTestDatabase(t, plugintest.PostgresURL(t))
	p := open(t, b.conn)
	owner := issue(t, p, "owner", parseRole(t, `grants: [{privileges: [SELECT], schema: public, tables: [items]}]`))
	username := owner.Username
	exec(t, otherURL,
		"CREATE TABLE owned (id int)",
		"ALTER TABLE owned OWNER TO "+username,
		"GRANT CREATE ON SCHEMA public TO "+username,
	)

	// A session in the other database, as the user.
	u, err := url.Parse(otherURL)
	if err != nil {
		t.Fatal(err)
	}
	userURL, err := url.Parse(owner.URI.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	userURL.Path = u.Path
	s, err := login(t.Context(), plugins.Credential{URI: secret.New(userURL.String())})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	if err := revoke(t.Context(), p, owner); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if roleExists(t, b.adminURL, username) {
		t.Error("the role still exists after Revoke")
	}
	var n int
	if err := queryRow(t, otherURL, "SELECT count(*) FROM pg_tables WHERE tablename = 'owned'", nil, &n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("the table the user owned survived Revoke, want it dropped")
	}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := s.Ping(ctx)
		timedOut := ctx.Err() != nil
		cancel()
		switch {
		case timedOut:
			t.Fatal("Ping on the revoked session hung")
		case err != nil:
			return // the session is gone
		case time.Now().After(deadline):
			t.Fatal("the user's session in the other database survived Revoke")
		}
		<-tick.C
	}
}

// TestRevocationStatementsRun: a user revokes with the revocation
// statements it was issued with, kept in its state, whether its role is
// unchanged, changed or removed from the config. The role's comment is only
// the marker.
func TestRevocationStatementsRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	exec(t, b.adminURL, "CREATE TABLE revocations (username text, by text)")
	p := open(t, b.conn)
	roleWith := func(by string) *postgres.Role {
		return parseRole(t, `
creation_statements:
  - CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}
revocation_statements:
  - INSERT INTO revocations (username, by) VALUES ('{{name}}', '`+by+`')
`)
	}
	issued := roleWith("issued")
	tests := map[string]func(context.Context, lease) error{
		"RoleUnchanged": func(ctx context.Context, l lease) error { return revoke(ctx, p, l) },
		"RoleRemoved":   func(ctx context.Context, l lease) error { return revokeRemoved(ctx, p, l) },
		// The issue failed after Create: the store never took its state, and
		// the reaper revokes the user with the role as it is.
		"StateLost": func(ctx context.Context, l lease) error {
			l.state = nil
			return revoke(ctx, p, l)
		},
		"RoleChanged": func(ctx context.Context, l lease) error {
			l.spec = roleWith("changed")
			return revoke(ctx, p, l)
		},
	}
	for name, revokeLease := range tests {
		t.Run(name, func(t *testing.T) {
			l := issue(t, p, "revstmt", issued)
			var comment string
			if err := queryRow(t, b.adminURL, "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
				[]any{l.Username}, &comment); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(comment, "credbroker:created=") || !strings.HasSuffix(comment, ";contract=2") || strings.Count(comment, ";") != 1 {
				t.Errorf("the role's comment is %q, want the marker, the date and the contract alone", comment)
			}
			if !strings.Contains(string(l.state), "INSERT INTO revocations") {
				t.Errorf("the state %s does not hold the revocation statements", l.state)
			}
			if err := revokeLease(t.Context(), l); err != nil {
				t.Fatal(err)
			}
			var by []string
			if err := queryRow(t, b.adminURL, "SELECT COALESCE(array_agg(by), '{}') FROM revocations WHERE username = $1",
				[]any{l.Username}, &by); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(by, []string{"issued"}) {
				t.Errorf("revocation statements ran as %q, want the issued ones once", by)
			}
			if roleExists(t, b.adminURL, l.Username) {
				t.Error("the role still exists after Revoke")
			}
		})
	}
}

// TestRevokeUnreadableState: a state this release cannot read (written by
// a newer one, or damaged) fails the revoke before anything changes.
func TestRevokeUnreadableState(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	l := issue(t, p, "unreadable", parseRole(t, "member_of: [pg_read_all_data]"))
	for _, st := range []string{`{"v":2}`, `{"v":1,"reassign_owned_to":"credbroker_managed"}`, `not json`} {
		bad := l
		bad.state = []byte(st)
		if err := revoke(t.Context(), p, bad); err == nil || !strings.Contains(err.Error(), "state") {
			t.Errorf("Revoke with state %s = %v, want an error about the state", st, err)
		}
	}
	var login bool
	if err := queryRow(t, b.adminURL, "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", []any{l.Username}, &login); err != nil || !login {
		t.Errorf("after the failed revokes the user can log in: %t (%v); want it untouched", login, err)
	}
}

func TestRevokeRefusesUnmanagedRole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	name := plugins.NewUsername("unmanaged", 63)
	exec(t, b.adminURL, "CREATE ROLE "+name+" LOGIN")
	t.Cleanup(func() { exec(t, b.adminURL, "DROP ROLE IF EXISTS "+name) })
	for _, st := range [][]byte{nil, []byte(`{"v":1}`)} {
		_, err := p.Revoke(t.Context(), plugins.RevokeRequest{Username: name, State: st})
		if err == nil || !strings.Contains(err.Error(), "credbroker did not create it") {
			t.Errorf("Revoke (state %s) of a role credbroker did not make = %v, want a refusal", st, err)
		}
		if !roleExists(t, b.adminURL, name) {
			t.Fatal("Revoke dropped a role credbroker did not make")
		}
	}
	_, err := p.(plugins.StateUpgrader).UpgradeState(t.Context(), plugins.UpgradeStateRequest{Username: name})
	if err == nil || !strings.Contains(err.Error(), "credbroker did not create it") {
		t.Errorf("UpgradeState of a role credbroker did not make = %v, want a refusal", err)
	}
}

func TestCredential(t *testing.T) {
	t.Parallel()
	b := setup(t)
	role := parseRole(t, "member_of: [pg_read_all_data]")
	t.Run("FromDSN", func(t *testing.T) {
		p := open(t, b.conn)
		cred := issue(t, p, "cred", role)
		username, pw := cred.Username, cred.Password
		want := map[string]string{"host": "127.0.0.1", "port": "5432", "database": b.database}
		for k, v := range want {
			if cred.Fields[k] != v {
				t.Errorf("Fields[%q] = %q, want %q", k, cred.Fields[k], v)
			}
		}
		wantURI := "postgres://" + username + ":" + pw.Reveal() + "@127.0.0.1:5432/" + b.database + "?sslmode=disable"
		if cred.URI.Reveal() != wantURI {
			t.Errorf("URI = %s, want %s", plugins.SanitizeString(cred.URI.Reveal()), plugins.SanitizeString(wantURI))
		}
		// The environment alone is enough to log in, as psql would, and it
		// holds the variables the driver declares.
		if names := slices.Sorted(maps.Keys(cred.Env)); !slices.Equal(names, slices.Sorted(slices.Values(postgres.Driver{}.Describe().Env))) {
			t.Errorf("Env holds %q, the driver declares %q", names, postgres.Driver{}.Describe().Env)
		}
		var kv []string
		for k, key := range map[string]string{"PGHOST": "host", "PGPORT": "port", "PGDATABASE": "dbname",
			"PGUSER": "user", "PGPASSWORD": "password", "PGSSLMODE": "sslmode"} {
			v, ok := cred.Env[k]
			if !ok {
				t.Fatalf("Env has no %s", k)
			}
			kv = append(kv, key+"='"+v.Reveal()+"'")
		}
		conn, err := pgx.Connect(t.Context(), strings.Join(kv, " "))
		if err != nil {
			t.Fatalf("login with Env: %v", plugins.Sanitize(err, pw))
		}
		var user string
		err = conn.QueryRow(t.Context(), "SELECT current_user").Scan(&user)
		_ = conn.Close(context.Background())
		if err != nil || user != username {
			t.Errorf("logged in with Env as %q (%v), want %q", user, err, username)
		}
	})
	t.Run("Overrides", func(t *testing.T) {
		p := open(t, connection(t, b.adminURL, "host: db.example.com\nport: 6432\ndatabase: orders"))
		cred := issue(t, p, "cred", role)
		u, err := url.Parse(cred.URI.Reveal())
		if err != nil {
			t.Fatal(err)
		}
		if u.Host != "db.example.com:6432" || u.Path != "/orders" || cred.Fields["database"] != "orders" {
			t.Errorf("credential points at %s%s (fields %v), want db.example.com:6432/orders", u.Host, u.Path, cred.Fields)
		}
	})
}

func TestCheck(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := open(t, b.conn).Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}

	weak := plugins.NewUsername("weak", 63)
	weakPassword := plugins.NewPassword()
	exec(t, b.adminURL, "CREATE ROLE "+weak+" LOGIN PASSWORD '"+postgres.SCRAMVerifier(weakPassword.Reveal())+"'")
	t.Cleanup(func() { exec(t, b.adminURL, "DROP ROLE IF EXISTS "+weak) })
	u, err := url.Parse(b.adminURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(weak, weakPassword.Reveal())
	err = open(t, connection(t, u.String(), "")).Check(t.Context())
	if err == nil || !strings.Contains(err.Error(), "CREATEROLE") {
		t.Errorf("Check as a role without CREATEROLE = %v, want an error naming CREATEROLE", err)
	}
}

func TestOpenUnavailable(t *testing.T) {
	t.Parallel()
	const password = "s3cret-admin-pw"
	conn := connection(t, "postgres://admin:"+password+"@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5", "")
	_, err := postgres.Driver{}.Open(t.Context(), conn)
	if !errors.Is(err, plugins.ErrUnavailable) {
		t.Errorf("Open of a server that is not there = %v, want ErrUnavailable", err)
	}
	if err != nil && strings.Contains(fmt.Sprintf("%v %+v", err, err), password) {
		t.Errorf("the error quotes the DSN password: %v", err)
	}
}

func TestOpenMissingSecret(t *testing.T) {
	t.Parallel()
	conn, err := postgres.Driver{}.ParseConnection(decoder("dsn: env:CREDBROKER_TEST_NO_SUCH_VARIABLE"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = postgres.Driver{}.Open(t.Context(), conn)
	if err == nil || !strings.Contains(err.Error(), "CREDBROKER_TEST_NO_SUCH_VARIABLE") {
		t.Errorf("Open with an unset DSN variable = %v, want an error naming it", err)
	}
}

// TestErrorsHideDSNPassword provokes server errors through an admin DSN with
// a password (the local server trusts it anyway) and checks none quotes it.
func TestErrorsHideDSNPassword(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const password = "dsn-pw-never-printed"
	u, err := url.Parse(b.adminURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), password)
	conn := connection(t, u.String(), "")
	raw, err := postgres.Driver{}.Open(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// The decorator of plugins.Open redacts what the plugin says it holds.
	holds := false
	for _, v := range raw.(plugins.SecretHolder).Secrets() {
		holds = holds || v.Reveal() == password
	}
	if !holds {
		t.Error("Secrets does not hold the DSN's password")
	}

	p := open(t, conn)
	_, err = p.Renew(t.Context(), plugins.RenewRequest{
		Username: plugins.NewUsername("x", 63), Role: testRole, ExpiresAt: time.Now().Add(time.Hour),
	})
	errs := []error{err}
	_, err = create(t.Context(), p, "x", parseRole(t, "member_of: [cbtest_no_such_group]"))
	errs = append(errs, err)
	// A server error that quotes the admin's password, as one quoting SQL
	// might.
	_, err = create(t.Context(), p, "x", parseRole(t, `member_of: ["`+password+`"]`))
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Error("expected an error")
			continue
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("the error quotes the DSN password: %v", err)
		}
	}
}

func TestOpenMalformedDSN(t *testing.T) {
	t.Parallel()
	for name, dsn := range map[string]string{
		"URL":          "postgres://admin:pw-in-bad-url@127.0.0.1:notaport/postgres",
		"KeywordValue": "host=127.0.0.1 password='pw-in-bad-kv sslmode=nonsense",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := postgres.Driver{}.Open(t.Context(), connection(t, dsn, ""))
			if err == nil {
				t.Fatal("Open with a malformed DSN succeeded")
			}
			if strings.Contains(err.Error(), "pw-in-bad") {
				t.Errorf("the error quotes the DSN password: %v", err)
			}
		})
	}
}
