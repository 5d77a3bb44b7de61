package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// The demo backend `credbroker dev` adds when MySQL or MariaDB answers on
// this machine.
const (
	// demoDSNEnv names the variable that overrides the demo server's admin
	// DSN; `credbroker dev` sets it to the DSN used, which the demo
	// connection refers to.
	demoDSNEnv = "CREDBROKER_DEV_MYSQL_DSN"
	// defaultDemoDSN is a local server whose root has no password, as a
	// fresh MariaDB has.
	defaultDemoDSN = "root@tcp(127.0.0.1:3306)/"
	// demoDialTimeout bounds connecting to the demo server.
	demoDialTimeout = 5 * time.Second
)

// demoSetup makes the demo database and its table, with one row; running it
// again changes nothing.
const demoSetup = `
CREATE DATABASE IF NOT EXISTS credbroker_demo;
CREATE TABLE IF NOT EXISTS credbroker_demo.orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(100) NOT NULL, qty INT NOT NULL);
INSERT INTO credbroker_demo.orders (item, qty) SELECT 'keyboard', 2 FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM credbroker_demo.orders);`

// prepareDemo connects to the demo server ($CREDBROKER_DEV_MYSQL_DSN, else
// root without a password on 127.0.0.1:3306), makes the credbroker_demo
// database with a table orders, and returns the demo backend: a connection
// that refers to the DSN through the variable, and a role that reads the
// database.
func prepareDemo(ctx context.Context) (plugins.DemoBackend, error) {
	dsn := os.Getenv(demoDSNEnv)
	if dsn == "" {
		dsn = defaultDemoDSN
	}
	if err := setupDemo(ctx, dsn); err != nil {
		return plugins.DemoBackend{}, err
	}
	return plugins.DemoBackend{
		Connection: `{dsn: env:` + demoDSNEnv + `}`,
		Role:       `{grants: [{privileges: [SELECT], on: "credbroker_demo.*"}]}`,
		Env:        map[string]string{demoDSNEnv: dsn},
		Try:        `eval "$(./bin/credbroker creds demo-mysql -o env)"; mysql -u "$MYSQL_USER" credbroker_demo -e 'SELECT * FROM orders'`,
	}, nil
}

// setupDemo runs demoSetup on the server dsn names. Its errors never quote
// the DSN's password.
func setupDemo(ctx context.Context, dsn string) error {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		// ParseDSN's error may quote the DSN.
		return errors.New(demoDSNEnv + " is not a MySQL DSN (user:password@tcp(host:port)/)")
	}
	cfg.MultiStatements = true
	if cfg.Timeout == 0 {
		cfg.Timeout = demoDialTimeout
	}
	cfg.Logger = &mysql.NopLogger{}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return plugins.Sanitize(fmt.Errorf("%s: %w", demoDSNEnv, err), secret.New(cfg.Passwd))
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return plugins.Sanitize(fmt.Errorf("the demo MySQL at %s: %w", cfg.Addr, err), secret.New(cfg.Passwd))
	}
	if _, err := db.ExecContext(ctx, demoSetup); err != nil {
		return plugins.Sanitize(fmt.Errorf("set up the MySQL demo database: %w", err), secret.New(cfg.Passwd))
	}
	return nil
}
