package e2e_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/test/harness"
)

func TestConfigCheck(t *testing.T) {
	t.Parallel()
	iss := harness.NewIssuer(t, "test")
	dir := t.TempDir()
	write := func(name, yaml string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := `listen: 127.0.0.1:8420
store:
  dsn: env:CB_UNSET_STORE_DSN
issuers:
` + iss.YAML() + `backends:
  - name: app-pg
    plugin: postgres
    environment: test
    owner: team-test
    connection: {dsn: env:CB_UNSET_BACKEND_DSN}
`
	good := write("good.yaml", base+`roles:
  - name: readonly
    backend: app-pg
    default_ttl: 10m
    max_ttl: 1h
    postgres: {member_of: [app_read]}
policies:
  - name: api
    issuer: test
    subject: "system:serviceaccount:orders:*"
    roles: [readonly]
`)
	grants := write("grants.yaml", base+`roles:
  - name: readonly
    backend: app-pg
    default_ttl: 10m
    max_ttl: 1h
    postgres: {member_of: [app_read]}
  - name: orders-read
    backend: app-pg
    default_ttl: 10m
    max_ttl: 1h
    postgres:
      grants: [{privileges: [SELECT], schema: public, tables: ["*"]}]
  - name: orders-write
    backend: app-pg
    default_ttl: 10m
    max_ttl: 1h
    postgres:
      grants: [{privileges: [SELECT, INSERT], schema: public, tables: [orders]}]
policies:
  - name: api
    issuer: test
    subject: app
    roles: [readonly, orders-read, orders-write]
`)
	const inlineSecret = "hunter2-do-not-print"
	bad := write("bad.yaml", `listen: 0.0.0.0:8420
listn: 127.0.0.1:1
store:
  dsn: env:CB_UNSET_STORE_DSN
reaper: {interval: 10ms}
issuers:
  - name: test
    issuer: https://x.invalid
    audiences: [credbroker]
    jwks_file: `+iss.JWKSPath+`
    algorithms: [HS256]
backends:
  - name: app-pg
    plugin: postgres
    environment: test
    owner: team-test
    connection: {dsn: "postgres://admin:`+inlineSecret+`@db/app"}
  - name: other
    plugin: mongodb
    environment: test
    owner: team-test
    connection: {dsn: env:Y}
roles:
  - name: readonly
    backend: app-pg
    default_ttl: 10m
    postgres:
      membr_of: [g]
  - name: writer
    backend: nope-pg
    default_ttl: 10m
    max_ttl: 1h
    postgres: {member_of: [w]}
policies:
  - name: p
    issuer: test
    subject: app
    roles: [readonly, ghost]
  - name: q
    issuer: nobody
    roles: [readonly]
`)

	t.Run("Good", func(t *testing.T) {
		stdout, stderr, code := harness.RunCLI(t, nil, "config", "check", good)
		if code != 0 || !strings.Contains(stdout, "ok") || stderr != "" {
			t.Errorf("config check of a good file: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		_, _, code = harness.RunCLI(t, nil, "config", "check", "--strict", good)
		if code != 0 {
			t.Errorf("config check --strict of a good file without warnings: exit %d", code)
		}
		// Without store.kek, a note (not a warning: --strict passes) says
		// what is off.
		if !strings.Contains(stdout, "store.kek not set: admin secrets are not stored and root rotation is off") {
			t.Errorf("config check without store.kek: no note in stdout: %s", stdout)
		}
	})

	t.Run("Bad", func(t *testing.T) {
		stdout, stderr, code := harness.RunCLI(t, nil, "config", "check", bad)
		out := stdout + stderr
		if code != 1 {
			t.Errorf("config check of a bad file: exit %d, want 1", code)
		}
		for _, path := range []string{
			"listn:",                     // unknown key
			"listen:",                    // not loopback without tls
			"reaper.interval:",           // too short
			"issuers[0]",                 // HS256
			"backends[0].connection.dsn", // inline secret
			"backends[1].plugin:",        // unknown plugin
			"roles[0].max_ttl:",          // missing
			"roles[0].postgres.membr_of", // typo in the plugin section
			"roles[1].backend:",          // dangling reference
			"policies[0].roles[1]",       // unknown role
			"policies[1].issuer:",        // unknown issuer
			"policies[1]:",               // matches everyone
		} {
			if !strings.Contains(out, path) {
				t.Errorf("config check does not report %s", path)
			}
		}
		if strings.Contains(out, inlineSecret) {
			t.Errorf("config check printed the inline secret it complains about")
		}
		if t.Failed() {
			t.Logf("output:\n%s", out)
		}

		// serve refuses the same file, before touching anything, and says why.
		_, stderr, code = harness.RunCLI(t, nil, "serve", "--config", bad)
		if code != 1 || !strings.Contains(stderr, "roles[1].backend") || strings.Contains(stderr, inlineSecret) {
			t.Errorf("serve with a bad config: exit %d\n%s", code, stderr)
		}
	})

	t.Run("GrantsWarn", func(t *testing.T) {
		stdout, stderr, code := harness.RunCLI(t, nil, "config", "check", grants)
		if code != 0 || !strings.Contains(stdout, "ok") {
			t.Errorf("config check of a file with explicit grants: exit %d\n%s%s", code, stdout, stderr)
		}
		for _, path := range []string{"roles[1].postgres", "roles[2].postgres"} {
			if !strings.Contains(stderr, "warning: "+path) {
				t.Errorf("no warning for the explicit grants of %s:\n%s", path, stderr)
			}
		}
		if strings.Contains(stderr, "roles[0]") {
			t.Errorf("a warning about roles[0], which uses member_of:\n%s", stderr)
		}
		_, stderr, code = harness.RunCLI(t, nil, "config", "check", "--strict", grants)
		if code != 1 || !strings.Contains(stderr, "warning") {
			t.Errorf("config check --strict with warnings: exit %d, want 1\n%s", code, stderr)
		}
	})

	t.Run("Usage", func(t *testing.T) {
		_, _, code := harness.RunCLI(t, nil, "config", "check")
		if code != 2 {
			t.Errorf("config check without a file: exit %d, want 2", code)
		}
		_, stderr, code := harness.RunCLI(t, nil, "config", "check", filepath.Join(dir, "missing.yaml"))
		if code != 1 || !strings.Contains(stderr, "missing.yaml") {
			t.Errorf("config check of a missing file: exit %d\n%s", code, stderr)
		}
	})
}

// TestConfigCheckEnvironments runs config check --strict on a file that
// breaks every rule that keeps environments apart: it exits 1 and names
// each problem with its path, all at once.
func TestConfigCheckEnvironments(t *testing.T) {
	t.Parallel()
	prod := harness.NewIssuer(t, "k8s-prod")
	ci := harness.NewIssuer(t, "ci-dev")
	ciYAML := strings.Replace(ci.YAML(), "    algorithms:", "    environments: [dev]\n    algorithms:", 1)
	dir := t.TempDir()
	write := func(name, yaml string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	config := func(devDSN, devRedis, ciRoles, writeTTL string) string {
		return `store: {dsn: env:CB_UNSET_STORE_DSN}
issuers:
` + prod.YAML() + ciYAML + `backends:
  - {name: orders-pg, plugin: postgres, environment: prod, owner: team-orders, connection: {dsn: env:CB_UNSET_ORDERS_DSN}}
  - {name: orders-pg-dev, plugin: postgres, environment: dev, connection: {dsn: ` + devDSN + `}}
  - {name: cache, plugin: redis, environment: prod, owner: team-cache, connection: {addr: "redis.prod.example:6379", password: env:CB_UNSET_CACHE_PASSWORD}}
  - {name: cache-dev, plugin: redis, owner: team-cache, environment: dev, connection: {addr: "` + devRedis + `", password: env:CB_UNSET_CACHE_DEV_PASSWORD}}
  - {name: shared-a, plugin: postgres, environment: dev, owner: team-dev, connection: {dsn: env:CB_UNSET_DEV_DSN}}
  - {name: shared-b, plugin: postgres, environment: dev, owner: team-dev, connection: {dsn: env:CB_UNSET_DEV_DSN}}
  - {name: shared-c, plugin: postgres, environment: dev, owner: team-dev, connection: {dsn: env:CB_UNSET_DEV_DSN}}
roles:
  - {name: orders-read, backend: orders-pg, default_ttl: 15m, max_ttl: 1h, postgres: {member_of: [orders_read]}}
  - {name: orders-write, backend: orders-pg, default_ttl: 15m, max_ttl: ` + writeTTL + `, postgres: {member_of: [orders_write]}}
  - {name: orders-read-dev, backend: orders-pg-dev, default_ttl: 1h, max_ttl: 8h, postgres: {member_of: [orders_read]}}
policies:
  - {name: orders-api, issuer: k8s-prod, subject: "system:serviceaccount:orders:api", roles: [orders-read, orders-read-dev]}
  - {name: ci, issuer: ci-dev, subject: "repo:org/orders:*", roles: [` + ciRoles + `]}
checks: {max_backends_per_secret: 2, max_ttl: {prod: 1h}}
`
	}
	bad := write("bad.yaml", config("env:CB_UNSET_ORDERS_DSN", "redis.prod.example:6379", "orders-read-dev, orders-write", "4h"))
	stdout, stderr, code := harness.RunCLI(t, nil, "config", "check", "--strict", bad)
	if code != 1 {
		t.Errorf("config check --strict of a file that mixes environments: exit %d, want 1", code)
	}
	for _, want := range []string{
		"invalid config (5 problems)",
		"backends[1].owner: required",
		"backends[1].connection.dsn: env:CB_UNSET_ORDERS_DSN is also the admin secret of backends[0] (orders-pg, environment prod)",
		`backends[3].connection: logs in to redis.prod.example:6379 as admin user "default", as backends[2] (cache, environment prod) does`,
		"policies[1].roles[1]: role orders-write is in environment prod, but issuer ci-dev may only be granted roles of dev",
		"roles[1].max_ttl: 4h0m0s is longer than 1h0m0s, the ceiling of environment prod",
		// The warnings of an invalid file are printed with its errors.
		"warning: backends[4].connection.dsn: env:CB_UNSET_DEV_DSN is the admin secret of 3 backends",
		"warning: policies[0]: grants roles of more than one environment",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("config check does not say %q", want)
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}

	// The same file with its errors fixed still has the warnings: a
	// master secret and a policy across environments. --strict fails on
	// them; without it the file passes and they are printed.
	warn := write("warn.yaml", strings.Replace(config("env:CB_UNSET_ORDERS_DEV_DSN", "redis.dev.example:6379", "orders-read-dev", "1h"),
		"orders-pg-dev, plugin: postgres, environment: dev,", "orders-pg-dev, plugin: postgres, environment: dev, owner: team-orders,", 1))
	wantWarnings := []string{
		"warning: backends[4].connection.dsn: env:CB_UNSET_DEV_DSN is the admin secret of 3 backends (shared-a, shared-b, shared-c), more than checks.max_backends_per_secret (2)",
		"warning: policies[0]: grants roles of more than one environment (dev: orders-read-dev; prod: orders-read)",
	}
	stdout, stderr, code = harness.RunCLI(t, nil, "config", "check", "--strict", warn)
	if code != 1 || !strings.Contains(stderr, "2 warnings (--strict)") {
		t.Errorf("config check --strict with warnings: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range wantWarnings {
		if !strings.Contains(stderr, want) {
			t.Errorf("config check --strict does not warn %q:\n%s", want, stderr)
		}
	}
	stdout, stderr, code = harness.RunCLI(t, nil, "config", "check", warn)
	if code != 0 || !strings.Contains(stdout, "ok") {
		t.Errorf("config check without --strict of a file with warnings only: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range wantWarnings {
		if !strings.Contains(stderr, want) {
			t.Errorf("config check does not warn %q:\n%s", want, stderr)
		}
	}
}
