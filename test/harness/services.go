package harness

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
)

// This file has what tests of the Redis, MySQL and RabbitMQ backends need
// besides a [Store] and an [Issuer]: the shared test servers from
// plugins/plugintest, objects of the test's own on them, and a config with
// any backends.

// Environment variables [ServicesConfig] and the Env methods below use.
const (
	storeDSNEnv         = "CB_TEST_STORE_DSN"
	mysqlDSNEnv         = "CB_TEST_MYSQL_DSN"
	rabbitMQPasswordEnv = "CB_TEST_RABBITMQ_PASSWORD"
)

// ServicesConfig returns a broker config with listen {{LISTEN}}, the store
// (from $CB_TEST_STORE_DSN, see [Store.StoreEnv]), the issuer, the backends
// (YAML list items, such as [Redis.BackendYAML] returns), and then sections:
// the roles, policies and any other top-level keys of the test.
func ServicesConfig(iss *Issuer, backends, sections string) string {
	return fmt.Sprintf(`listen: %s
store:
  dsn: env:%s
  max_conns: 10
issuers:
%sbackends:
%s%s`, ListenPlaceholder, storeDSNEnv, iss.YAML(), backends, sections)
}

// StoreEnv returns the environment [ServicesConfig]'s store reference needs.
func (s *Store) StoreEnv() []string { return []string{storeDSNEnv + "=" + s.URL} }

// RandomName returns prefix followed by 10 random lower-case letters and
// digits: a name no other test uses.
func RandomName(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:10])
}

// ---- Redis ----

// Redis is the shared Redis test server ([plugintest.RedisURL]).
type Redis struct {
	// URL connects as a user that may manage ACL users.
	URL string
	// Addr is its host:port.
	Addr string

	opt   *goredis.Options
	admin *goredis.Client
}

// NewRedis finds the Redis test server; the test is skipped (or fails under
// CREDBROKER_REQUIRE_SERVICES=1) when none answers. The config of
// [Redis.BackendYAML] logs in as the default user, so the URL must not name
// another user or a password.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	u := plugintest.RedisURL(t)
	opt, err := goredis.ParseURL(u)
	if err != nil {
		t.Fatalf("harness: parse %s: %v", plugintest.RedisURLEnv, plugins.Sanitize(err))
	}
	if opt.Username != "" || opt.Password != "" || opt.TLSConfig != nil {
		t.Skipf("harness: %s names a user, a password or TLS; these tests need a server whose default user is the admin", plugintest.RedisURLEnv)
	}
	r := &Redis{URL: u, Addr: opt.Addr, opt: opt}
	r.admin = r.newAdmin()
	t.Cleanup(func() { _ = r.admin.Close() })
	return r
}

// BackendYAML returns a `backends:` entry called name for this server.
func (r *Redis) BackendYAML(name string) string {
	return fmt.Sprintf(`  - name: %s
    plugin: redis
    environment: test
    owner: harness
    connection: {addr: %q}
`, name, r.Addr)
}

// Admin returns a client logged in as the admin, closed when the test ends.
func (r *Redis) Admin() *goredis.Client { return r.admin }

func (r *Redis) newAdmin() *goredis.Client {
	opt := *r.opt
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return goredis.NewClient(&opt)
}

// UserOptions returns client options that log in with an issued redis://
// URI on a single connection that is never replaced and a command that is
// never retried: once the server closes the connection, every command fails.
func UserOptions(t testing.TB, uri, password string) *goredis.Options {
	t.Helper()
	opt, err := goredis.ParseURL(uri)
	if err != nil {
		t.Fatalf("harness: parse an issued Redis URI: %v", plugins.SanitizeString(strings.ReplaceAll(err.Error(), password, "[REDACTED]")))
	}
	opt.MaxRetries = -1
	opt.PoolSize = 1
	opt.DialerRetries = 1
	opt.DialTimeout = 5 * time.Second
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return opt
}

// ACLUsers returns the server's ACL USERS.
func (r *Redis) ACLUsers(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	users, err := r.admin.ACLUsers(ctx).Result()
	if err != nil {
		t.Fatalf("harness: ACL USERS: %v", err)
	}
	return users
}

// UserExists reports whether ACL USERS lists name.
func (r *Redis) UserExists(t testing.TB, name string) bool {
	t.Helper()
	for _, u := range r.ACLUsers(t) {
		if u == name {
			return true
		}
	}
	return false
}

// Do runs one command as the admin, failing the test on error.
func (r *Redis) Do(t testing.TB, args ...any) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	v, err := r.admin.Do(ctx, args...).Result()
	if err != nil {
		t.Fatalf("harness: redis %v: %v", args[0], err)
	}
	return v
}

