package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/credbroker/credbroker/plugins"
	mysqlplugin "github.com/credbroker/credbroker/plugins/mysql"
	"github.com/credbroker/credbroker/plugins/plugintest"
)

// The MySQL/MariaDB raw baseline runs, over database/sql with
// go-sql-driver/mysql and a pool as large as the broker's (max_conns 8), the
// statements of plugins/mysql Plugin.Create (grants) and Plugin.Revoke:
//
//	issue:  CREATE USER `<name>`@`%` IDENTIFIED BY PASSWORD '<native hash>'
//	        (MySQL: IDENTIFIED WITH mysql_native_password AS '<hash>')
//	        GRANT SELECT ON `<db>`.* TO …; GRANT SELECT, INSERT, UPDATE ON `<db>`.`items` TO …
//	revoke: SELECT Host FROM mysql.user WHERE User = ?; SHOW GRANTS FOR each account;
//	        SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? (KILL CONNECTION each);
//	        DROP USER IF EXISTS …; the PROCESSLIST look-up again
type rawMySQL struct {
	db      *sql.DB
	mariaDB bool
	prefix  string
	grants  []string // "GRANT … ON … TO ", the account follows
}

// Keep in step with plugins/mysql errors.go.
const (
	erNoSuchThread     = 1094 // ER_NO_SUCH_THREAD: KILL of a thread that ended meanwhile
	erNonexistingGrant = 1141 // ER_NONEXISTING_GRANT: SHOW GRANTS of an account dropped meanwhile
)

// mysqlIdent quotes a name in backticks, as plugins/mysql quoteIdent.
func mysqlIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func mysqlAccount(name, host string) string { return mysqlIdent(name) + "@" + mysqlIdent(host) }

// openMySQL opens a pool like the plugin's (plugins/mysql open): the DSN's
// config with a 10s dial timeout and no driver logging, conns connections.
func openMySQL(ctx context.Context, dsn string, conns int) (*sql.DB, bool, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, false, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	cfg.Logger = &mysql.NopLogger{}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, false, err
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		_ = db.Close()
		return nil, false, err
	}
	return db, strings.Contains(strings.ToLower(version), "mariadb"), nil
}

func (r *rawMySQL) issue(ctx context.Context) (leaseRef, error) {
	username := r.prefix + randText(10)
	hash := mysqlplugin.NativePasswordHash(plugins.NewPassword().Reveal())
	acct := mysqlAccount(username, "%")
	clause := "IDENTIFIED WITH mysql_native_password AS '" + hash + "'"
	if r.mariaDB {
		clause = "IDENTIFIED BY PASSWORD '" + hash + "'"
	}
	if _, err := r.db.ExecContext(ctx, "CREATE USER "+acct+" "+clause); err != nil {
		return leaseRef{}, fmt.Errorf("raw issue %s: create the account: %w", username, err)
	}
	for _, g := range r.grants {
		if _, err := r.db.ExecContext(ctx, g+acct); err != nil {
			return leaseRef{}, fmt.Errorf("raw issue %s: %w", username, err)
		}
	}
	return leaseRef{username: username}, nil
}

func (r *rawMySQL) hosts(ctx context.Context, username string) ([]string, error) {
	rows, err := r.db.QueryContext(ctx, "SELECT Host FROM mysql.user WHERE User = ? ORDER BY Host", username)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var hosts []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	return hosts, rows.Err()
}

func (r *rawMySQL) showGrants(ctx context.Context, username, host string) error {
	rows, err := r.db.QueryContext(ctx, "SHOW GRANTS FOR "+mysqlAccount(username, host))
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) && myErr.Number == erNonexistingGrant {
		return nil
	}
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (r *rawMySQL) endSessions(ctx context.Context, username string) error {
	rows, err := r.db.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()", username)
	if err != nil {
		return err
	}
	var ids []uint64
	for rows.Next() {
		var id uint64
		if err := rows.Scan(&id); err != nil {
			_ = rows.Close()
			return err
		}
		ids = append(ids, id)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	for _, id := range ids {
		_, err := r.db.ExecContext(ctx, "KILL CONNECTION "+strconv.FormatUint(id, 10))
		var myErr *mysql.MySQLError
		if err != nil && !(errors.As(err, &myErr) && myErr.Number == erNoSuchThread) {
			return err
		}
	}
	return nil
}

func (r *rawMySQL) revoke(ctx context.Context, l leaseRef) error {
	hosts, err := r.hosts(ctx, l.username)
	if err != nil {
		return err
	}
	if len(hosts) == 0 {
		return r.endSessions(ctx, l.username)
	}
	for _, h := range hosts {
		if err := r.showGrants(ctx, l.username, h); err != nil {
			return err
		}
	}
	if err := r.endSessions(ctx, l.username); err != nil {
		return err
	}
	accts := make([]string, len(hosts))
	for i, h := range hosts {
		accts[i] = mysqlAccount(l.username, h)
	}
	if _, err := r.db.ExecContext(ctx, "DROP USER IF EXISTS "+strings.Join(accts, ", ")); err != nil {
		return err
	}
	return r.endSessions(ctx, l.username)
}

func (r *rawMySQL) side() sideOps {
	return sideOps{issue: r.issue, revoke: r.revoke}
}

// mysqlUsers returns this run's accounts on the server (either side's), as
// user@host pairs.
func mysqlUsers(ctx context.Context, db *sql.DB) ([][2]string, error) {
	like := strings.NewReplacer("!", "!!", "_", "!_", "%", "!%").Replace(userPrefix) + "%"
	rows, err := db.QueryContext(ctx, "SELECT User, Host FROM mysql.user WHERE User LIKE ? ESCAPE '!' ORDER BY User, Host", like)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][2]string
	for rows.Next() {
		var u, h string
		if err := rows.Scan(&u, &h); err != nil {
			return nil, err
		}
		out = append(out, [2]string{u, h})
	}
	return out, rows.Err()
}

