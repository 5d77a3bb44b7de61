package e2e_test

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/credbroker/credbroker/test/harness"
)

// mysqlConfig is a config with one MySQL backend (env-referenced DSN, never
// resolved by config check) and the given roles section.
func mysqlConfig(iss *harness.Issuer, mysqlRole string) string {
	return `listen: 127.0.0.1:8420
store: {dsn: env:CB_UNSET_STORE_DSN}
issuers:
` + iss.YAML() + `backends:
  - name: orders-mysql
    plugin: mysql
    environment: test
    owner: team-test
    connection: {dsn: env:CB_UNSET_MYSQL_DSN}
roles:
  - name: app
    backend: orders-mysql
    default_ttl: 10m
    max_ttl: 1h
    mysql:
` + mysqlRole + singlePolicy("app")
}

// TestAttackMySQLGrantsReachingTheServer is the config author's mistake a
// holder would exploit: a role whose grants reach the server itself. With
// INSERT, UPDATE on mysql.* a holder rewrote mysql.global_priv and left
// itself a permanent superuser the sweep cannot see; ALL on *.* is the same;
// SELECT on *.* reads every account's password hash; a GRANT in
// creation_statements or a second account made there is no different.
// `credbroker config check` refuses each, naming the path, the privilege,
// the object and why, and what is allowed still passes.
func TestAttackMySQLGrantsReachingTheServer(t *testing.T) {
	t.Parallel()
	iss := harness.NewIssuer(t, "test")
	dir := t.TempDir()
	tests := map[string]struct{ role, want string }{
		"InsertOnMySQL": {
			`      grants: [{privileges: [INSERT, UPDATE], on: "mysql.*"}]`,
			`roles[0].mysql: grants[0].privileges[0]: INSERT on mysql.* is refused: mysql is a system schema: it holds the accounts`,
		},
		"AllOnEverything": {
			`      grants: [{privileges: [ALL], on: "*.*"}]`,
			`roles[0].mysql: grants[0].privileges[0]: ALL on *.* is refused: "*.*" includes the mysql system schema`,
		},
		"SelectOnEverything": {
			`      grants: [{privileges: [SELECT], on: "*.*"}]`,
			`SELECT on *.* is refused: "*.*" includes the mysql system schema, so it would let a holder read every account's password hash`,
		},
		"ReplicationSlave": {
			`      grants: [{privileges: [REPLICATION SLAVE], on: "*.*"}]`,
			`REPLICATION SLAVE on *.* is refused: it reads the binary log`,
		},
		"StatementGrantOnMySQL": {
			`      creation_statements: ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT INSERT, UPDATE ON mysql.global_priv TO '{{name}}'@'%'"]`,
			`roles[0].mysql: creation_statements[0]#2: INSERT on mysql.global_priv is refused`,
		},
		"StatementBackdoorAccount": {
			`      creation_statements: ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'", "CREATE USER 'backdoor'@'%' IDENTIFIED BY 'x'"]`,
			`roles[0].mysql: creation_statements[1]: CREATE USER backdoor is refused`,
		},
		"StatementGrantOption": {
			`      creation_statements: ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON orders.* TO '{{name}}'@'%' WITH GRANT OPTION"]`,
			`WITH GRANT OPTION is refused`,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, name+".yaml")
			if err := os.WriteFile(path, []byte(mysqlConfig(iss, tt.role+"\n")), 0o600); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := harness.RunCLI(t, nil, "config", "check", path)
			if out := stdout + stderr; code != 1 || !strings.Contains(out, tt.want) {
				t.Errorf("config check: exit %d, want 1 and %q:\n%s", code, tt.want, out)
			}
		})
	}
	t.Run("Allowed", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(dir, "allowed.yaml")
		role := `      grants: [{privileges: [SELECT, INSERT, CREATE ROUTINE], on: "orders.*"}, {privileges: [SHOW DATABASES], on: "*.*"}]` + "\n"
		if err := os.WriteFile(path, []byte(mysqlConfig(iss, role)), 0o600); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := harness.RunCLI(t, nil, "config", "check", path)
		if code != 0 || !strings.Contains(stderr, `roles[0].mysql: grants[1].on: "*.*"`) {
			t.Errorf("config check of application grants: exit %d, want 0 and a warning about *.*:\n%s%s", code, stdout, stderr)
		}
	})
}