// DeleteUsersAtEnd deletes the ACL users names when the test ends (ACL
// DELUSER of a missing user is no error).
func (r *Redis) DeleteUsersAtEnd(t testing.TB, names func() []string) {
	t.Helper()
	t.Cleanup(func() {
		users := names()
		if len(users) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
		defer cancel()
		c := r.newAdmin()
		defer c.Close()
		args := []any{"ACL", "DELUSER"}
		for _, u := range users {
			args = append(args, u)
		}
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Errorf("harness: delete the test's Redis users: %v", err)
		}
	})
}

// ---- MySQL / MariaDB ----

// MySQL is a database of the test's own on the shared MySQL or MariaDB test
// server ([plugintest.MySQLDSN]), with a table items (id, name) holding two
// rows.
type MySQL struct {
	// DSN is the admin's go-sql-driver DSN (the broker's admin DSN).
	DSN string
	// Database is the name of the test's database; it needs no quoting.
	Database string
}

// NewMySQL creates the database (dropped when the test ends) and its table.
func NewMySQL(t testing.TB) *MySQL {
	t.Helper()
	dsn := plugintest.MySQLDSN(t)
	m := &MySQL{DSN: dsn, Database: plugintest.NewMySQLDatabase(t, dsn)}
	m.Exec(t, "CREATE TABLE `"+m.Database+"`.items (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL)")
	m.Exec(t, "INSERT INTO `"+m.Database+"`.items VALUES (1, 'one'), (2, 'two')")
	return m
}

// BackendYAML returns a `backends:` entry called name whose admin DSN is
// read from the environment of [MySQL.Env].
func (m *MySQL) BackendYAML(name string) string {
	return fmt.Sprintf(`  - name: %s
    plugin: mysql
    environment: test
    owner: harness
    connection: {dsn: env:%s}
`, name, mysqlDSNEnv)
}

// Env returns the environment the config of [MySQL.BackendYAML] refers to.
func (m *MySQL) Env() []string { return []string{mysqlDSNEnv + "=" + m.DSN} }

// Exec runs statements as the admin, failing the test on error.
func (m *MySQL) Exec(t testing.TB, statements ...string) {
	t.Helper()
	if err := m.exec(statements...); err != nil {
		t.Fatalf("harness: mysql: %v", err)
	}
}

func (m *MySQL) exec(statements ...string) error {
	pw := m.passwords()
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	db, err := sql.Open("mysql", m.DSN)
	if err != nil {
		return redactAll(err, pw)
	}
	defer db.Close()
	for _, s := range statements {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return redactAll(err, pw)
		}
	}
	return nil
}

// passwords returns the admin DSN's password, to redact from errors.
func (m *MySQL) passwords() []string {
	if cfg, err := mysql.ParseDSN(m.DSN); err == nil && cfg.Passwd != "" {
		return []string{cfg.Passwd}
	}
	return nil
}

// UserHosts returns the host parts of every account called name.
func (m *MySQL) UserHosts(t testing.TB, name string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	db, err := sql.Open("mysql", m.DSN)
	if err != nil {
		t.Fatalf("harness: mysql: %v", redactAll(err, m.passwords()))
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT Host FROM mysql.user WHERE User = ?", name)
	if err != nil {
		t.Fatalf("harness: mysql: list accounts: %v", redactAll(err, m.passwords()))
	}
	defer rows.Close()
	var hosts []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			t.Fatalf("harness: mysql: %v", err)
		}
		hosts = append(hosts, h)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("harness: mysql: %v", err)
	}
	return hosts
}

// DropUsersAtEnd drops every account of each of names when the test ends.
// names is called then, so it may list what the test issued meanwhile.
func (m *MySQL) DropUsersAtEnd(t testing.TB, names func() []string) {
	t.Helper()
	t.Cleanup(func() {
		for _, n := range names() {
			for _, h := range m.UserHosts(t, n) {
				if err := m.exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%s'", sqlString(n), sqlString(h))); err != nil {
					t.Errorf("harness: drop MySQL user %s: %v", n, err)
				}
			}
		}
	})
}

// sqlString escapes s for a single-quoted MySQL string literal.
func sqlString(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}

func redactAll(err error, secrets []string) error {
	msg := err.Error()
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "[REDACTED]")
	}
	return fmt.Errorf("%s", plugins.SanitizeString(msg))
}

// ---- RabbitMQ ----

// RabbitMQ is the shared RabbitMQ test node ([plugintest.RabbitMQManagementURL]
// and [plugintest.RabbitMQAMQPURL]).
type RabbitMQ struct {
	// ManagementURL is the management API's base URL, without credentials.
	ManagementURL string
	// AMQPURL is the AMQP listener, amqp://host:port, without credentials.
	AMQPURL string
	// Username and Password are the administrator's.
	Username, Password string

	http *http.Client
}

