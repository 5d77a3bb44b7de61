package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/test/harness"
)

// The Redis, RabbitMQ and MySQL/MariaDB scenarios: for each backend, a broker
// of its own (fresh lease store, one backend, one role, the sweep off) and a
// raw baseline that sends what the backend's plugin sends, with the client
// library the plugin uses, straight to the server. Both issue and revoke in
// alternating rounds at concurrency 1 and 8, as the PostgreSQL scenarios do.
//
// The servers are shared with whoever else runs tests on the machine, whose
// cb_ users live there too: every user this run makes, either side, starts
// with userPrefix, and only those are counted and cleaned up. The broker's
// sweep is switched off (`sweep: false`): it would revoke every cb_ user its
// own store has no lease for, other people's included.

var (
	// Defaults: about a minute and a half for all three on a 2-core machine
	// (Redis ~8ms, RabbitMQ ~35ms, MySQL ~21ms of wall time per op count,
	// both sides, both concurrencies, issue and revoke).
	flagRedisOps   = flag.Int("cb.redis-ops", 2000, "operations per Redis measurement")
	flagRabbitOps  = flag.Int("cb.rabbitmq-ops", 800, "operations per RabbitMQ measurement")
	flagMySQLOps   = flag.Int("cb.mysql-ops", 1000, "operations per MySQL/MariaDB measurement")
	flagSkipRedis  = flag.Bool("cb.skip-redis", false, "skip the Redis scenario")
	flagSkipRabbit = flag.Bool("cb.skip-rabbitmq", false, "skip the RabbitMQ scenario")
	flagSkipMySQL  = flag.Bool("cb.skip-mysql", false, "skip the MySQL/MariaDB scenario")
	flagMQTTOps    = flag.Int("cb.mqtt-ops", 1000, "operations per MQTT measurement")
	flagSkipMQTT   = flag.Bool("cb.skip-mqtt", false, "skip the MQTT scenario")
)

// svcWarmup is how many operations each side makes, at concurrency conns,
// before a service scenario is measured.
const svcWarmup = 20

// svcTimeout bounds one administrative call (setup, counting, cleanup).
const svcTimeout = time.Minute

// svcBroker is what a service scenario's broker is started with.
type svcBroker struct {
	plugin     string   // redis, rabbitmq, mysql, mqtt: the role section's key
	backend    string   // the backend's name; default bench-<plugin>
	external   string   // for plugin: external, the backend's command:, sha256: and env: lines, YAML without indentation
	role       string   // the role's name; usernames are cb_<role>_<random>
	connection string   // the backend's connection: section, YAML without indentation
	section    string   // the role's plugin section, YAML without indentation
	env        []string // what the connection section's env: references name
	// storeURL is the lease store; "" makes a fresh one, dropped when the
	// benchmark ends. Brokers given the same URL are replicas of one
	// deployment.
	storeURL string
	// admin adds a policy that makes the subject adminSubject an admin
	// (for the export).
	admin bool
}

// adminSubject is the subject of the admin token of a broker started with
// svcBroker.admin.
const adminSubject = "bench-admin"

// svcHandle is a running service scenario broker: its process, its lease
// store, its tokens and its clients. The broker is stopped when the
// benchmark ends, if it was not stopped before.
type svcHandle struct {
	broker     *harness.Broker
	storeURL   string
	token      string // benchSubject's, which may issue the role
	adminToken string // adminSubject's, when started with admin
	proto      brokerClient
	json       brokerClient
	role       string
}

