package e2e_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/credbroker/credbroker/test/harness"
)

// TestExternalBackendThroughTheBroker: a backend run as a separate program
// (the in-tree Redis backend served by sdk.Serve), pinned by its sha256,
// is opened by `credbroker serve` like a built-in one: ListRoles names the
// program's driver, an issued user exists on Redis while its lease lives,
// and revoke removes it.
func TestExternalBackendThroughTheBroker(t *testing.T) {
	t.Parallel()
	prog, sum := harness.Program(t, "github.com/credbroker/credbroker/test/plugins/redis")
	rd := harness.NewRedis(t)
	iss := harness.NewIssuer(t, "test")
	store := harness.NewStore(t)
	const backend = "cache-ext"
	rd.DeleteUsersAtEnd(t, store.IssuedUsernames(t, backend))
	prefix := harness.RandomName("ext")

	b := harness.StartBroker(t, harness.ServicesConfig(iss, fmt.Sprintf(`  - name: %s
    plugin: external
    command: [%q]
    sha256: %s
    environment: test
    owner: harness
    connection: {addr: %q}
`, backend, prog, sum, rd.Addr), fmt.Sprintf(`roles:
  - name: cache
    backend: %s
    default_ttl: 10m
    max_ttl: 1h
    redis:
      rules: ["~%s:*", "+@read"]
`, backend, prefix)+singlePolicy("cache")), store.StoreEnv()...)
	token := iss.Token(t, appSubject, nil, time.Hour)

	status, resp := b.Call(t, token, "ListRoles", nil)
	roles, _ := resp["roles"].([]any)
	if status != http.StatusOK || len(roles) != 1 {
		t.Fatalf("ListRoles: HTTP %d %v", status, resp)
	}
	if plugin := str(roles[0].(map[string]any), "plugin"); plugin != "redis" {
		t.Errorf("ListRoles plugin = %q, want the program's driver name redis", plugin)
	}

	cred := issue(t, b, token, map[string]any{"role": "cache"})
	if !rd.UserExists(t, cred.Username) {
		t.Fatalf("Redis user %s does not exist after the issue", cred.Username)
	}
	status, resp = b.Call(t, token, "RevokeLease", map[string]any{"leaseId": cred.LeaseID})
	if status != http.StatusOK || str(resp, "lease", "state") != "LEASE_STATE_REVOKED" {
		t.Fatalf("RevokeLease: HTTP %d %v", status, resp)
	}
	if rd.UserExists(t, cred.Username) {
		t.Errorf("Redis user %s still exists after the revoke", cred.Username)
	}
}
