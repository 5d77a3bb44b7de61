package e2e_test

import (
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	amqp "github.com/rabbitmq/amqp091-go"
	goredis "github.com/redis/go-redis/v9"

	"github.com/credbroker/credbroker/test/harness"
)

// Names of the backends in this file's configs.
const (
	redisBackend    = "cache-redis"
	mysqlBackend    = "orders-mysql"
	rabbitMQBackend = "events-mq"
)

// singlePolicy grants roles to appSubject.
func singlePolicy(roles ...string) string {
	return fmt.Sprintf(`policies:
  - name: app
    issuer: test
    subject: %q
    roles: [%s]
`, appSubject, strings.Join(roles, ", "))
}

// secrets collects the issued secrets a test saw, to look for them in the
// broker's logs and in the lease store when it ends.
type secrets struct {
	b   *harness.Broker
	all []string
}

// add tracks password and every value of env holding it (a URI, say).
func (s *secrets) add(password string, values ...string) {
	if password == "" {
		return
	}
	found := []string{password}
	for _, v := range values {
		if v != password && strings.Contains(v, password) && !slices.Contains(found, v) {
			found = append(found, v)
		}
	}
	s.all = append(s.all, found...)
	s.b.Track(found...)
}

// addIssued tracks what IssueCredential returned.
func (s *secrets) addIssued(c issued) {
	values := []string{c.URI}
	for _, v := range c.Env {
		values = append(values, v)
	}
	s.add(c.Password, values...)
}

// addExports tracks the password in the exports of `credbroker creds
// -o env`, found under passwordKey, and every export holding it.
func (s *secrets) addExports(t *testing.T, env map[string]string, passwordKey string) {
	t.Helper()
	if env[passwordKey] == "" {
		t.Fatalf("credbroker creds -o env exported no %s", passwordKey)
	}
	var values []string
	for _, v := range env {
		values = append(values, v)
	}
	s.add(env[passwordKey], values...)
}

// check fails the test if the broker's logs so far or the lease store hold
// any secret seen, or the store holds anything shaped like a password.
func (s *secrets) check(t *testing.T, store *harness.Store) {
	t.Helper()
	if len(s.all) == 0 {
		t.Errorf("no issued secret was seen: nothing to look for")
	}
	s.b.AssertNoSecrets(t)
	dump := store.Dump(t)
	for _, secret := range s.all {
		if strings.Contains(dump, secret) {
			t.Errorf("the lease store holds an issued secret (%s…, %d bytes)", secret[:min(4, len(secret))], len(secret))
		}
	}
	if m := passwordShaped(dump); m != "" {
		t.Errorf("the lease store holds something shaped like a password: %s…", m[:4])
	}
}

// withCreds runs script with sh after `eval "$(credbroker creds ROLE
// -o env)"`, as a user would, with CREDBROKER_ADDR and
// CREDBROKER_TOKEN set for b and env added. The exports the CLI printed are
// also saved, and returned, so that the test can track their secrets and
// use the credential again. It returns the combined output of the script
// and its error.
func withCreds(t *testing.T, b *harness.Broker, token, role, script string, env ...string) (exports map[string]string, out string, err error) {
	t.Helper()
	saved := filepath.Join(t.TempDir(), "exports")
	full := `umask 077
creds=$("$CB" creds "$CB_ROLE" -o env) || exit 97
printf '%s\n' "$creds" > "$CB_SAVED"
eval "$creds" && ` + script
	cmd := exec.Command("sh", "-c", full)
	cmd.Env = append(cleanEnv(),
		"CB="+harness.Binary(t), "CB_ROLE="+role, "CB_SAVED="+saved,
		"CREDBROKER_ADDR="+b.Addr, "CREDBROKER_TOKEN="+token, "CREDBROKER_TOKEN_FILE=")
	cmd.Env = append(cmd.Env, env...)
	raw, err := runWithTimeout(t, cmd)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 97 {
		t.Fatalf("credbroker creds %s -o env failed:\n%s", role, raw)
	}
	data, readErr := os.ReadFile(saved)
	if readErr != nil {
		t.Fatalf("the script saved no exports (%v); output:\n%s", readErr, raw)
	}
	return parseExports(t, strings.TrimSpace(string(data))), raw, err
}

