package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/test/harness"
)

func randText(n int) string { return strings.ToLower(rand.Text()[:n]) }

// runID tells this run's roles (cluster-wide) apart from everyone else's.
var runID = randText(6)

// Names of this run's PostgreSQL roles and config roles. Every user either
// side creates starts with userPrefix, so cleanup finds them all.
var (
	userPrefix  = "cb_cbbench_" + runID + "_"
	roleMember  = "cbbench-" + runID + "-mo" // usernames cb_cbbench_<run>_mo_…
	roleGrants  = "cbbench-" + runID + "-gr" // usernames cb_cbbench_<run>_gr_…
	rawPrefix   = userPrefix + "raw_"
	benchTables = 20
)

const (
	benchSubject = "bench-workload"
	roleTTL      = time.Hour
	conns        = 8 // the broker's backend pool and the raw pool
)

// env is one scenario's world: a lease store database, a backend database
// with benchTables tables and a group role, a broker on them, and the raw
// baseline's pool on the same backend database.
type env struct {
	admin      string
	storeURL   string
	backendURL string
	dbNames    map[string]string // database name → "store" / "backend"
	group      string
	issuer     *harness.Issuer
	token      string
	broker     *harness.Broker
	cli        brokerClient // Connect with protobuf
	cliJSON    brokerClient // Connect with JSON
	raw        *rawBaseline
}

// newEnv makes fresh databases and starts a broker; everything is dropped
// when tb ends: the broker stopped, the databases dropped, then every role
// this run made.
func newEnv(tb testing.TB, name string) *env {
	tb.Helper()
	e := &env{admin: plugintest.PostgresURL(tb)}
	e.group = "cbbench_" + runID + "_" + name + "_read"
	// Registered first, so it runs last: after the broker has stopped and the
	// databases (and with them every grant) are gone.
	tb.Cleanup(func() { dropRoles(tb, e.admin, userPrefix, e.group) })
	e.storeURL = plugintest.NewTestDatabase(tb, e.admin)
	e.backendURL = plugintest.NewTestDatabase(tb, e.admin)
	e.dbNames = map[string]string{}
	for role, url := range map[string]string{"store": e.storeURL, "backend": e.backendURL} {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			tb.Fatalf("parse %s URL: %v", role, err)
		}
		e.dbNames[cfg.Database] = role
	}

	var ddl strings.Builder
	fmt.Fprintf(&ddl, "CREATE ROLE %s NOLOGIN;\n", ident(e.group))
	for i := 1; i <= benchTables; i++ {
		fmt.Fprintf(&ddl, "CREATE TABLE t%02d (id bigserial PRIMARY KEY, payload text);\n", i)
	}
	fmt.Fprintf(&ddl, "GRANT USAGE ON SCHEMA public TO %s;\n", ident(e.group))
	fmt.Fprintf(&ddl, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s;\n", ident(e.group))
	mustExec(tb, e.backendURL, ddl.String())

	iss := harness.NewIssuer(tb, "bench")
	e.issuer = iss
	e.token = iss.Token(tb, benchSubject, nil, 3*time.Hour)
	cfg := fmt.Sprintf(`listen: %s
limits: {issue_rate: 100000, issue_burst: 100000, request_rate: 100000, request_burst: 100000}
store:
  dsn: env:CB_BENCH_STORE_DSN
issuers:
  - name: %s
    issuer: %s
    audiences: [credbroker]
    jwks_file: %s
    algorithms: [ES256]
backends:
  - name: bench-pg
    plugin: postgres
    environment: bench
    owner: bench
    connection:
      dsn: env:CB_BENCH_BACKEND_DSN
      max_conns: %d
roles:
  - name: %s
    backend: bench-pg
    owner: bench
    default_ttl: 1h
    max_ttl: 2h
    postgres:
      member_of: [%s]
  - name: %s
    backend: bench-pg
    owner: bench
    default_ttl: 1h
    max_ttl: 2h
    postgres:
      grants: [{privileges: [SELECT], schema: public, tables: ["*"]}]
policies:
  - name: bench
    issuer: %s
    subject: %s
    roles: [%s, %s]
`, harness.ListenPlaceholder, iss.Name, iss.URL, iss.JWKSPath, conns,
		roleMember, e.group, roleGrants, iss.Name, benchSubject, roleMember, roleGrants)
	e.broker = harness.StartBrokerWith(tb, harness.Options{
		Config:   cfg,
		Env:      []string{"CB_BENCH_STORE_DSN=" + e.storeURL, "CB_BENCH_BACKEND_DSN=" + e.backendURL},
		LogLevel: "info", // what `credbroker serve` runs with by default
	})
	e.cli, e.cliJSON = brokerClients(e.broker, e.token)

	raw, err := newRaw(context.Background(), e.backendURL, conns, rawPrefix)
	if err != nil {
		tb.Fatalf("raw baseline pool: %v", err)
	}
	tb.Cleanup(raw.close)
	e.raw = raw
	return e
}

// leaseRef is an issued lease: its id (broker) or username (both).
type leaseRef struct{ id, username string }

// countRoles returns how many users of this run exist now.
func countRoles(tb testing.TB, url string) int {
	tb.Helper()
	var n int
	withConn(tb, url, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)`, userPrefix).Scan(&n)
	})
	return n
}

func mustExec(tb testing.TB, url, sql string) {
	tb.Helper()
	withConn(tb, url, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, sql)
		return err
	})
}

func withConn(tb testing.TB, url string, f func(ctx context.Context, c *pgx.Conn) error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	defer c.Close(ctx)
	if err := f(ctx, c); err != nil {
		tb.Fatalf("%v", err)
	}
}

// dropRoles drops every role whose name starts with prefix, and the extra
// roles, in batches. Roles are cluster-wide, so this runs after the
// databases in which they held privileges are gone.
func dropRoles(tb testing.TB, adminURL, prefix string, extra ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		tb.Errorf("cleanup: connect: %v", err)
		return
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1`, prefix)
	if err != nil {
		tb.Errorf("cleanup: list roles: %v", err)
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Errorf("cleanup: list roles: %v", err)
		return
	}
	names = append(names, extra...)
	for len(names) > 0 {
		batch := names[:min(500, len(names))]
		names = names[len(batch):]
		quoted := make([]string, len(batch))
		for i, n := range batch {
			quoted[i] = ident(n)
		}
		if _, err := c.Exec(ctx, "DROP ROLE IF EXISTS "+strings.Join(quoted, ", ")); err != nil {
			// One of them is still in use somewhere: drop them one by one so
			// the rest go, and say which one stays.
			for _, q := range quoted {
				if _, err := c.Exec(ctx, "DROP ROLE IF EXISTS "+q); err != nil {
					var pgErr *pgconn.PgError
					if errors.As(err, &pgErr) && pgErr.Code == pgerrcode.DependentObjectsStillExist {
						tb.Errorf("cleanup: role %s still has privileges somewhere: %v", q, err)
						continue
					}
					tb.Errorf("cleanup: drop role %s: %v", q, err)
				}
			}
		}
	}
}