// NewRabbitMQ finds the RabbitMQ test node; the test is skipped (or fails
// under CREDBROKER_REQUIRE_SERVICES=1) when none answers.
func NewRabbitMQ(t testing.TB) *RabbitMQ {
	t.Helper()
	mgmt, err := url.Parse(plugintest.RabbitMQManagementURL(t))
	if err != nil || mgmt.User == nil {
		t.Fatalf("harness: %s holds no administrator credentials", plugintest.RabbitMQManagementURLEnv)
	}
	amqpURL, err := url.Parse(plugintest.RabbitMQAMQPURL(t))
	if err != nil {
		t.Fatalf("harness: %s does not parse", plugintest.RabbitMQURLEnv)
	}
	r := &RabbitMQ{Username: mgmt.User.Username(), http: &http.Client{Timeout: dbTimeout}}
	r.Password, _ = mgmt.User.Password()
	mgmt.User = nil
	r.ManagementURL = strings.TrimRight(mgmt.String(), "/")
	r.AMQPURL = amqpURL.Scheme + "://" + amqpURL.Host
	return r
}

// BackendYAML returns a `backends:` entry called name whose admin password
// is read from the environment of [RabbitMQ.Env].
func (r *RabbitMQ) BackendYAML(name string) string {
	return fmt.Sprintf(`  - name: %s
    plugin: rabbitmq
    environment: test
    owner: harness
    connection:
      management_url: %q
      username: %q
      password: env:%s
      amqp_url: %q
`, name, r.ManagementURL, r.Username, rabbitMQPasswordEnv, r.AMQPURL)
}

// Env returns the environment the config of [RabbitMQ.BackendYAML] refers
// to.
func (r *RabbitMQ) Env() []string { return []string{rabbitMQPasswordEnv + "=" + r.Password} }

// API sends one request to the management API as the administrator and
// returns the HTTP status and body.
func (r *RabbitMQ) API(t testing.TB, method, path string, body string) (int, string) {
	t.Helper()
	status, resp, err := r.api(method, path, body)
	if err != nil {
		t.Fatalf("harness: RabbitMQ %s %s: %v", method, path, err)
	}
	return status, resp
}

func (r *RabbitMQ) api(method, path, body string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.ManagementURL+path, rd)
	if err != nil {
		return 0, "", err
	}
	req.SetBasicAuth(r.Username, r.Password)
	req.Header.Set("Content-Type", "application/json")
	res, err := r.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, string(raw), err
}

// NewVhost creates a vhost with a unique name, deleted (with everything in
// it) when the test ends, and returns its name.
func (r *RabbitMQ) NewVhost(t testing.TB) string {
	t.Helper()
	name := RandomName("cbtest-")
	if status, body := r.API(t, http.MethodPut, "/api/vhosts/"+url.PathEscape(name), ""); status/100 != 2 {
		t.Fatalf("harness: create vhost %s: HTTP %d %s", name, status, body)
	}
	t.Cleanup(func() {
		status, body, err := r.api(http.MethodDelete, "/api/vhosts/"+url.PathEscape(name), "")
		if err != nil || (status/100 != 2 && status != http.StatusNotFound) {
			t.Errorf("harness: delete vhost %s: HTTP %d %s %v", name, status, body, err)
		}
	})
	return name
}

// UserExists reports whether the node has a user called name.
func (r *RabbitMQ) UserExists(t testing.TB, name string) bool {
	t.Helper()
	status, body := r.API(t, http.MethodGet, "/api/users/"+url.PathEscape(name), "")
	switch status {
	case http.StatusOK:
		return true
	case http.StatusNotFound:
		return false
	}
	t.Fatalf("harness: GET user %s: HTTP %d %s", name, status, body)
	return false
}

// DeleteUsersAtEnd deletes the users names when the test ends.
func (r *RabbitMQ) DeleteUsersAtEnd(t testing.TB, names func() []string) {
	t.Helper()
	t.Cleanup(func() {
		for _, n := range names() {
			status, body, err := r.api(http.MethodDelete, "/api/users/"+url.PathEscape(n), "")
			if err != nil || (status/100 != 2 && status != http.StatusNotFound) {
				t.Errorf("harness: delete RabbitMQ user %s: HTTP %d %s %v", n, status, body, err)
			}
		}
	})
}

// IssuedUsernames returns a function listing the usernames of every lease
// of backend in the store, for the DeleteUsersAtEnd helpers: registered
// after the store was made, their cleanups run before it is dropped.
func (s *Store) IssuedUsernames(t testing.TB, backend string) func() []string {
	return func() []string {
		var out []string
		for _, l := range s.Leases(t) {
			if l.Backend == backend {
				out = append(out, l.Username)
			}
		}
		return out
	}
}