// runWith runs a backend's tool with exports (from withCreds) in its
// environment and returns its combined output and error.
func runWith(t *testing.T, exports map[string]string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = cleanEnv()
	for k, v := range exports {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return runWithTimeout(t, cmd)
}

func runWithTimeout(t *testing.T, cmd *exec.Cmd) (string, error) {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not finish within a minute; output:\n%s", cmd.Path, out.String())
		return "", nil
	}
}

// cleanEnv is the test's environment without the variables the backends'
// tools and the CLI read, so only what a test sets reaches them.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "PG"), strings.HasPrefix(kv, "MYSQL"), strings.HasPrefix(kv, "REDIS"),
			strings.HasPrefix(kv, "AMQP_"), strings.HasPrefix(kv, "RABBITMQ_"), strings.HasPrefix(kv, "CREDBROKER_"):
		default:
			out = append(out, kv)
		}
	}
	return out
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CREDBROKER_REQUIRE_SERVICES") == "1" {
			t.Fatalf("%s is not installed", name)
		}
		t.Skipf("%s is not installed", name)
	}
}

// revoke revokes a lease through the broker's HTTP JSON API.
func revoke(t *testing.T, b *harness.Broker, token, leaseID string) {
	t.Helper()
	status, resp := b.Call(t, token, "RevokeLease", map[string]any{"leaseId": leaseID})
	if status != http.StatusOK || str(resp, "lease", "state") != "LEASE_STATE_REVOKED" {
		t.Fatalf("RevokeLease: HTTP %d %v", status, resp)
	}
}

// checkReaped waits for gone to report the user of a short lease gone, and
// checks the lease then says it expired.
func checkReaped(t *testing.T, b *harness.Broker, token string, cred issued, gone func() bool) {
	t.Helper()
	eventually(t, 20*time.Second, "the user of the expired lease still exists", gone)
	at := time.Now()
	if at.Before(cred.ExpiresAt) {
		t.Errorf("the user was removed at %s, before its lease expired at %s", at, cred.ExpiresAt)
	}
	t.Logf("user removed %s after its lease expired", at.Sub(cred.ExpiresAt).Round(time.Millisecond))
	var resp map[string]any
	eventually(t, 10*time.Second, "the reaped lease is not REVOKED", func() bool {
		_, resp = b.Call(t, token, "GetLease", map[string]any{"leaseId": cred.LeaseID})
		return str(resp, "lease", "state") == "LEASE_STATE_REVOKED"
	})
	if r := str(resp, "lease", "revokeReason"); r != "expired" {
		t.Errorf("reaped lease: revoke reason %q, want expired", r)
	}
}

