package mysql_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"go.uber.org/goleak"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/mysql"
	"github.com/credbroker/credbroker/plugins/plugintest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// decoder decodes a YAML section strictly, as the broker does.
var decoder = plugintest.Decoder

// Server error numbers the tests expect.
const (
	erDBAccessDenied    = 1044 // ER_DBACCESS_DENIED_ERROR
	erAccessDenied      = 1045 // ER_ACCESS_DENIED_ERROR
	erTableAccessDenied = 1142 // ER_TABLEACCESS_DENIED_ERROR
)

// bundle is what setup gives a test.
type bundle struct {
	adminDSN string // every privilege, WITH GRANT OPTION
	database string // the test's database, with a table items of one row
	// other is a database the roles do not grant, named as database would be
	// if the _ in it were a wildcard: reading it proves the grant is exact.
	other string
	conn  *mysql.Connection // the parsed connection section for adminDSN
}

// setup makes a database of the test's own with a table items (one row), a
// second one the role does not grant, and a connection section for the
// admin.
func setup(t *testing.T) bundle {
	t.Helper()
	dsn := plugintest.MySQLDSN(t)
	b := bundle{adminDSN: dsn, database: plugintest.NewMySQLDatabase(t, dsn)}
	b.other = strings.Replace(b.database, "_", "x", 1)
	t.Cleanup(func() { exec(t, dsn, "DROP DATABASE IF EXISTS `"+b.other+"`") })
	exec(t, dsn, "CREATE DATABASE `"+b.other+"`")
	for _, db := range []string{b.database, b.other} {
		exec(t, dsn,
			"CREATE TABLE `"+db+"`.items (id int PRIMARY KEY, name varchar(20))",
			"INSERT INTO `"+db+"`.items VALUES (1, 'one')",
		)
	}
	b.conn = connection(t, dsn, "")
	return b
}

// escaped quotes a database name for GRANT … ON db.* in a creation
// statement: its _ escaped, or GRANT would take it as a wildcard and the
// user could read b.other too (the plugin does this itself for grants).
func escaped(db string) string {
	return "`" + strings.ReplaceAll(db, "_", `\_`) + "`"
}

