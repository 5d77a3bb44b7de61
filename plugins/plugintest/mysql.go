package plugintest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// MySQLDSNEnv overrides where tests find MySQL or MariaDB.
const MySQLDSNEnv = "CREDBROKER_TEST_MYSQL_DSN"

// DefaultMySQLDSN is where tests look for MySQL or MariaDB when
// CREDBROKER_TEST_MYSQL_DSN is not set: a local server whose root has an
// empty password, in go-sql-driver/mysql DSN form.
const DefaultMySQLDSN = "root@tcp(127.0.0.1:3306)/"

func init() {
	containers["mysql"] = container{
		repository: "mariadb", tag: "10.11",
		env:  []string{"MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1"},
		port: "3306/tcp",
		url:  func(hp string) string { return "root@tcp(" + hp + ")/" },
	}
}

// MySQLDSN returns the go-sql-driver/mysql DSN of a MySQL or MariaDB server
// for tests, as a user with every privilege WITH GRANT OPTION:
// $CREDBROKER_TEST_MYSQL_DSN, else [DefaultMySQLDSN]; see [ServiceURL] for
// what happens when it does not answer (the container is MariaDB 10.11).
// Tests that create tables should do so in a database of their own from
// [NewMySQLDatabase].
func MySQLDSN(t testing.TB) string {
	t.Helper()
	return ServiceURL(t, "mysql", MySQLDSNEnv, DefaultMySQLDSN, pingMySQL)
}

func pingMySQL(ctx context.Context, dsn string) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}

// NewMySQLDatabase creates an empty database with a unique name on the
// server dsn points at, drops it when the test ends, and returns its name
// (it needs no quoting). dsn needs the right to create databases.
func NewMySQLDatabase(t testing.TB, dsn string) string {
	t.Helper()
	name := "cbtest_" + strings.ToLower(rand.Text()[:16])
	if err := mysqlExec(dsn, "CREATE DATABASE `"+name+"`"); err != nil {
		t.Fatalf("NewMySQLDatabase: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := mysqlExec(dsn, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("NewMySQLDatabase: drop database %s: %v", name, err)
		}
	})
	return name
}

// mysqlExec runs one statement on a fresh connection to dsn, with the DSN's
// password redacted from the error. It does not use the test's context, so
// it works in a Cleanup too.
func mysqlExec(dsn, statement string) error {
	var secrets []secret.Value
	if cfg, err := mysql.ParseDSN(dsn); err == nil && cfg.Passwd != "" {
		secrets = append(secrets, secret.New(cfg.Passwd))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return plugins.Sanitize(err, secrets...)
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, statement)
	return plugins.Sanitize(err, secrets...)
}