func TestRedisBackend(t *testing.T) {
	t.Parallel()
	needTool(t, "redis-cli")
	rd := harness.NewRedis(t)
	iss := harness.NewIssuer(t, "test")
	store := harness.NewStore(t)
	rd.DeleteUsersAtEnd(t, store.IssuedUsernames(t, redisBackend))
	prefix := harness.RandomName("e2e")
	key, other := prefix+":greeting", "other"+prefix+":greeting"
	t.Cleanup(func() { rd.Do(t, "DEL", key, other, prefix+":held") })

	b := harness.StartBroker(t, harness.ServicesConfig(iss, rd.BackendYAML(redisBackend), fmt.Sprintf(`reaper: {interval: 1s}
roles:
  - name: cache
    backend: %[1]s
    default_ttl: 10m
    max_ttl: 1h
    redis:
      rules: ["~%[2]s:*", "+@read", "+@write", "-@dangerous"]
  - name: brief
    backend: %[1]s
    default_ttl: 3s
    max_ttl: 1m
    redis:
      rules: ["~%[2]s:*", "+@read"]
`, redisBackend, prefix)+singlePolicy("cache", "brief")), store.StoreEnv()...)
	token := iss.Token(t, appSubject, nil, time.Hour)
	seen := &secrets{b: b}

	t.Run("RedisCLI", func(t *testing.T) {
		cli := `redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --user "$REDIS_USERNAME"`
		exports, out, err := withCreds(t, b, token, "cache",
			cli+` SET "$KEY" hello && `+cli+` GET "$KEY" && `+cli+` SET "$OTHER" hello`,
			"KEY="+key, "OTHER="+other)
		seen.addExports(t, exports, "REDISCLI_AUTH")
		user := exports["REDIS_USERNAME"]
		if !strings.HasPrefix(user, "cb_cache_") || !strings.HasPrefix(exports["REDIS_URL"], "redis://") {
			t.Errorf("exports: REDIS_USERNAME %q, REDIS_URL %.8q…", user, exports["REDIS_URL"])
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if err != nil || len(lines) != 3 || lines[0] != "OK" || lines[1] != "hello" || !strings.HasPrefix(lines[2], "NOPERM") {
			t.Fatalf("redis-cli as the issued user: %v; want OK, hello, NOPERM; got:\n%s", err, redact(out, exports["REDISCLI_AUTH"]))
		}
		if got := rd.Do(t, "GET", key); got != "hello" {
			t.Errorf("the admin reads %q from %s, want hello", got, key)
		}
		if n := rd.Do(t, "EXISTS", other); n != int64(0) {
			t.Errorf("%s exists: the NOPERM write went through", other)
		}
		if !rd.UserExists(t, user) {
			t.Errorf("ACL USERS does not list %s", user)
		}
	})

	t.Run("RevokeEndsSessionAndLogin", func(t *testing.T) {
		ctx := t.Context()
		cred := issue(t, b, token, map[string]any{"role": "cache"})
		seen.addIssued(cred)
		for k, want := range map[string]string{
			"REDIS_USERNAME": cred.Username, "REDISCLI_AUTH": cred.Password, "REDIS_URL": cred.URI,
		} {
			if cred.Env[k] != want {
				t.Errorf("credential.env.%s does not match the credential", k)
			}
		}
		if host, port, _ := net.SplitHostPort(rd.Addr); cred.Env["REDIS_HOST"] != host || cred.Env["REDIS_PORT"] != port {
			t.Errorf("credential.env: REDIS_HOST %q REDIS_PORT %q, want %s", cred.Env["REDIS_HOST"], cred.Env["REDIS_PORT"], rd.Addr)
		}

		held := goredis.NewClient(harness.UserOptions(t, cred.URI, cred.Password))
		defer held.Close()
		conn := held.Conn()
		defer conn.Close()
		if err := conn.Set(ctx, prefix+":held", "1", 0).Err(); err != nil {
			t.Fatalf("SET as the issued user: %v", err)
		}
		if err := conn.Get(ctx, other).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("GET %s as the issued user: %v, want NOPERM", other, err)
		}

		revoke(t, b, token, cred.LeaseID)

		if err := conn.Get(ctx, prefix+":held").Err(); err == nil {
			t.Errorf("the connection opened before the revoke still answers")
		} else {
			t.Logf("the held connection's next command: %v", err)
		}
		fresh := goredis.NewClient(harness.UserOptions(t, cred.URI, cred.Password))
		defer fresh.Close()
		if err := fresh.Get(ctx, prefix+":held").Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("a new login after the revoke: %v, want WRONGPASS", err)
		}
		if rd.UserExists(t, cred.Username) {
			t.Errorf("ACL USERS still lists %s", cred.Username)
		}
	})

	t.Run("ShortLeaseReaped", func(t *testing.T) {
		cred := issue(t, b, token, map[string]any{"role": "brief"})
		seen.addIssued(cred)
		if !rd.UserExists(t, cred.Username) {
			t.Fatalf("ACL USERS does not list %s", cred.Username)
		}
		checkReaped(t, b, token, cred, func() bool { return !rd.UserExists(t, cred.Username) })
	})

	seen.check(t, store)
}