// connection writes dsn to a file and parses a connection section that
// references it, plus extra YAML.
func connection(t *testing.T, dsn, extra string) *mysql.Connection {
	t.Helper()
	file := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(file, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := mysql.Driver{}.ParseConnection(decoder("dsn: file:" + file + "\n" + extra))
	if err != nil {
		t.Fatalf("ParseConnection: %v", err)
	}
	return c
}

// parseRole parses a role section.
func parseRole(t *testing.T, src string) *mysql.Role {
	t.Helper()
	r, _, err := mysql.Driver{}.ParseRole(decoder(src))
	if err != nil {
		t.Fatalf("ParseRole: %v", err)
	}
	return r
}

// open opens the plugin as the broker does, through the sanitizing
// decorator.
func open(t *testing.T, conn *mysql.Connection) plugins.Plugin {
	t.Helper()
	return openWith(t, mysql.New(), conn)
}

func openWith(t *testing.T, d plugins.Driver, conn *mysql.Connection) plugins.Plugin {
	t.Helper()
	p, err := plugins.Open(t.Context(), d, conn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// exec runs statements on a fresh connection to dsn. It does not use the
// test's context, so it works in a Cleanup too.
func exec(t *testing.T, dsn string, statements ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range statements {
		if _, err := db.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// queryRow scans one row of query on a fresh connection to dsn.
func queryRow(t *testing.T, dsn, query string, args []any, dest ...any) error {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return db.QueryRowContext(t.Context(), query, args...).Scan(dest...)
}

// accounts counts the accounts named username.
func accounts(t *testing.T, dsn, username string) int {
	t.Helper()
	var n int
	if err := queryRow(t, dsn, "SELECT COUNT(*) FROM mysql.user WHERE User = ?", []any{username}, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// testRole is the role name of the leases the tests make.
const testRole = "test"

// issued is a user Create made: its credential and the lease's State.
type issued struct {
	plugins.Credential
	state []byte
}

// create issues a user of role, revoked when the test ends.
func create(t *testing.T, p plugins.Plugin, role *mysql.Role) issued {
	t.Helper()
	username := plugins.NewUsername("test", 32)
	var state []byte
	t.Cleanup(func() {
		_, _ = p.Revoke(context.Background(), plugins.RevokeRequest{Username: username, Role: testRole, State: state})
	})
	resp, err := p.Create(t.Context(), plugins.CreateRequest{
		Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Role: testRole, Spec: role,
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	state = resp.State
	return issued{Credential: resp.Credential, state: resp.State}
}

// revoke revokes u as the broker does for a lease whose role is gone from
// the config: from its State alone.
func revoke(ctx context.Context, p plugins.Plugin, u issued) error {
	_, err := p.Revoke(ctx, plugins.RevokeRequest{Username: u.Username, Role: testRole, State: u.state})
	return err
}

// session is a login as an issued credential: one connection, held open.
type session struct {
	db    *sql.DB
	conn  *sql.Conn
	grant string // the database the role grants SELECT on
	other string // a database the role does not grant
}

// login connects with the credential's URI, as a workload would.
func (b bundle) login(ctx context.Context, c plugins.Credential) (plugintest.Session, error) {
	u, err := url.Parse(c.URI.Reveal())
	if err != nil {
		return nil, errors.New("the URI does not parse") // url.Error would quote it
	}
	if u.Scheme != "mysql" {
		return nil, fmt.Errorf("URI scheme %q, want mysql", u.Scheme)
	}
	cfg := gomysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net, cfg.Addr = "tcp", u.Host
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	cfg.Timeout = 5 * time.Second
	cfg.Logger = &gomysql.NopLogger{} // a session Revoke kills is expected to end
	connector, err := gomysql.NewConnector(cfg)
	if err != nil {
		return nil, plugins.Sanitize(err, c.Password)
	}
	db := sql.OpenDB(connector)
	conn, err := db.Conn(ctx)
	if err != nil {
		_ = db.Close()
		if isError(err, erAccessDenied) {
			err = fmt.Errorf("%w (if the password is right, an anonymous account such as ''@'localhost' may "+
				"shadow the issued '%%' account: Plugin.CheckRole reports it)", err)
		}
		return nil, plugins.Sanitize(err, c.Password)
	}
	return &session{db: db, conn: conn, grant: b.database, other: b.other}, nil
}

func (s *session) Ping(ctx context.Context) error { return s.conn.PingContext(ctx) }

// CheckGrants proves the user can read items in the granted database but
// not write it, and cannot read the other database.
func (s *session) CheckGrants(ctx context.Context) error {
	var n int
	if err := s.conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM `"+s.grant+"`.items").Scan(&n); err != nil {
		return fmt.Errorf("SELECT from the granted database: %w", err)
	}
	_, err := s.conn.ExecContext(ctx, "INSERT INTO `"+s.grant+"`.items VALUES (2, 'two')")
	if !isError(err, erTableAccessDenied) {
		return fmt.Errorf("INSERT into the granted database = %v, want access denied", err)
	}
	err = s.conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM `"+s.other+"`.items").Scan(&n)
	if !isError(err, erTableAccessDenied, erDBAccessDenied) {
		return fmt.Errorf("SELECT from another database (%s) = %v, want access denied", s.other, err)
	}
	return nil
}

func (s *session) Close() error {
	return errors.Join(s.conn.Close(), s.db.Close())
}

// isError reports whether err is a server error with one of numbers.
func isError(err error, numbers ...uint16) bool {
	var myErr *gomysql.MySQLError
	if !errors.As(err, &myErr) {
		return false
	}
	for _, n := range numbers {
		if myErr.Number == n {
			return true
		}
	}
	return false
}

func TestConformance(t *testing.T) {
	t.Parallel()
	t.Run("Grants", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		plugintest.Run(t, plugintest.Harness{
			Driver:     mysql.New(),
			Connection: b.conn,
			Role:       parseRole(t, `grants: [{privileges: [SELECT], on: "`+b.database+`.*"}]`),
			Login:      b.login,
		})
	})
	t.Run("TableGrant", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		plugintest.Run(t, plugintest.Harness{
			Driver:     mysql.New(),
			Connection: b.conn,
			Role:       parseRole(t, `{host: "%", grants: [{privileges: [SELECT], on: "`+b.database+`.items"}]}`),
			Login:      b.login,
		})
	})
	t.Run("QuotingSQLModes", func(t *testing.T) {
		// The admin's sessions run with the sql_modes that change how
		// strings and quotes parse: the plugin's SQL must mean the same.
		t.Parallel()
		b := setup(t)
		cfg, err := gomysql.ParseDSN(b.adminDSN)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		cfg.Params["sql_mode"] = "'ANSI_QUOTES,NO_BACKSLASH_ESCAPES'"
		plugintest.Run(t, plugintest.Harness{
			Driver:     mysql.New(),
			Connection: connection(t, cfg.FormatDSN(), ""),
			Role:       parseRole(t, `grants: [{privileges: [SELECT], on: "`+b.database+`.*"}]`),
			Login:      b.login,
		})
	})
	t.Run("CreationStatements", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		plugintest.Run(t, plugintest.Harness{
			Driver:     mysql.New(),
			Connection: b.conn,
			Role: parseRole(t, `
creation_statements:
  - CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON `+escaped(b.database)+`.* TO '{{name}}'@'%'
revocation_statements:
  - REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{{name}}'@'%'
`),
			Login: b.login,
		})
	})
}

// TestCreateHalfMadeIsDropped makes Create fail after the account exists: it
// returns an error and the account is gone.
func TestCreateHalfMadeIsDropped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	roles := map[string]struct {
		role, wantErr string
	}{
		"SecondGrantFails": {
			role:    `grants: [{privileges: [SELECT], on: "` + b.database + `.*"}, {privileges: [SELECT], on: "` + b.database + `.no_such_table"}]`,
			wantErr: "grants[1]",
		},
		"StatementFailsHalfway": {
			role: `creation_statements: ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; ` +
				`CREATE USER '{{name}}'@'localhost' IDENTIFIED BY '{{password}}'; GRANT SELECT ON cbtest_no_such_db.t TO '{{name}}'@'%'"]`,
			wantErr: "creation_statements[0]#3",
		},
		"LaterStatementFails": {
			role:    `creation_statements: ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'", "THIS IS NOT SQL"]`,
			wantErr: "creation_statements[1]",
		},
		"StatementsMakeNoUser": {
			role:    `creation_statements: ["DO '{{name}}', LENGTH('x') -- IDENTIFIED BY '{{password}}'"]`,
			wantErr: "made no user",
		},
	}
	for name, tt := range roles {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			username := plugins.NewUsername("halfmade", 32)
			pw := plugins.NewPassword()
			role := parseRole(t, tt.role)
			// The broker revokes a failed Create with no State.
			t.Cleanup(func() {
				_, _ = p.Revoke(context.Background(), plugins.RevokeRequest{Username: username, Role: testRole, Spec: role})
			})
			_, err := p.Create(t.Context(), plugins.CreateRequest{
				Username: username, Password: pw, ExpiresAt: time.Now().Add(time.Hour), Role: testRole, Spec: role,
			})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Create = %v, want an error naming %s", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), pw.Reveal()) || strings.Contains(err.Error(), mysql.NativePasswordHash(pw.Reveal())) {
				t.Errorf("the error quotes the password or its hash: %v", err)
			}
			if n := accounts(t, b.adminDSN, username); n != 0 {
				t.Errorf("%d accounts of the user are left after the failed Create", n)
			}
		})
	}
}

// TestNilRole: a role spec that is a nil *Role is refused, not a panic.
func TestNilRole(t *testing.T) {
	t.Parallel()
	p := open(t, setup(t).conn)
	var none *mysql.Role
	_, err := p.Create(t.Context(), plugins.CreateRequest{
		Username: plugins.NewUsername("nil", 32), Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Role: testRole, Spec: none,
	})
	if err == nil || !strings.Contains(err.Error(), "no role spec") {
		t.Errorf("Create with a nil *Role = %v, want a refusal", err)
	}
	if err := p.CheckRole(t.Context(), none); err == nil || !strings.Contains(err.Error(), "no role spec") {
		t.Errorf("CheckRole of a nil *Role = %v, want a refusal", err)
	}
}

// TestCreateExistingLeavesIt asks for a user that exists already: Create
// fails and leaves the account alone, whichever form the role takes.
func TestCreateExistingLeavesIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	for name, role := range map[string]string{
		"Grants":             `grants: [{privileges: [SELECT], on: "` + b.database + `.*"}]`,
		"CreationStatements": `creation_statements: ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'"]`,
	} {
		t.Run(name, func(t *testing.T) {
			cred := create(t, p, parseRole(t, role))
			_, err := p.Create(t.Context(), plugins.CreateRequest{
				Username: cred.Username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour),
				Role: testRole, Spec: parseRole(t, role),
			})
			if err == nil {
				t.Fatal("Create of an existing user succeeded")
			}
			if n := accounts(t, b.adminDSN, cred.Username); n != 1 {
				t.Errorf("%d accounts of the existing user are left, want 1", n)
			}
		})
	}
}