func benchMySQL(b *testing.B, rep *report) {
	const scn = "mysql"
	defer noteEnd(b, rep, scn)
	dsn := plugintest.DefaultMySQLDSN
	if v := os.Getenv(plugintest.MySQLDSNEnv); v != "" {
		dsn = v
	}
	needService(b, rep, scn, dsn, func(ctx context.Context) error {
		db, _, err := openMySQL(ctx, dsn, 1)
		if err == nil {
			_ = db.Close()
		}
		return err
	})
	var secrets []string
	if cfg, err := mysql.ParseDSN(dsn); err == nil && cfg.Passwd != "" {
		secrets = append(secrets, cfg.Passwd)
	}
	sanitize := func(err error) string {
		msg := err.Error()
		for _, s := range secrets {
			msg = strings.ReplaceAll(msg, s, "[REDACTED]")
		}
		return plugins.SanitizeString(msg)
	}

	// Registered first, so it runs last, after the broker has stopped and
	// the database is dropped: every account of this run that is left.
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
		defer cancel()
		db, _, err := openMySQL(ctx, dsn, 1)
		if err != nil {
			b.Errorf("mysql cleanup: connect: %s", sanitize(err))
			return
		}
		defer db.Close()
		left, err := mysqlUsers(ctx, db)
		if err != nil {
			b.Errorf("mysql cleanup: list accounts: %s", sanitize(err))
			return
		}
		for _, a := range left {
			if _, err := db.ExecContext(ctx, "DROP USER IF EXISTS "+mysqlAccount(a[0], a[1])); err != nil {
				b.Errorf("mysql cleanup: drop %s: %s", mysqlAccount(a[0], a[1]), sanitize(err))
			}
		}
		if len(left) > 0 {
			b.Logf("mysql cleanup: dropped %d accounts this run left behind", len(left))
		}
	})
	database := plugintest.NewMySQLDatabase(b, dsn) // dropped when b ends

	ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
	defer cancel()
	db, mariaDB, err := openMySQL(ctx, dsn, conns)
	if err != nil {
		b.Fatalf("mysql: connect: %s", sanitize(err))
	}
	b.Cleanup(func() { _ = db.Close() })
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+mysqlIdent(database)+".items (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL)"); err != nil {
		b.Fatalf("mysql: create table: %s", sanitize(err))
	}
	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		b.Fatalf("mysql: %s", sanitize(err))
	}

	// The plugin renders db.* with the LIKE wildcards of the name escaped.
	escaped := strings.NewReplacer(`\`, `\\`, `_`, `\_`, `%`, `\%`).Replace(database)
	grants := []string{
		"GRANT SELECT ON " + mysqlIdent(escaped) + ".* TO ",
		"GRANT SELECT, INSERT, UPDATE ON " + mysqlIdent(database) + "." + mysqlIdent("items") + " TO ",
	}
	broker := startSvcBroker(b, svcBroker{
		plugin:     "mysql",
		role:       svcRole("my"),
		connection: fmt.Sprintf("dsn: env:CB_BENCH_MYSQL_DSN\nmax_conns: %d", conns),
		section: fmt.Sprintf("grants:\n  - {privileges: [SELECT], on: %q}\n  - {privileges: [SELECT, INSERT, UPDATE], on: %q}",
			database+".*", database+".items"),
		env: []string{"CB_BENCH_MYSQL_DSN=" + dsn},
	})
	raw := &rawMySQL{db: db, mariaDB: mariaDB, prefix: svcRawPrefix(), grants: grants}

	rep.svcInfo(scn, fmt.Sprintf("%s; database %s; grants SELECT on %s.*, SELECT, INSERT, UPDATE on %s.items; admin pool %d both sides",
		version, database, database, database, conns))
	count := func(tb testing.TB) int {
		tb.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
		defer cancel()
		users, err := mysqlUsers(ctx, db)
		if err != nil {
			tb.Fatalf("mysql: list accounts: %s", sanitize(err))
		}
		return len(users)
	}
	benchService(b, rep, scn, *flagMySQLOps, broker, raw.side(), count)
}