func TestMySQLBackend(t *testing.T) {
	t.Parallel()
	needTool(t, "mysql")
	my := harness.NewMySQL(t)
	iss := harness.NewIssuer(t, "test")
	store := harness.NewStore(t)
	my.DropUsersAtEnd(t, store.IssuedUsernames(t, mysqlBackend))

	b := harness.StartBroker(t, harness.ServicesConfig(iss, my.BackendYAML(mysqlBackend), fmt.Sprintf(`roles:
  - name: reader
    backend: %s
    default_ttl: 10m
    max_ttl: 1h
    mysql:
      grants: [{privileges: [SELECT], on: "%s.*"}]
`, mysqlBackend, my.Database)+singlePolicy("reader")), append(store.StoreEnv(), my.Env()...)...)
	token := iss.Token(t, appSubject, nil, time.Hour)
	seen := &secrets{b: b}
	ctx := t.Context()

	exports, out, err := withCreds(t, b, token, "reader",
		`mysql -u "$MYSQL_USER" `+my.Database+` -N -B -e 'SELECT name FROM items ORDER BY id'`)
	seen.addExports(t, exports, "MYSQL_PWD")
	pw, user := exports["MYSQL_PWD"], exports["MYSQL_USER"]
	if err != nil || strings.TrimSpace(out) != "one\ntwo" {
		t.Fatalf("mysql SELECT as the issued user: %v\n%s", err, redact(out, pw))
	}
	if !strings.HasPrefix(user, "cb_reader_") || exports["MYSQL_DATABASE"] != my.Database {
		t.Errorf("exports: MYSQL_USER %q, MYSQL_DATABASE %q (want %s)", user, exports["MYSQL_DATABASE"], my.Database)
	}
	if hosts := my.UserHosts(t, user); len(hosts) != 1 || hosts[0] != "%" {
		t.Errorf("accounts of %s: hosts %v, want [%%]", user, hosts)
	}
	out, err = runWith(t, exports, "mysql", "-u", user, my.Database, "-e", "INSERT INTO items VALUES (3, 'three')")
	if err == nil || !strings.Contains(out, "INSERT command denied") {
		t.Errorf("mysql INSERT as the issued user: %v, want INSERT command denied:\n%s", err, redact(out, pw))
	}

	// A session held open across the revoke.
	cfg := gomysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.DBName = user, pw, my.Database
	cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(exports["MYSQL_HOST"], exports["MYSQL_TCP_PORT"])
	cfg.Timeout = 5 * time.Second
	cfg.Logger = testLogger{t} // the driver notes the killed session's EOF
	connector, err := gomysql.NewConnector(cfg)
	if err != nil {
		t.Fatalf("go-sql-driver config: %v", err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatalf("log in with go-sql-driver: %v", redact(err.Error(), pw))
	}
	defer conn.Close()
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 2 {
		t.Fatalf("SELECT on the held session: %d rows, %v", n, err)
	}

	stdout, stderr, code := b.CLI(t, token, "lease", "revoke", exports["CREDBROKER_LEASE_ID"])
	if code != 0 || !strings.Contains(stdout, "LEASE_STATE_REVOKED") {
		t.Fatalf("credbroker lease revoke: exit %d\n%s%s", code, stdout, stderr)
	}

	eventually(t, 15*time.Second, "the session opened before the revoke still answers", func() bool {
		return conn.PingContext(ctx) != nil
	})
	var myErr *gomysql.MySQLError
	if err := db.PingContext(ctx); err == nil {
		t.Errorf("go-sql-driver logged in with a revoked credential")
	} else if !errors.As(err, &myErr) || string(myErr.SQLState[:]) != "28000" {
		// MariaDB answers 1045 or, for a user that does not exist, at
		// times 1698; both are access denied, SQLSTATE 28000.
		t.Errorf("go-sql-driver login after revoke: %v, want access denied (SQLSTATE 28000)", redact(err.Error(), pw))
	}
	out, err = runWith(t, exports, "mysql", "-u", user, my.Database, "-e", "SELECT 1")
	if err == nil || !strings.Contains(out, "Access denied") {
		t.Errorf("mysql login after revoke: %v, want Access denied:\n%s", err, redact(out, pw))
	}
	if hosts := my.UserHosts(t, user); len(hosts) != 0 {
		t.Errorf("accounts of %s left after revoke: %v", user, hosts)
	}

	seen.check(t, store)
}

// rabbitMQSetup is a broker whose role "events" may configure, write and
// read the e2e.* resources of a fresh vhost, with appSubject's token.
type rabbitMQSetup struct {
	b     *harness.Broker
	token string
	vhost string
	mq    *harness.RabbitMQ
	store *harness.Store
}

// startRabbitMQBroker starts a rabbitMQSetup; the users its broker issues
// are deleted when the test ends.
func startRabbitMQBroker(t *testing.T) rabbitMQSetup {
	t.Helper()
	mq := harness.NewRabbitMQ(t)
	vhost := mq.NewVhost(t)
	iss := harness.NewIssuer(t, "test")
	store := harness.NewStore(t)
	mq.DeleteUsersAtEnd(t, store.IssuedUsernames(t, rabbitMQBackend))
	b := harness.StartBroker(t, harness.ServicesConfig(iss, mq.BackendYAML(rabbitMQBackend), fmt.Sprintf(`roles:
  - name: events
    backend: %s
    default_ttl: 10m
    max_ttl: 1h
    rabbitmq:
      vhosts:
        %s: {configure: '^e2e\.', write: '^e2e\.', read: '^e2e\.'}
`, rabbitMQBackend, vhost)+singlePolicy("events")), append(store.StoreEnv(), mq.Env()...)...)
	return rabbitMQSetup{b: b, token: iss.Token(t, appSubject, nil, time.Hour), vhost: vhost, mq: mq, store: store}
}

func TestRabbitMQBackend(t *testing.T) {
	t.Parallel()
	rs := startRabbitMQBroker(t)
	b, token, vhost, mq, store := rs.b, rs.token, rs.vhost, rs.mq, rs.store
	seen := &secrets{b: b}
	ctx := t.Context()

	cred := issue(t, b, token, map[string]any{"role": "events"})
	seen.addIssued(cred)
	if cred.Env["AMQP_URL"] != cred.URI || cred.Env["RABBITMQ_PASSWORD"] != cred.Password ||
		cred.Env["RABBITMQ_USERNAME"] != cred.Username || cred.Env["RABBITMQ_VHOST"] != vhost {
		t.Errorf("credential.env does not match the credential and vhost %s", vhost)
	}
	if !strings.HasPrefix(cred.URI, "amqp://") || !strings.HasSuffix(cred.URI, "/"+vhost) {
		t.Errorf("URI %.7q… does not point at vhost %s", cred.URI, vhost)
	}

	conn, err := amqp.DialConfig(cred.URI, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		t.Fatalf("amqp dial with the issued URI: %v", redact(err.Error(), cred.Password))
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))

	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("open a channel: %v", err)
	}
	if err := ch.ExchangeDeclare("e2e.x", "direct", false, true, false, false, nil); err != nil {
		t.Fatalf("declare exchange e2e.x: %v", err)
	}
	if _, err := ch.QueueDeclare("e2e.q", false, false, false, false, nil); err != nil {
		t.Fatalf("declare queue e2e.q: %v", err)
	}
	if err := ch.QueueBind("e2e.q", "k", "e2e.x", false, nil); err != nil {
		t.Fatalf("bind e2e.q to e2e.x: %v", err)
	}
	deliveries, err := ch.Consume("e2e.q", "", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume from e2e.q: %v", err)
	}
	if err := ch.PublishWithContext(ctx, "e2e.x", "k", false, false, amqp.Publishing{Body: []byte("hello")}); err != nil {
		t.Fatalf("publish to e2e.x: %v", err)
	}
	select {
	case d, ok := <-deliveries:
		if !ok || string(d.Body) != "hello" {
			t.Errorf("consumed %q (open %t), want hello", d.Body, ok)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("no message consumed from e2e.q within 10s")
	}

	other, err := conn.Channel()
	if err != nil {
		t.Fatalf("open a second channel: %v", err)
	}
	var amqpErr *amqp.Error
	if _, err := other.QueueDeclare("other.q", false, false, false, false, nil); !errors.As(err, &amqpErr) || amqpErr.Code != amqp.AccessRefused {
		t.Errorf("declare other.q: %v, want ACCESS_REFUSED (403)", err)
	}

	revoke(t, b, token, cred.LeaseID)
	select {
	case e := <-closed:
		t.Logf("the open connection was closed: %v", e)
	case <-time.After(15 * time.Second):
		t.Errorf("the connection opened before the revoke is still open 15s later")
	}
	if c, err := amqp.DialConfig(cred.URI, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)}); err == nil {
		c.Close()
		t.Errorf("logged in with a revoked credential")
	} else if !errors.As(err, &amqpErr) || amqpErr.Code != amqp.AccessRefused {
		t.Errorf("login after revoke: %v, want ACCESS_REFUSED (403)", redact(err.Error(), cred.Password))
	}
	if mq.UserExists(t, cred.Username) {
		t.Errorf("user %s still exists", cred.Username)
	}

	seen.check(t, store)
}

