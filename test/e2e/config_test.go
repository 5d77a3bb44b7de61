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