// TestAttackMySQLDefinerObjects plays a holder with CREATE ROUTINE and
// CREATE VIEW that leaves a SQL SECURITY DEFINER procedure and a view
// behind, which would run with its rights after its lease (and, on MySQL
// 8.0.22+, keep DROP USER from ever succeeding). After the revoke both are
// gone, the held session is closed and the login fails.
func TestAttackMySQLDefinerObjects(t *testing.T) {
	t.Parallel()
	my := harness.NewMySQL(t)
	iss := harness.NewIssuer(t, "test")
	store := harness.NewStore(t)
	my.DropUsersAtEnd(t, store.IssuedUsernames(t, mysqlBackend))
	b := harness.StartBroker(t, harness.ServicesConfig(iss, my.BackendYAML(mysqlBackend), `roles:
  - name: builder
    backend: `+mysqlBackend+`
    default_ttl: 10m
    max_ttl: 1h
    mysql:
      grants: [{privileges: [SELECT, INSERT, CREATE ROUTINE, CREATE VIEW], on: "`+my.Database+`.*"}]
`+singlePolicy("builder")), append(store.StoreEnv(), my.Env()...)...)
	token := iss.Token(t, appSubject, nil, time.Hour)
	ctx := t.Context()

	// The broker's admin here is root, which holds far more than it needs.
	if !strings.Contains(b.Logs(), "backend warning") || !strings.Contains(b.Logs(), "SUPER") {
		t.Errorf("the broker did not warn at start that the MySQL admin holds SUPER:\n%s", b.Logs())
	}

	cred := issue(t, b, token, map[string]any{"role": "builder"})
	b.Track(cred.Password, cred.URI)
	u, err := url.Parse(cred.URI)
	if err != nil {
		t.Fatal("the URI does not parse")
	}
	cfg := gomysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = cred.Username, cred.Password, "tcp", u.Host, my.Database
	cfg.Timeout = 5 * time.Second
	cfg.Logger = &gomysql.NopLogger{} // the revoke kills the held session
	connector, err := gomysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("log in as the holder: %v", redact(err.Error(), cred.Password))
	}
	defer conn.Close()
	for _, stmt := range []string{
		"CREATE PROCEDURE backdoor() SQL SECURITY DEFINER INSERT INTO items VALUES (99, 'pwned')",
		"CREATE SQL SECURITY DEFINER VIEW peek AS SELECT * FROM items",
	} {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("as the holder: %s: %v", stmt, err)
		}
	}
	objects := func() int {
		var n int
		admin, err := sql.Open("mysql", my.DSN)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		qctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := admin.QueryRowContext(qctx, `SELECT
			(SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND DEFINER LIKE CONCAT(?, '@%')) +
			(SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? AND DEFINER LIKE CONCAT(?, '@%'))`,
			my.Database, cred.Username, my.Database, cred.Username).Scan(&n); err != nil {
			t.Fatalf("count the holder's objects: %v", err)
		}
		return n
	}
	if n := objects(); n != 2 {
		t.Fatalf("the holder made %d objects, want 2", n)
	}

	revoke(t, b, token, cred.LeaseID)

	if n := objects(); n != 0 {
		t.Errorf("%d objects whose definer is the revoked holder survive the revoke", n)
	}
	eventually(t, 15*time.Second, "the holder's session still answers after the revoke", func() bool {
		return conn.PingContext(ctx) != nil
	})
	if err := db.PingContext(ctx); err == nil {
		t.Error("the holder logged in after the revoke")
	}
	if hosts := my.UserHosts(t, cred.Username); len(hosts) != 0 {
		t.Errorf("accounts of %s left after the revoke: %v", cred.Username, hosts)
	}
	b.AssertNoSecrets(t)
}

