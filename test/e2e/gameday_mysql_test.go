package e2e_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/mysql"
	"github.com/credbroker/credbroker/test/harness"
)

// newGameDayMySQL makes a database of the test's own on the MySQL/MariaDB
// test server and an admin account of its own with just the privileges the
// mysql plugin's admin needs (plugins/mysql/doc.go) and a random password,
// dropped when the test ends. The broker reaches the server through a
// StallProxy: MySQL has no lock a test can hold to make an ALTER USER wait,
// so the proxy holds the rotation's statement instead, as a server thread
// stalled on it would.
func newGameDayMySQL(t *testing.T) *gameDayTarget {
	my := harness.NewMySQL(t)
	root, err := gomysql.ParseDSN(my.DSN)
	if err != nil {
		t.Fatalf("the MySQL test DSN: %v", err)
	}
	admin := harness.RandomName("cbtest_gdadmin_")
	password := plugins.NewPassword().Reveal()
	// The hash, not the password, goes to the server (as the plugin's
	// own CREATE USER does), so no error or server log holds it.
	acct := "'" + admin + "'@'%'"
	my.Exec(t, "CREATE USER "+acct+" IDENTIFIED BY PASSWORD '"+mysql.NativePasswordHash(password)+"'")
	// Registered before any broker starts, so it runs after the brokers
	// stopped and after the game day revoked every issued user.
	t.Cleanup(func() { dropGameDayMySQLAccounts(t, my, admin) })
	my.Exec(t,
		"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO "+acct,
		"GRANT SELECT ON mysql.* TO "+acct,
		"GRANT SELECT ON `"+my.Database+"`.* TO "+acct+" WITH GRANT OPTION")

	proxy := harness.NewStallProxy(t, root.Addr)
	cfg := gomysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = admin, password, "tcp", proxy.Addr
	// The rotation's statement names the account written out, backticked
	// (plugins/mysql/rotate.go); the login handshake names the admin too,
	// so the words apart would also match a revoke's ALTER USER `cb_…`
	// … ACCOUNT LOCK sent soon after a pool connection logged in.
	marker := "alter user `" + admin + "`@"
	return &gameDayTarget{
		backendYAML: gameDayDSNBackend("mysql"),
		roleYAML:    fmt.Sprintf(`mysql: {grants: [{privileges: [SELECT], on: "%s.*"}]}`, my.Database),
		env:         []string{"CB_GD_ADMIN_DSN=" + cfg.FormatDSN()},
		password:    password,
		userExists:  func(t *testing.T, name string) bool { return len(my.UserHosts(t, name)) > 0 },
		adminLogin: func(ctx context.Context, password string) error {
			return mysqlLogin(ctx, root.Addr, admin, password)
		},
		stall: func(t *testing.T) (func() int, func()) {
			return proxy.Stall(t, func(w []byte) bool { return harness.ContainsFold(w, marker) })
		},
	}
}

// mysqlLogin logs in to addr as user with password on a fresh connection,
// not through the proxy.
func mysqlLogin(ctx context.Context, addr, user, password string) error {
	cfg := gomysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = user, password, "tcp", addr
	cfg.Timeout = 10 * time.Second
	connector, err := gomysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// dropGameDayMySQLAccounts drops the admin and any issued account the game
// day left holding grants on the test's database (there is none when it
// passed: it checks every issued user is gone).
func dropGameDayMySQLAccounts(t *testing.T, my *harness.MySQL, admin string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("mysql", my.DSN)
	if err != nil {
		t.Errorf("drop the game day's MySQL accounts: %v", err)
		return
	}
	defer db.Close()
	// The plugin's grants escape the wildcard _ of the database name.
	escaped := strings.NewReplacer("_", `\_`, "%", `\%`).Replace(my.Database)
	rows, err := db.QueryContext(ctx, `SELECT User, Host FROM mysql.db WHERE Db IN (?, ?) AND User LIKE 'cb\_%'`, my.Database, escaped)
	if err != nil {
		t.Errorf("list the game day's issued MySQL accounts: %v", err)
		return
	}
	accounts := [][2]string{{admin, "%"}}
	for rows.Next() {
		var user, host string
		if err := rows.Scan(&user, &host); err != nil {
			t.Errorf("list the game day's issued MySQL accounts: %v", err)
		}
		accounts = append(accounts, [2]string{user, host})
	}
	if err := rows.Err(); err != nil {
		t.Errorf("list the game day's issued MySQL accounts: %v", err)
	}
	rows.Close()
	for _, a := range accounts {
		// Names from mysql.db are the plugin's (cb_ and [a-z0-9_]) and
		// the host '%': backticks need no escaping for them.
		if _, err := db.ExecContext(ctx, "DROP USER IF EXISTS `"+a[0]+"`@`"+a[1]+"`"); err != nil {
			t.Errorf("drop MySQL account %s: %v", a[0], err)
		}
	}
}