// TestCreationStatements runs Vault's own example statements: one entry, two
// statements, and a host part of its own per account.
func TestCreationStatements(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	role := parseRole(t, `
creation_statements:
  - CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON `+escaped(b.database)+`.* TO '{{name}}'@'%';
  - CREATE USER '{{username}}'@'localhost' IDENTIFIED WITH mysql_native_password BY "{{password}}"
`)
	cred := create(t, p, role)
	if n := accounts(t, b.adminDSN, cred.Username); n != 2 {
		t.Fatalf("%d accounts, want 2 ('%%' and 'localhost')", n)
	}
	var stored string
	if err := queryRow(t, b.adminDSN, "SELECT authentication_string FROM mysql.user WHERE User = ? AND Host = 'localhost'",
		[]any{cred.Username}, &stored); err != nil {
		t.Fatal(err)
	}
	if stored != mysql.NativePasswordHash(cred.Password.Reveal()) {
		t.Errorf("the localhost account's hash is %q, want the password's", stored)
	}
	s, err := b.login(t.Context(), cred.Credential)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	defer s.Close()
	if err := s.CheckGrants(t.Context()); err != nil {
		t.Error(err)
	}
	users, err := p.ListManaged(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, u := range users {
		if u.Username == cred.Username {
			n++
		}
	}
	if n != 1 {
		t.Errorf("ListManaged reports the user %d times, want once for its two accounts", n)
	}
	if err := revoke(t.Context(), p, cred); err != nil {
		t.Fatal(err)
	}
	if n := accounts(t, b.adminDSN, cred.Username); n != 0 {
		t.Errorf("%d accounts left after Revoke", n)
	}
}

// TestRevocationStatementsRun: Create keeps the role's revocation
// statements in the lease's State, and marks nothing on the server. A
// Plugin opened after the user was issued, as after a restart or on another
// replica, runs them from the State, once, whether the role is gone from the
// config or changed, and the user is gone.
func TestRevocationStatementsRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	table := "`" + b.database + "`.revocations"
	exec(t, b.adminDSN, "CREATE TABLE "+table+" (username varchar(64), what varchar(16))")
	statements := []string{
		"INSERT INTO " + table + " VALUES ('{{name}}', 'first'); INSERT INTO " + table + " VALUES ('{{username}}', 'second')",
	}
	role := parseRole(t, `
grants: [{privileges: [SELECT], on: "`+b.database+`.*"}]
revocation_statements: [`+strconv.Quote(statements[0])+`]
`)
	changed := parseRole(t, `
grants: [{privileges: [SELECT], on: "`+b.database+`.*"}]
revocation_statements: ["INSERT INTO `+table+` VALUES ('{{name}}', 'changed')"]
`)
	// The issue failed after Create, so the store never took its State: the
	// reaper revokes with the role as the config holds it.
	t.Run("StateLost", func(t *testing.T) {
		cred := create(t, open(t, b.conn), role)
		if _, err := open(t, b.conn).Revoke(t.Context(), plugins.RevokeRequest{Username: cred.Username, Role: testRole, Spec: role}); err != nil {
			t.Fatal(err)
		}
		if got := revocations(t, b.adminDSN, table, cred.Username); got != "first,second" {
			t.Errorf("the revocation statements inserted %q, want first,second", got)
		}
		if accounts(t, b.adminDSN, cred.Username) != 0 {
			t.Error("the user exists after Revoke")
		}
	})
	for name, spec := range map[string]*mysql.Role{"RoleRemoved": nil, "RoleChanged": changed} {
		t.Run(name, func(t *testing.T) {
			cred := create(t, open(t, b.conn), role)
			var got struct {
				V                    int      `json:"v"`
				RevocationStatements []string `json:"revocation_statements"`
			}
			if err := json.Unmarshal(cred.state, &got); err != nil {
				t.Fatalf("the State is not JSON: %v", err)
			}
			if got.V != 1 || !slices.Equal(got.RevocationStatements, statements) {
				t.Errorf("State = %s, want version 1 and the role's revocation statements", cred.state)
			}
			if grants := showGrants(t, b.adminDSN, cred.Username, "%"); strings.Contains(grants, "credbroker_rv_") {
				t.Errorf("the new user holds a marker role: %s", grants)
			}

			_, err := open(t, b.conn).Revoke(t.Context(), plugins.RevokeRequest{
				Username: cred.Username, Role: testRole, Spec: spec, State: cred.state,
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := revocations(t, b.adminDSN, table, cred.Username); got != "first,second" {
				t.Errorf("the revocation statements inserted %q, want first,second", got)
			}
			if accounts(t, b.adminDSN, cred.Username) != 0 {
				t.Error("the user exists after Revoke")
			}
		})
	}
}

// revocations returns what the revocation statements of the tests inserted
// into table for username, in order, comma-separated.
func revocations(t *testing.T, dsn, table, username string) string {
	t.Helper()
	var got sql.NullString
	if err := queryRow(t, dsn, "SELECT GROUP_CONCAT(what ORDER BY what SEPARATOR ',') FROM "+table+" WHERE username = ?",
		[]any{username}, &got); err != nil {
		t.Fatal(err)
	}
	return got.String
}

// showGrants returns SHOW GRANTS for the account, one line each.
func showGrants(t *testing.T, dsn, username, host string) string {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(t.Context(), "SHOW GRANTS FOR '"+username+"'@'"+host+"'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestFailingRevocationStatementDropsAnyway: a broken revocation statement
// is reported, but never keeps the user alive.
func TestFailingRevocationStatementDropsAnyway(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	cred := create(t, p, parseRole(t, `
grants: [{privileges: [SELECT], on: "`+b.database+`.*"}]
revocation_statements: ["INSERT INTO cbtest_no_such_db.t VALUES ('{{name}}')"]
`))
	err := revoke(t.Context(), p, cred)
	if err == nil || !strings.Contains(err.Error(), "revocation_statements[0]") {
		t.Errorf("Revoke = %v, want the failing statement reported", err)
	}
	if accounts(t, b.adminDSN, cred.Username) != 0 {
		t.Error("the user exists after Revoke")
	}
	if err := revoke(t.Context(), p, cred); err != nil {
		t.Errorf("Revoke again = %v, want nil", err)
	}
}

// TestRevokeWithUnreadableState: a State this plugin cannot read (from a
// later release, or damaged) never keeps a user alive: the user is dropped,
// no statement runs, and the error says so once; a retry is success.
func TestRevokeWithUnreadableState(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	table := "`" + b.database + "`.revocations"
	exec(t, b.adminDSN, "CREATE TABLE "+table+" (username varchar(64), what varchar(16))")
	cred := create(t, p, parseRole(t, `
grants: [{privileges: [SELECT], on: "`+b.database+`.*"}]
revocation_statements: ["INSERT INTO `+table+` VALUES ('{{name}}', 'ran')"]
`))
	s := holderSession(t, b, cred.Credential)
	cred.state = []byte(`{"v":2,"revocation_statements":["INSERT INTO ` + table + ` VALUES ('{{name}}', 'v2')"]}`)
	err := revoke(t.Context(), p, cred)
	if err == nil || !strings.Contains(err.Error(), "version 2") || !strings.Contains(err.Error(), "dropped all the same") {
		t.Errorf("Revoke with a State of version 2 = %v, want an error saying so and that the user was dropped", err)
	}
	if accounts(t, b.adminDSN, cred.Username) != 0 {
		t.Error("the user exists after Revoke")
	}
	if err := s.Ping(t.Context()); err == nil {
		t.Error("the holder's session survived")
	}
	if got := revocations(t, b.adminDSN, table, cred.Username); got != "" {
		t.Errorf("statements ran from a State the plugin cannot read: %q", got)
	}
	if err := revoke(t.Context(), p, cred); err != nil {
		t.Errorf("Revoke again = %v, want nil", err)
	}
}

func TestRevokeRefusesForeignUser(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	name := "cbtest_foreign_" + strings.ToLower(plugins.NewPassword().Reveal()[:8])
	t.Cleanup(func() { exec(t, b.adminDSN, "DROP USER IF EXISTS '"+name+"'@'%'") })
	exec(t, b.adminDSN, "CREATE USER '"+name+"'@'%'")
	_, err := p.Revoke(t.Context(), plugins.RevokeRequest{Username: name, Role: testRole, State: mysql.EncodeState(&mysql.Role{})})
	if err == nil || !strings.Contains(err.Error(), "credbroker did not make it") {
		t.Errorf("Revoke of a user credbroker did not make = %v, want a refusal", err)
	}
	if accounts(t, b.adminDSN, name) != 1 {
		t.Error("Revoke dropped a user credbroker did not make")
	}
	if _, err := p.Revoke(t.Context(), plugins.RevokeRequest{Username: "cb_x'; DROP DATABASE mysql; --"}); err == nil {
		t.Error("Revoke accepted a name holding SQL")
	}
}

func TestRenew(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	cred := create(t, p, parseRole(t, `grants: [{privileges: [SELECT], on: "`+b.database+`.*"}]`))
	resp, err := p.Renew(t.Context(), plugins.RenewRequest{Username: cred.Username, Role: testRole, State: cred.state, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Errorf("Renew: %v", err)
	}
	if resp.State != nil {
		t.Errorf("Renew returned State %s, want nil (the lease's State stays)", resp.State)
	}
	_, err = p.Renew(t.Context(), plugins.RenewRequest{Username: plugins.NewUsername("gone", 32), ExpiresAt: time.Now().Add(time.Hour)})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Renew of a missing user = %v, want an error saying it does not exist", err)
	}
}

func TestCredential(t *testing.T) {
	t.Parallel()
	b := setup(t)
	role := parseRole(t, `grants: [{privileges: [SELECT], on: "`+b.database+`.*"}, {privileges: [SELECT], on: "`+b.other+`.items"}]`)
	t.Run("FromDSN", func(t *testing.T) {
		cred := create(t, open(t, b.conn), role)
		want := map[string]string{"host": "127.0.0.1", "port": "3306", "username": cred.Username, "database": b.database}
		if cfg, err := gomysql.ParseDSN(b.adminDSN); err == nil {
			want["host"], want["port"], _ = net.SplitHostPort(cfg.Addr)
		}
		for k, v := range want {
			if cred.Fields[k] != v {
				t.Errorf("Fields[%q] = %q, want %q", k, cred.Fields[k], v)
			}
		}
		pw := cred.Password.Reveal()
		wantURI := "mysql://" + cred.Username + ":" + pw + "@" + net.JoinHostPort(want["host"], want["port"]) + "/" + b.database
		if cred.URI.Reveal() != wantURI {
			t.Errorf("URI = %s, want %s", plugins.SanitizeString(cred.URI.Reveal()), plugins.SanitizeString(wantURI))
		}
		wantEnv := map[string]string{"MYSQL_HOST": want["host"], "MYSQL_TCP_PORT": want["port"], "MYSQL_USER": cred.Username,
			"MYSQL_PWD": pw, "MYSQL_DATABASE": b.database}
		for k, v := range wantEnv {
			got, ok := cred.Env[k]
			if !ok || got.Reveal() != v {
				t.Errorf("Env[%s] is not %s", k, plugins.SanitizeString(v, cred.Password))
			}
		}
		if len(cred.Env) != len(wantEnv) {
			t.Errorf("Env has %d variables, want %d", len(cred.Env), len(wantEnv))
		}
		if got, want := describe(t).Env, slices.Sorted(maps.Keys(cred.Env)); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
			t.Errorf("Describe().Env = %q, want the credential's variables %q", got, want)
		}
		// The environment alone is enough to log in, as the mysql client does.
		cfg := gomysql.NewConfig()
		cfg.User, cfg.Passwd = cred.Env["MYSQL_USER"].Reveal(), cred.Env["MYSQL_PWD"].Reveal()
		cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(cred.Env["MYSQL_HOST"].Reveal(), cred.Env["MYSQL_TCP_PORT"].Reveal())
		cfg.DBName = cred.Env["MYSQL_DATABASE"].Reveal()
		var user, db string
		if err := queryRow(t, cfg.FormatDSN(), "SELECT CURRENT_USER(), DATABASE()", nil, &user, &db); err != nil {
			t.Fatalf("login with Env: %v", plugins.Sanitize(err, cred.Password))
		}
		if user != cred.Username+"@%" || db != b.database {
			t.Errorf("logged in with Env as %s in %s, want %s@%% in %s", user, db, cred.Username, b.database)
		}
	})
	t.Run("Overrides", func(t *testing.T) {
		cred := create(t, open(t, connection(t, b.adminDSN, "host: db.example.com\nport: 3307")), role)
		u, err := url.Parse(cred.URI.Reveal())
		if err != nil {
			t.Fatal(err)
		}
		if u.Host != "db.example.com:3307" || cred.Fields["host"] != "db.example.com" || cred.Env["MYSQL_TCP_PORT"].Reveal() != "3307" {
			t.Errorf("credential points at %s (fields %v), want db.example.com:3307", u.Host, cred.Fields)
		}
	})
	t.Run("NoSingleDatabase", func(t *testing.T) {
		cred := create(t, open(t, b.conn), parseRole(t, `grants: [{privileges: [SHOW DATABASES], on: "*.*"}]`))
		if u, err := url.Parse(cred.URI.Reveal()); err != nil || u.Path != "/" || cred.Fields["database"] != "" {
			t.Errorf("a grant on *.* names database %q (path %q), want none", cred.Fields["database"], u.Path)
		}
	})
}

// adminUser creates an admin account with a password and the given GRANT
// statements, where {user} stands for the account; it is dropped when the
// test ends. adminUser returns its DSN.
func adminUser(t *testing.T, b bundle, password string, grants ...string) string {
	t.Helper()
	name := "cbtest_admin_" + strings.ToLower(plugins.NewPassword().Reveal()[:8])
	statements := []string{"CREATE USER '" + name + "'@'%' IDENTIFIED BY '" + password + "'"}
	for _, g := range grants {
		statements = append(statements, strings.Replace(g, "{user}", "'"+name+"'@'%'", 1))
	}
	t.Cleanup(func() { exec(t, b.adminDSN, "DROP USER IF EXISTS '"+name+"'@'%'") })
	exec(t, b.adminDSN, statements...)
	cfg, err := gomysql.ParseDSN(b.adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Passwd = name, password
	return cfg.FormatDSN()
}

func TestCheck(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := open(t, b.conn).Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	const password = "check-admin-pw-never-printed"
	weak := adminUser(t, b, password, "GRANT SELECT ON mysql.* TO {user}", "GRANT PROCESS ON *.* TO {user}")
	err := open(t, connection(t, weak, "")).Check(t.Context())
	if err == nil || !strings.Contains(err.Error(), "CREATE USER") || !strings.Contains(err.Error(), "CONNECTION ADMIN") {
		t.Errorf("Check as an admin without CREATE USER = %v, want an error naming what is missing", err)
	}
	if err != nil && strings.Contains(err.Error(), password) {
		t.Errorf("the error quotes the admin's password: %v", err)
	}
}

func TestCheckRole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	good := parseRole(t, `grants: [{privileges: [SELECT], on: "`+b.database+`.*"}, {privileges: [SELECT], on: "`+b.database+`.items"}, {privileges: [SHOW DATABASES], on: "*.*"}]`)
	if err := p.CheckRole(t.Context(), good); err != nil {
		t.Errorf("CheckRole of a good role: %v", err)
	}
	bad := parseRole(t, `grants: [{privileges: [SELECT], on: "cbtest_no_such_db.*"}, {privileges: [SELECT], on: "`+b.database+`.no_such_table"}]`)
	err := p.CheckRole(t.Context(), bad)
	if err == nil || !strings.Contains(err.Error(), "grants[0].on: database `cbtest_no_such_db` does not exist") ||
		!strings.Contains(err.Error(), "grants[1].on: table `"+b.database+"`.`no_such_table` does not exist") {
		t.Errorf("CheckRole of a role naming missing objects = %v, want both named", err)
	}
}

// TestCheckRoleAnonymousAccount adds an anonymous account for localhost,
// which would shadow issued '%' accounts for logins from the server's host.
// It runs alone (no t.Parallel), as the account changes how the server
// matches local logins.
func TestCheckRoleAnonymousAccount(t *testing.T) {
	b := setup(t)
	p := open(t, connection(t, b.adminDSN, "host: localhost"))
	role := parseRole(t, `grants: [{privileges: [SELECT], on: "`+b.database+`.*"}]`)
	if err := p.CheckRole(t.Context(), role); err != nil {
		t.Fatalf("CheckRole: %v", err)
	}
	t.Cleanup(func() { exec(t, b.adminDSN, "DROP USER IF EXISTS ''@'localhost'") })
	exec(t, b.adminDSN, "CREATE USER ''@'localhost'")
	err := p.CheckRole(t.Context(), role)
	if err == nil || !strings.Contains(err.Error(), "anonymous account ''@'localhost'") {
		t.Errorf("CheckRole with an anonymous localhost account = %v, want an error naming it", err)
	}
	// A role whose accounts are as specific as the anonymous one is fine.
	if err := p.CheckRole(t.Context(), parseRole(t, `{host: localhost, grants: [{privileges: [SELECT], on: "`+b.database+`.*"}]}`)); err != nil {
		t.Errorf("CheckRole of a localhost role: %v", err)
	}
}

func TestOpenUnavailable(t *testing.T) {
	t.Parallel()
	const password = "s3cret-admin-pw"
	conn := connection(t, "admin:"+password+"@tcp(127.0.0.1:1)/?timeout=5s", "")
	_, err := plugins.Open(t.Context(), mysql.New(), conn)
	if !errors.Is(err, plugins.ErrUnavailable) {
		t.Errorf("Open of a server that is not there = %v, want ErrUnavailable", err)
	}
	if err != nil && strings.Contains(fmt.Sprintf("%v %+v", err, err), password) {
		t.Errorf("the error quotes the DSN password: %v", err)
	}
}

func TestOpenWrongAdminPassword(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const password = "right-admin-pw"
	dsn := adminUser(t, b, password, "GRANT CREATE USER ON *.* TO {user}")
	wrong := strings.Replace(dsn, password, "wrong-admin-pw", 1)
	_, err := plugins.Open(t.Context(), mysql.New(), connection(t, wrong, ""))
	if !errors.Is(err, plugins.ErrUnavailable) || !isError(err, erAccessDenied) {
		t.Errorf("Open with a wrong admin password = %v, want ErrUnavailable and access denied", err)
	}
	if err != nil && strings.Contains(err.Error(), "wrong-admin-pw") {
		t.Errorf("the error quotes the DSN password: %v", err)
	}
}

func TestOpenMissingSecret(t *testing.T) {
	t.Parallel()
	conn, err := mysql.Driver{}.ParseConnection(decoder("dsn: env:CREDBROKER_TEST_NO_SUCH_VARIABLE"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = plugins.Open(t.Context(), mysql.New(), conn)
	if err == nil || !strings.Contains(err.Error(), "CREDBROKER_TEST_NO_SUCH_VARIABLE") {
		t.Errorf("Open with an unset DSN variable = %v, want an error naming it", err)
	}
}

func TestOpenMalformedDSN(t *testing.T) {
	t.Parallel()
	for name, dsn := range map[string]string{
		"Unterminated": "admin:pw-in-bad-dsn@tcp(127.0.0.1:3306/",
		"NoSlash":      "admin:pw-in-bad-dsn@tcp(127.0.0.1:3306)",
		"BadParam":     "admin:pw-in-bad-dsn@tcp(127.0.0.1:3306)/?parseTime=pw-in-bad-dsn",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := plugins.Open(t.Context(), mysql.New(), connection(t, dsn, ""))
			if err == nil {
				t.Fatal("Open with a malformed DSN succeeded")
			}
			if strings.Contains(err.Error(), "pw-in-bad") {
				t.Errorf("the error quotes the DSN password: %v", err)
			}
		})
	}
}

// TestUnixSocketAdmin connects the admin over the server's Unix socket: the
// credential then needs connection.host, and works with it.
func TestUnixSocketAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var socket string
	if err := queryRow(t, b.adminDSN, "SELECT @@socket", nil, &socket); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(socket); err != nil {
		t.Skipf("the server's socket %s is not reachable here: %v", socket, err)
	}
	cfg, err := gomysql.ParseDSN(b.adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(cfg.Addr)
	cfg.Net, cfg.Addr = "unix", socket
	if err := queryRow(t, cfg.FormatDSN(), "SELECT 1", nil, new(int)); err != nil {
		t.Skipf("the admin cannot log in over the socket: %v", err)
	}
	_, err = plugins.Open(t.Context(), mysql.New(), connection(t, cfg.FormatDSN(), ""))
	if err == nil || !strings.Contains(err.Error(), "connection.host") {
		t.Errorf("Open over a socket without host = %v, want an error asking for connection.host", err)
	}
	p := open(t, connection(t, cfg.FormatDSN(), "host: "+host+"\nport: "+port))
	cred := create(t, p, parseRole(t, `grants: [{privileges: [SELECT], on: "`+b.database+`.*"}]`))
	s, err := b.login(t.Context(), cred.Credential)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	defer s.Close()
	if err := s.CheckGrants(t.Context()); err != nil {
		t.Error(err)
	}
}

// TestErrorsHideDSNPassword provokes errors through an admin DSN with a
// password and checks none quotes it.
func TestErrorsHideDSNPassword(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const password = "dsn-pw-never-printed"
	p := open(t, connection(t, adminUser(t, b, password, "GRANT ALL PRIVILEGES ON *.* TO {user} WITH GRANT OPTION"), ""))
	_, err := p.Renew(t.Context(), plugins.RenewRequest{Username: plugins.NewUsername("x", 32), ExpiresAt: time.Now().Add(time.Hour)})
	errs := []error{err}
	_, err = p.Revoke(t.Context(), plugins.RevokeRequest{Username: "not-managed"})
	errs = append(errs, err)
	_, err = p.Create(t.Context(), plugins.CreateRequest{
		Username: plugins.NewUsername("x", 32), Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour),
		Role: testRole, Spec: parseRole(t, `grants: [{privileges: [SELECT], on: "`+b.database+`.no_such_table"}]`),
	})
	errs = append(errs, err)
	_, err = p.Create(t.Context(), plugins.CreateRequest{
		Username: plugins.NewUsername("x", 32), Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour),
		Role: testRole, Spec: parseRole(t, `creation_statements: ["CREATE USER '{{name}}' IDENTIFIED BY '{{password}}' NONSENSE '`+password+`'"]`),
	})
	errs = append(errs, err)
	// A revocation statement whose server error quotes the password: only
	// the decorator, told the plugin's secrets, can redact it.
	cred := create(t, p, parseRole(t, `
grants: [{privileges: [SELECT], on: "`+b.database+`.*"}]
revocation_statements: ["SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no `+password+`'"]
`))
	errs = append(errs, revoke(t.Context(), p, cred))
	for i, err := range errs {
		if err == nil {
			t.Errorf("error %d: expected an error", i)
			continue
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("error %d quotes the DSN password: %v", i, err)
		}
	}
}

// definerObjects counts the objects in database whose DEFINER is an account
// of username, as the admin of dsn sees them.
func definerObjects(t *testing.T, dsn, database, username string) int {
	t.Helper()
	var n int
	err := queryRow(t, dsn, `SELECT
		(SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND DEFINER LIKE CONCAT(?, '@%')) +
		(SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? AND DEFINER LIKE CONCAT(?, '@%')) +
		(SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? AND DEFINER LIKE CONCAT(?, '@%')) +
		(SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? AND DEFINER LIKE CONCAT(?, '@%'))`,
		[]any{database, username, database, username, database, username, database, username}, &n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// holderSession logs in as cred and runs statements, as the holder would.
func holderSession(t *testing.T, b bundle, cred plugins.Credential, statements ...string) plugintest.Session {
	t.Helper()
	s, err := b.login(t.Context(), cred)
	if err != nil {
		t.Fatalf("login as the holder: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	for _, stmt := range statements {
		if _, err := s.(*session).conn.ExecContext(t.Context(), stmt); err != nil {
			t.Fatalf("as the holder: %s: %v", stmt, err)
		}
	}
	return s
}

// TestRevokeDropsDefinerObjects plays a holder with CREATE ROUTINE, CREATE
// VIEW, TRIGGER and EVENT that leaves a SQL SECURITY DEFINER procedure, a
// view, a trigger and an event, all running with its rights, hoping they
// outlive its lease. After Revoke they are gone, and so is the login.
func TestRevokeDropsDefinerObjects(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	db := "`" + b.database + "`"
	cred := create(t, p, parseRole(t, `grants: [{privileges: [SELECT, INSERT, CREATE ROUTINE, CREATE VIEW, TRIGGER, EVENT], on: "`+b.database+`.*"}]`))
	s := holderSession(t, b, cred.Credential,
		"CREATE PROCEDURE "+db+".backdoor() SQL SECURITY DEFINER INSERT INTO "+db+".items VALUES (99, 'pwned')",
		"CREATE SQL SECURITY DEFINER VIEW "+db+".peek AS SELECT * FROM "+db+".items",
		"CREATE TRIGGER "+db+".spy BEFORE INSERT ON "+db+".items FOR EACH ROW SET NEW.name = NEW.name",
		"CREATE EVENT "+db+".tick ON SCHEDULE EVERY 1 DAY DO DELETE FROM "+db+".items WHERE id = 99",
	)
	if n := definerObjects(t, b.adminDSN, b.database, cred.Username); n != 4 {
		t.Fatalf("the holder made %d objects, want 4", n)
	}
	if err := revoke(t.Context(), p, cred); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if n := definerObjects(t, b.adminDSN, b.database, cred.Username); n != 0 {
		t.Errorf("%d objects whose definer is the revoked user are left", n)
	}
	if accounts(t, b.adminDSN, cred.Username) != 0 {
		t.Error("the user exists after Revoke")
	}
	if err := s.Ping(t.Context()); err == nil {
		t.Error("the holder's session survived Revoke")
	}
	if _, err := b.login(t.Context(), cred.Credential); err == nil {
		t.Error("the holder logged in after Revoke")
	}
}

// TestRevokeThatCannotFinishLocksFirst revokes through an admin that cannot
// drop the view a holder made: Revoke fails, but the account is locked and
// the holder's session is gone, so the credential is dead while Revoke is
// retried. Once the admin may drop the view, the retry finishes the job.
func TestRevokeThatCannotFinishLocksFirst(t *testing.T) {
	t.Parallel()
	b := setup(t)
	db := "`" + b.database + "`"
	weak := adminUser(t, b, "weak-admin-pw",
		"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO {user}",
		"GRANT SELECT ON mysql.* TO {user}",
		"GRANT SELECT, CREATE VIEW, SHOW VIEW ON "+db+".* TO {user} WITH GRANT OPTION")
	p := open(t, connection(t, weak, ""))
	role := parseRole(t, `grants: [{privileges: [SELECT, CREATE VIEW], on: "`+b.database+`.*"}]`)
	// The start check names what is missing.
	err := p.CheckRole(t.Context(), role)
	if err == nil || !strings.Contains(err.Error(), "grants[0]: CREATE VIEW") || !strings.Contains(err.Error(), "lacks DROP on `"+b.database+"`") {
		t.Errorf("CheckRole with an admin that cannot drop views = %v, want the missing DROP named", err)
	}
	statements := parseRole(t, `
creation_statements:
  - CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT, CREATE ROUTINE ON `+escaped(b.database)+`.* TO '{{name}}'@'%'
`)
	err = p.CheckRole(t.Context(), statements)
	if err == nil || !strings.Contains(err.Error(), "creation_statements[0]#2: CREATE ROUTINE") || !strings.Contains(err.Error(), "lacks ALTER ROUTINE on `"+b.database+"`") {
		t.Errorf("CheckRole of creation statements granting CREATE ROUTINE, with an admin that cannot drop routines = %v, want the missing ALTER ROUTINE named", err)
	}
	cred := create(t, p, role)
	s := holderSession(t, b, cred.Credential, "CREATE SQL SECURITY DEFINER VIEW "+db+".peek AS SELECT * FROM "+db+".items")

	err = revoke(t.Context(), p, cred)
	if err == nil || !strings.Contains(err.Error(), "drop VIEW `"+b.database+"`.`peek`") {
		t.Fatalf("Revoke through an admin that cannot drop the view = %v, want an error naming it", err)
	}
	if accounts(t, b.adminDSN, cred.Username) != 1 {
		t.Fatal("the account is gone although its view could not be dropped (it would be orphaned)")
	}
	if err := s.Ping(t.Context()); err == nil {
		t.Error("the holder's session survived the failed Revoke")
	}
	_, err = b.login(t.Context(), cred.Credential)
	if err == nil {
		t.Fatal("the holder logged in after the failed Revoke: the account was not locked")
	}
	if !isError(err, 4151, 3118) { // ER_ACCOUNT_HAS_BEEN_LOCKED: MariaDB, MySQL
		t.Errorf("login after the failed Revoke = %v, want the account is locked", err)
	}

	exec(t, b.adminDSN, "GRANT DROP ON "+db+".* TO '"+strings.SplitN(strings.TrimPrefix(weak, ""), ":", 2)[0]+"'@'%'")
	if err := p.CheckRole(t.Context(), role); err != nil {
		t.Errorf("CheckRole once the admin may drop views: %v", err)
	}
	if err := revoke(t.Context(), p, cred); err != nil {
		t.Fatalf("Revoke retried once the admin may drop the view: %v", err)
	}
	if n := definerObjects(t, b.adminDSN, b.database, cred.Username); n != 0 || accounts(t, b.adminDSN, cred.Username) != 0 {
		t.Errorf("after the retried Revoke: %d objects and %d accounts left, want none", n, accounts(t, b.adminDSN, cred.Username))
	}
}

// TestFailingRevocationStatementStillLocksOut: a revocation statement that
// errors does not stop the revoke; the login is locked out before it runs
// and the user dropped after it.
func TestFailingRevocationStatementStillLocksOut(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	cred := create(t, p, parseRole(t, `
grants: [{privileges: [SELECT], on: "`+b.database+`.*"}]
revocation_statements: ["SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'revocation hook failed'"]
`))
	s := holderSession(t, b, cred.Credential)
	err := revoke(t.Context(), p, cred)
	if err == nil || !strings.Contains(err.Error(), "revocation hook failed") {
		t.Errorf("Revoke = %v, want the failing statement reported", err)
	}
	if err := s.Ping(t.Context()); err == nil {
		t.Error("the holder's session survived")
	}
	if _, err := b.login(t.Context(), cred.Credential); err == nil {
		t.Error("the holder logged in after Revoke")
	}
	if accounts(t, b.adminDSN, cred.Username) != 0 {
		t.Error("the user exists after Revoke")
	}
}

// TestWarnings: an admin with far more than it needs is warned about; a
// least-privileged one is not.
func TestWarnings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	root := open(t, b.conn).(plugins.Warner).Warnings(t.Context())
	if !strings.Contains(strings.Join(root, "\n"), "SUPER") {
		t.Errorf("Warnings with an admin holding ALL PRIVILEGES = %q, want one naming SUPER", root)
	}
	lean := adminUser(t, b, "lean-admin-pw",
		"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO {user}",
		"GRANT SELECT ON mysql.* TO {user}",
		"GRANT SELECT ON `"+b.database+"`.* TO {user} WITH GRANT OPTION")
	if w := open(t, connection(t, lean, "")).(plugins.Warner).Warnings(t.Context()); len(w) != 0 {
		t.Errorf("Warnings with a least-privileged admin on loopback = %q, want none", w)
	}
	if err := open(t, connection(t, lean, "")).Check(t.Context()); err != nil {
		t.Errorf("Check with a least-privileged admin: %v", err)
	}
}

// TestRevokeWithoutAccountLockScrambles: where the server cannot lock an
// account, a revoke that cannot finish still locks the holder out, by a
// password nobody holds.
func TestRevokeWithoutAccountLockScrambles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	db := "`" + b.database + "`"
	weak := adminUser(t, b, "weak-admin-pw",
		"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO {user}",
		"GRANT SELECT ON mysql.* TO {user}",
		"GRANT SELECT, CREATE VIEW, SHOW VIEW ON "+db+".* TO {user} WITH GRANT OPTION")
	p := openWith(t, mysql.WithoutAccountLock(), connection(t, weak, ""))
	cred := create(t, p, parseRole(t, `grants: [{privileges: [SELECT, CREATE VIEW], on: "`+b.database+`.*"}]`))
	holderSession(t, b, cred.Credential, "CREATE SQL SECURITY DEFINER VIEW "+db+".peek AS SELECT * FROM "+db+".items")

	if err := revoke(t.Context(), p, cred); err == nil {
		t.Fatal("Revoke through an admin that cannot drop the view succeeded; the test needs it to fail")
	}
	if accounts(t, b.adminDSN, cred.Username) != 1 {
		t.Fatal("the account is gone although its view could not be dropped")
	}
	_, err := b.login(t.Context(), cred.Credential)
	if !isError(err, 1045) { // ER_ACCESS_DENIED_ERROR
		t.Errorf("login after the failed Revoke without ACCOUNT LOCK = %v, want access denied", err)
	}
}