// TestAttackMySQLRevokeThatCannotFinish keeps the revoke from dropping the
// holder's view (another session holds a metadata lock on it, and the
// admin's lock_wait_timeout is 2s), so the revoke fails halfway. The
// holder's login must be dead all the same: the account was locked and its
// session killed before the step that failed. Once the lock is gone, the
// broker's retry finishes: view and account are gone.
func TestAttackMySQLRevokeThatCannotFinish(t *testing.T) {
	t.Parallel()
	my := harness.NewMySQL(t)
	iss := harness.NewIssuer(t, "test")
	store := harness.NewStore(t)
	my.DropUsersAtEnd(t, store.IssuedUsernames(t, mysqlBackend))
	adminCfg, err := gomysql.ParseDSN(my.DSN)
	if err != nil {
		t.Fatal(err)
	}
	if adminCfg.Params == nil {
		adminCfg.Params = map[string]string{}
	}
	adminCfg.Params["lock_wait_timeout"] = "2"
	dsnEnv, _, _ := strings.Cut(my.Env()[0], "=")
	b := harness.StartBroker(t, harness.ServicesConfig(iss, my.BackendYAML(mysqlBackend), `reaper: {interval: 1s}
roles:
  - name: builder
    backend: `+mysqlBackend+`
    default_ttl: 10m
    max_ttl: 1h
    mysql:
      grants: [{privileges: [SELECT, CREATE VIEW], on: "`+my.Database+`.*"}]
`+singlePolicy("builder")), append(store.StoreEnv(), dsnEnv+"="+adminCfg.FormatDSN())...)
	token := iss.Token(t, appSubject, nil, time.Hour)
	ctx := t.Context()

	cred := issue(t, b, token, map[string]any{"role": "builder"})
	b.Track(cred.Password, cred.URI)
	u, err := url.Parse(cred.URI)
	if err != nil {
		t.Fatal("the URI does not parse")
	}
	holderCfg := gomysql.NewConfig()
	holderCfg.User, holderCfg.Passwd, holderCfg.Net, holderCfg.Addr, holderCfg.DBName = cred.Username, cred.Password, "tcp", u.Host, my.Database
	holderCfg.Timeout = 5 * time.Second
	holderCfg.Logger = &gomysql.NopLogger{}
	connector, err := gomysql.NewConnector(holderCfg)
	if err != nil {
		t.Fatal(err)
	}
	holder := sql.OpenDB(connector)
	defer holder.Close()
	conn, err := holder.Conn(ctx)
	if err != nil {
		t.Fatalf("log in as the holder: %v", redact(err.Error(), cred.Password))
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "CREATE SQL SECURITY DEFINER VIEW peek AS SELECT * FROM items"); err != nil {
		t.Fatalf("as the holder: create a view: %v", err)
	}

	// Another session reads the view in an open transaction: its metadata
	// lock keeps DROP VIEW waiting, and the revoke fails.
	admin, err := sql.Open("mysql", my.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	blocker, err := admin.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	for _, stmt := range []string{"BEGIN", "SELECT COUNT(*) FROM `" + my.Database + "`.peek"} {
		if _, err := blocker.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}

	status, resp := b.Call(t, token, "RevokeLease", map[string]any{"leaseId": cred.LeaseID})
	t.Logf("RevokeLease while the view cannot be dropped: HTTP %d %v", status, resp["message"])
	if hosts := my.UserHosts(t, cred.Username); len(hosts) == 0 {
		t.Fatal("the account was dropped although its view could not be: the view is orphaned")
	}
	eventually(t, 15*time.Second, "the holder's session still answers after the failed revoke", func() bool {
		return conn.PingContext(ctx) != nil
	})
	err = holder.PingContext(ctx)
	var myErr *gomysql.MySQLError
	if err == nil {
		t.Fatal("the holder logged in after the revoke failed halfway: the account was not locked first")
	} else if !errors.As(err, &myErr) || myErr.Number != 4151 && myErr.Number != 3118 { // ER_ACCOUNT_HAS_BEEN_LOCKED (MariaDB, MySQL)
		t.Errorf("login after the failed revoke = %v, want the account is locked", err)
	}

	eventually(t, 15*time.Second, "the broker logged no failed revoke naming the view", func() bool {
		return strings.Contains(b.Logs(), "revoke failed") && strings.Contains(b.Logs(), "drop VIEW `"+my.Database+"`.`peek`")
	})
	if _, err := blocker.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the broker did not finish the revoke once the view could be dropped", func() bool {
		return len(my.UserHosts(t, cred.Username)) == 0
	})
	var views int
	if err := admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?", my.Database).Scan(&views); err != nil {
		t.Fatal(err)
	}
	if views != 0 {
		t.Errorf("%d views of the revoked holder are left", views)
	}
	b.AssertNoSecrets(t)
}
