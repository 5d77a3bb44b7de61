package bench

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
)

// The MySQL/MariaDB raw baseline is the least a DBA would type for the same
// account, over database/sql with go-sql-driver/mysql and a pool as large as
// the broker's (max_conns 8), each statement one round trip of the text
// protocol, as the mysql client sends it:
//
//	issue:  CREATE USER `<name>`@`%` IDENTIFIED BY '<password>'
//	        GRANT SELECT, INSERT, UPDATE ON `<db>`.* TO `<name>`@`%`
//	revoke: DROP USER `<name>`@`%`
//
// The server hashes the password with its default authentication plugin.
// The broker's role holds the same one grant; whatever the plugin does
// beyond that (its look-ups before and after, ending the user's sessions on
// revoke) counts as the broker's cost.
type rawMySQL struct {
	db     *sql.DB
	prefix string
	grant  string // "GRANT … ON `<db>`.* TO ", the account follows
}

// mysqlIdent quotes a name in backticks, as plugins/mysql quoteIdent.
func mysqlIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func mysqlAccount(name, host string) string { return mysqlIdent(name) + "@" + mysqlIdent(host) }

// openMySQL opens a pool like the plugin's (plugins/mysql open): the DSN's
// config with a 10s dial timeout and no driver logging, conns connections,
// checked with a query.
func openMySQL(ctx context.Context, dsn string, conns int) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	cfg.Logger = &mysql.NopLogger{}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

func (r *rawMySQL) issue(ctx context.Context) (leaseRef, error) {
	username := r.prefix + randText(10)
	acct := mysqlAccount(username, "%")
	password := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(plugins.NewPassword().Reveal())
	if _, err := r.db.ExecContext(ctx, "CREATE USER "+acct+" IDENTIFIED BY '"+password+"'"); err != nil {
		return leaseRef{}, fmt.Errorf("raw issue %s: create the account: %w", username, err)
	}
	if _, err := r.db.ExecContext(ctx, r.grant+acct); err != nil {
		return leaseRef{}, fmt.Errorf("raw issue %s: %w", username, err)
	}
	return leaseRef{username: username}, nil
}

func (r *rawMySQL) revoke(ctx context.Context, l leaseRef) error {
	_, err := r.db.ExecContext(ctx, "DROP USER "+mysqlAccount(l.username, "%"))
	return err
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
		db, err := openMySQL(ctx, dsn, 1)
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
		db, err := openMySQL(ctx, dsn, 1)
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
	db, err := openMySQL(ctx, dsn, conns)
	if err != nil {
		b.Fatalf("mysql: connect: %s", sanitize(err))
	}
	b.Cleanup(func() { _ = db.Close() })
	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		b.Fatalf("mysql: %s", sanitize(err))
	}

	// One grant on the whole database, both sides. The plugin renders db.*
	// with the LIKE wildcards of the name escaped; the raw side types the
	// same, so both grant exactly this database.
	const privileges = "SELECT, INSERT, UPDATE"
	escaped := strings.NewReplacer(`\`, `\\`, `_`, `\_`, `%`, `\%`).Replace(database)
	h := startSvcBroker(b, svcBroker{
		plugin:     "mysql",
		role:       svcRole("my"),
		connection: fmt.Sprintf("dsn: env:CB_BENCH_MYSQL_DSN\nmax_conns: %d", conns),
		section:    fmt.Sprintf("grants:\n  - {privileges: [%s], on: %q}", privileges, database+".*"),
		env:        []string{"CB_BENCH_MYSQL_DSN=" + dsn},
	})
	raw := &rawMySQL{db: db, prefix: svcRawPrefix(), grant: "GRANT " + privileges + " ON " + mysqlIdent(escaped) + ".* TO "}

	rep.svcInfo(scn, fmt.Sprintf("%s; database %s; one grant, %s on %s.*; admin pool %d both sides",
		version, database, privileges, database, conns))
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
	benchService(b, rep, scn, *flagMySQLOps, []side{{"raw", raw.side()}, {sideProto, h.proto.side(h.role)}}, count)
}
