package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/test/harness"
)

// TestBreakGlass: an on-call engineer may take a role only with a reason; the
// lease is flagged, audited and ends within break_glass_max_ttl, renewals
// included.
func TestBreakGlass(t *testing.T) {
	t.Parallel()
	d := harness.NewDeployment(t)
	b := harness.StartBroker(t, d.Config(fmt.Sprintf(`roles:
  - name: dba
    backend: %[1]s
    owner: e2e
    default_ttl: 5m
    max_ttl: 1h
    break_glass_max_ttl: 2m
    postgres: {member_of: [%[2]s]}
  - name: other
    backend: %[1]s
    owner: e2e
    default_ttl: 5m
    max_ttl: 1h
    postgres: {member_of: [%[2]s]}
policies:
  - name: on-call
    issuer: test
    subject: oncall@example.com
    break_glass_roles: [dba]
`, harness.BackendName, d.Backend.ReadGroup)), d.Env()...)
	token := d.Issuer.Token(t, "oncall@example.com", nil, time.Hour)

	status, r := b.Call(t, token, "IssueCredential", map[string]any{"role": "dba"})
	wantError(t, "break-glass role without a reason", status, r, http.StatusForbidden, "permission_denied")
	if msg, _ := r["message"].(string); !strings.Contains(msg, "break_glass_reason") || !strings.Contains(msg, "2m0s") {
		t.Errorf("the denial does not say how to break glass and for how long: %q", msg)
	}
	status, r = b.Call(t, token, "IssueCredential", map[string]any{"role": "other", "breakGlassReason": "please"})
	wantError(t, "a reason for a role no policy names", status, r, http.StatusForbidden, "permission_denied")

	_, roles := b.Call(t, token, "ListRoles", map[string]any{})
	list, _ := roles["roles"].([]any)
	if len(list) != 1 || fmt.Sprint(list[0].(map[string]any)["name"]) != "dba" || list[0].(map[string]any)["breakGlassOnly"] != true {
		t.Errorf("ListRoles = %v, want dba marked breakGlassOnly", roles)
	}

	cred := issue(t, b, token, map[string]any{"role": "dba", "breakGlassReason": "INC-1234 orders DB down", "ttl": "3600s"})
	if !d.Backend.RoleExists(t, cred.Username) {
		t.Fatalf("break-glass user %s was not created", cred.Username)
	}
	if fmt.Sprint(cred.Raw["lease"].(map[string]any)["breakGlass"]) != "true" || cred.Raw["ttlClamped"] != true {
		t.Errorf("lease = %v, want breakGlass and ttlClamped", cred.Raw)
	}
	if limit := time.Until(cred.MaxExpiresAt); limit > 2*time.Minute || limit < time.Minute {
		t.Errorf("break-glass lease may live %s, want the 2m break_glass_max_ttl", limit)
	}
	status, r = b.Call(t, token, "RenewLease", map[string]any{"leaseId": cred.LeaseID, "increment": "3600s"})
	if status != http.StatusOK || str(r, "lease", "expiresAt") != cred.Raw["lease"].(map[string]any)["maxExpiresAt"] {
		t.Errorf("renewing past the limit: HTTP %d %v; want expiry at the 2m limit", status, r)
	}
	if n := d.Store.EventCount(t, "break_glass"); n != 1 {
		t.Errorf("%d break_glass events, want 1", n)
	}
	if !strings.Contains(b.Logs(), "INC-1234") {
		t.Error("the break-glass reason is not in the broker log")
	}
}