// nopassPath is how config check names the nopass rule of roles[2].
var nopassPath = regexp.MustCompile(`roles\[2\]\.redis(\.|: )rules\[1\]: "nopass"`)

// testLogger sends go-sql-driver's log lines to the test's log.
type testLogger struct{ t *testing.T }

func (l testLogger) Print(v ...any) { l.t.Log(append([]any{"go-sql-driver:"}, v...)...) }

// TestConfigCheckAllBackends validates a config naming all four backends,
// and a Redis role that would let anyone log in.
func TestConfigCheckAllBackends(t *testing.T) {
	t.Parallel()
	iss := harness.NewIssuer(t, "test")
	dir := t.TempDir()
	config := func(redisRules string) string {
		return `listen: 127.0.0.1:8420
store: {dsn: env:CB_UNSET_STORE_DSN}
issuers:
` + iss.YAML() + `backends:
  - name: app-pg
    plugin: postgres
    environment: test
    owner: team-test
    connection: {dsn: env:CB_UNSET_PG_DSN}
  - name: cache
    plugin: redis
    environment: test
    owner: team-test
    connection: {addr: 127.0.0.1:6379, password: env:CB_UNSET_REDIS_PASSWORD}
  - name: orders-mysql
    plugin: mysql
    environment: test
    owner: team-test
    connection: {dsn: env:CB_UNSET_MYSQL_DSN}
  - name: events
    plugin: rabbitmq
    environment: test
    owner: team-test
    connection:
      management_url: http://127.0.0.1:15672
      username: admin
      password: env:CB_UNSET_RABBITMQ_PASSWORD
      amqp_url: amqp://127.0.0.1:5672
roles:
  - name: pg-read
    backend: app-pg
    default_ttl: 10m
    max_ttl: 1h
    postgres: {member_of: [app_read]}
  - name: mysql-read
    backend: orders-mysql
    default_ttl: 10m
    max_ttl: 1h
    mysql:
      grants: [{privileges: [SELECT], on: "orders.*"}]
  - name: cache-rw
    backend: cache
    default_ttl: 10m
    max_ttl: 1h
    redis:
      rules: ` + redisRules + `
  - name: events-rw
    backend: events
    default_ttl: 10m
    max_ttl: 1h
    rabbitmq:
      vhosts:
        orders: {configure: '^orders\.', write: '^orders\.', read: '^orders\.'}
policies:
  - name: app
    issuer: test
    subject: app
    roles: [pg-read, mysql-read, cache-rw, events-rw]
`
	}
	write := func(name, yaml string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", config(`["~orders:*", "+@read", "+@write", "-@dangerous"]`))
	bad := write("nopass.yaml", config(`["~orders:*", "nopass", "+@read"]`))

	stdout, stderr, code := harness.RunCLI(t, nil, "config", "check", "--strict", good)
	if code != 0 || !strings.Contains(stdout, "ok") || stderr != "" {
		t.Errorf("config check --strict of four backends: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}

	stdout, stderr, code = harness.RunCLI(t, nil, "config", "check", bad)
	out := stdout + stderr
	// The broker prefixes the plugin's own path with the section's, as
	// "roles[2].redis: rules[1]: …" (docs/plugins.md); a dotted path would
	// do too.
	if code != 1 || !nopassPath.MatchString(out) {
		t.Errorf("config check of a redis role with nopass: exit %d, want 1 naming roles[2].redis rules[1] nopass:\n%s", code, out)
	}
	for _, other := range []string{"roles[0]", "roles[1]", "roles[3]", "backends["} {
		if strings.Contains(out, other) {
			t.Errorf("config check reports %s, which is fine:\n%s", other, out)
		}
	}
}