// startSvcBroker starts `credbroker serve` on a lease store (a fresh one
// unless s.storeURL says) with one backend and one role, on the default
// reaper settings.
func startSvcBroker(b *testing.B, s svcBroker) *svcHandle {
	b.Helper()
	storeURL := s.storeURL
	if storeURL == "" {
		storeURL = plugintest.NewTestDatabase(b, plugintest.PostgresURL(b))
	}
	iss := harness.NewIssuer(b, "bench")
	token := iss.Token(b, benchSubject, nil, 3*time.Hour)
	backend := s.backend
	if backend == "" {
		backend = "bench-" + s.plugin
	}
	kind := s.plugin
	if s.external != "" {
		kind = "external\n" + indent(s.external, 4)
	}
	adminPolicy := ""
	if s.admin {
		adminPolicy = fmt.Sprintf("  - {name: bench-admin, issuer: %s, subject: %s, admin: true}\n", iss.Name, adminSubject)
	}
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
  - name: %s
    plugin: %s
    environment: bench
    owner: bench
    sweep: false
    connection:
%s
roles:
  - name: %s
    backend: %s
    owner: bench
    default_ttl: 1h
    max_ttl: 2h
    %s:
%s
policies:
  - name: bench
    issuer: %s
    subject: %s
    roles: [%s]
%s`, harness.ListenPlaceholder, iss.Name, iss.URL, iss.JWKSPath,
		backend, kind, indent(s.connection, 6),
		s.role, backend, s.plugin, indent(s.section, 6),
		iss.Name, benchSubject, s.role, adminPolicy)
	br := harness.StartBrokerWith(b, harness.Options{
		Config:   cfg,
		Env:      append([]string{"CB_BENCH_STORE_DSN=" + storeURL}, s.env...),
		LogLevel: "info",
	})
	h := &svcHandle{broker: br, storeURL: storeURL, token: token, role: s.role}
	h.proto, h.json = brokerClients(br, token)
	if s.admin {
		h.adminToken = iss.Token(b, adminSubject, nil, 3*time.Hour)
	}
	return h
}

// indent prefixes every line of yaml with n blanks.
func indent(yaml string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(yaml, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pad + l
	}
	return strings.Join(lines, "\n")
}

// svcRole is a role name for this run: "cbbench-<run>-<short>", which the
// broker turns into usernames cb_cbbench_<run>_<short>_<random>, 31
// characters for a two-letter short name, within MySQL's 32.
func svcRole(short string) string { return "cbbench-" + runID + "-" + short }

// svcRawPrefix is the prefix of the raw baselines' usernames,
// cb_cbbench_<run>_rw_: as long as the broker's, and under userPrefix, so
// counting and cleanup find both sides' users.
func svcRawPrefix() string { return userPrefix + "rw_" }

// needService skips the scenario with a note in the report when ping fails,
// or fails it under CREDBROKER_REQUIRE_SERVICES=1. where is shown, its
// password redacted.
func needService(b *testing.B, rep *report, scn, where string, ping func(ctx context.Context) error) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := ping(ctx)
	cancel()
	if err == nil {
		return
	}
	reason := fmt.Sprintf("no answer at %s: %s", plugins.SanitizeString(where), plugins.SanitizeString(err.Error()))
	if os.Getenv(plugintest.RequireServicesEnv) == "1" {
		rep.svcNote(scn, "FAILED: "+reason+" ("+plugintest.RequireServicesEnv+"=1)")
		b.Fatalf("%s: %s (%s=1 makes this a failure, not a skip)", scn, reason, plugintest.RequireServicesEnv)
	}
	rep.svcNote(scn, "skipped: "+reason)
	b.Skipf("%s: skipped: %s", scn, reason)
}

// noteEnd, deferred at the start of a scenario, notes in the report a skip
// that came from elsewhere (plugintest, the harness), or a failure.
func noteEnd(b *testing.B, rep *report, scn string) {
	switch {
	case b.Skipped() && !rep.svcNoted(scn):
		rep.svcNote(scn, "skipped (the reason is in the log above)")
	case b.Failed():
		if !rep.svcNoted(scn) {
			rep.svcNote(scn, "FAILED (the reason is in the log above)")
		}
		rep.mu.Lock()
		rep.errors = append(rep.errors, scn+": the scenario failed; the reason is in the log above")
		rep.mu.Unlock()
	}
}

// benchService measures one service scenario: a warm-up, then issue and
// revoke on each side (raw first) at concurrency 1 and conns, n operations
// each, checking after each measurement that no user of this run is left on
// the server.
func benchService(b *testing.B, rep *report, scn string, n int, sides []side, count func(tb testing.TB) int) {
	b.Helper()
	rep.compare(b, scn, "warmup", sides, svcWarmup, conns, false)
	if got := count(b); got != 0 {
		b.Errorf("%s warm-up: %d users of this run exist, want 0", scn, got)
	}
	for _, c := range []int{1, conns} {
		rep.compare(b, scn, "svc", sides, n, c, false)
		if got := count(b); got != 0 {
			b.Errorf("%s c=%d: %d users of this run exist, want 0", scn, c, got)
		}
	}
	rep.svcRan(scn, n)
}
