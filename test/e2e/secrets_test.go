package e2e_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/test/harness"
)

// TestNoSecretInLogs walks every path an issued password takes, including
// the failing ones, with the broker logging at debug level, then checks that
// no password, URI or identity token is in its logs or its lease store.
// (Every other test checks its own passwords too, when it ends.)
func TestNoSecretInLogs(t *testing.T) {
	t.Parallel()
	d := harness.NewDeployment(t)
	be := d.Backend
	// "broken" names a group role that exists at start (a missing one is a
	// start error) and is dropped once the broker runs, so its creates fail.
	doomed := be.ReadGroup + "_doomed"
	be.Exec(t, "CREATE ROLE "+doomed+" NOLOGIN")
	t.Cleanup(func() { be.Exec(t, "DROP ROLE IF EXISTS "+doomed) })
	b := harness.StartBroker(t, d.Config(fmt.Sprintf(`reaper: {interval: 500ms, pending_grace: 2s}
roles:
  - name: readonly
    backend: %[1]s
    default_ttl: 10m
    max_ttl: 1h
    postgres: {member_of: [%[2]s]}
  - name: brief
    backend: %[1]s
    default_ttl: 2s
    max_ttl: 1m
    postgres: {member_of: [%[2]s]}
  - name: broken
    backend: %[1]s
    default_ttl: 10m
    max_ttl: 1h
    postgres: {member_of: [%[2]s_doomed]}
  - name: vault-style
    backend: %[1]s
    default_ttl: 10m
    max_ttl: 1h
    postgres:
      creation_statements:
        - CREATE ROLE {{name}} WITH LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}
        - GRANT %[2]s TO {{name}}
  - name: vault-broken
    backend: %[1]s
    default_ttl: 10m
    max_ttl: 1h
    postgres:
      creation_statements:
        - CREATE ROLE {{name}} WITH LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}
        - GRANT SELECT ON no_such_table TO {{name}}
policies:
  - name: app
    issuer: test
    subject: %[3]q
    roles: [readonly, brief, broken, vault-style, vault-broken]
`, harness.BackendName, be.ReadGroup, appSubject)), d.Env()...)
	be.Exec(t, "DROP ROLE "+doomed)
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)
	b.Track(token)

	var passwords []string
	// Raw Connect JSON, the Go client and the CLI in each format.
	readonly := issue(t, b, token, map[string]any{"role": "readonly"})
	passwords = append(passwords, readonly.Password)
	resp, err := b.Client(token).IssueCredential(t.Context(), connect.NewRequest(&credbrokerv1.IssueCredentialRequest{Role: "vault-style"}))
	if err != nil {
		t.Fatalf("IssueCredential vault-style: %v", err)
	}
	passwords = append(passwords, resp.Msg.GetCredential().GetPassword())
	checkReadOnlyWithPGX(t, resp.Msg.GetCredential().GetUri())
	for _, format := range []string{"json", "env", "uri"} {
		stdout, stderr, code := b.CLI(t, token, "creds", "readonly", "--format", format, "--break-glass", "incident 42: "+format)
		if code != 0 {
			t.Fatalf("credbroker creds --format %s: exit %d\n%s", format, code, stderr)
		}
		if strings.Count(stdout, "cb_readonly_") == 0 {
			t.Errorf("credbroker creds --format %s printed no credential", format)
		}
	}
	if n := b.Secrets(); n < 9 { // the token, 2 + 2 from the API, 2 + 1 + 1 from the CLI
		t.Errorf("the harness tracked only %d secrets", n)
	}

	// Renew, revoke, and a lease the reaper expires.
	if status, r := b.Call(t, token, "RenewLease", map[string]any{"leaseId": readonly.LeaseID, "increment": "1200s"}); status != http.StatusOK {
		t.Errorf("RenewLease: HTTP %d %v", status, r)
	}
	if status, r := b.Call(t, token, "RevokeLease", map[string]any{"leaseId": readonly.LeaseID}); status != http.StatusOK {
		t.Errorf("RevokeLease: HTTP %d %v", status, r)
	}
	brief := issue(t, b, token, map[string]any{"role": "brief"})
	passwords = append(passwords, brief.Password)

	// Failed creates: the backend refuses after the password was made. A
	// refusal is not a reason to retry, so it is failed_precondition.
	for _, role := range []string{"broken", "vault-broken"} {
		status, r := b.Call(t, token, "IssueCredential", map[string]any{"role": role})
		wantError(t, "issue "+role, status, r, http.StatusBadRequest, "failed_precondition")
	}
	eventually(t, 20*time.Second, "the brief lease was not reaped", func() bool {
		return !be.RoleExists(t, brief.Username)
	})
	eventually(t, 20*time.Second, "the failed issues were not cleaned up", func() bool {
		for _, l := range d.Store.Leases(t) {
			if l.State == "PENDING" || l.State == "REVOKING" {
				return false
			}
		}
		return true
	})

	logs := b.Logs()
	for _, want := range []string{"break-glass", "backend create failed", "lease revoked"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs have no %q line: the paths this test means to cover were not taken", want)
		}
	}
	b.AssertNoSecrets(t, passwords...)
	// Passwords of failed issues never reach the client, so look for
	// anything shaped like one (32 letters and digits) in the logs.
	if m := passwordShaped(logs); m != "" {
		t.Errorf("the logs hold something shaped like a password: %s…", m[:4])
	}
	store := d.Store.Dump(t)
	for _, p := range passwords {
		if strings.Contains(store, p) {
			t.Errorf("the lease store holds an issued password")
		}
	}
	if m := passwordShaped(store); m != "" {
		t.Errorf("the lease store holds something shaped like a password: %s…", m[:4])
	}
}

// passwordShaped returns the first run of exactly 32 letters and digits,
// upper and lower case mixed, in s: the shape of plugins.NewPassword's
// passwords (lease ids and usernames are lower case), or "".
func passwordShaped(s string) string {
	for _, run := range alnumRun.FindAllString(s, -1) {
		if len(run) == 32 && strings.ToLower(run) != run && strings.ToUpper(run) != run {
			return run
		}
	}
	return ""
}

var alnumRun = regexp.MustCompile(`[A-Za-z0-9]+`)
