package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
)

func TestRevokeKillsSessionAndLogin(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "10m", "1h", "")
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)
	cred := issue(t, b, token, map[string]any{"role": "readonly"})
	ctx := t.Context()

	conn, err := connectPG(ctx, cred.URI)
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SELECT 1 FROM orders"); err != nil {
		t.Fatalf("query before revoke: %v", err)
	}

	stdout, stderr, code := b.CLI(t, token, "lease", "revoke", cred.LeaseID)
	if code != 0 {
		t.Fatalf("credbroker lease revoke: exit %d\n%s", code, stderr)
	}
	var out struct {
		Lease struct {
			State        string    `json:"state"`
			RevokedAt    time.Time `json:"revokedAt"`
			RevokeReason string    `json:"revokeReason"`
		} `json:"lease"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("credbroker lease revoke printed no JSON: %v\n%s", err, stdout)
	}
	if out.Lease.State != "LEASE_STATE_REVOKED" || out.Lease.RevokedAt.IsZero() || out.Lease.RevokeReason == "" {
		t.Errorf("credbroker lease revoke: %+v, want REVOKED with a time and a reason", out.Lease)
	}

	// The open session is gone: its next query fails.
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Errorf("the session opened before the revoke still answers")
	} else {
		t.Logf("the open session's next query: %v", err)
	}
	// A new login fails.
	if c, err := connectPG(ctx, cred.URI); err == nil {
		c.Close(ctx)
		t.Errorf("logged in with a revoked credential")
	} else if st := sqlState(err); st != pgerrcode.InvalidPassword && st != pgerrcode.InvalidAuthorizationSpecification {
		t.Errorf("login after revoke: %v (SQLSTATE %q), want an authentication failure", err, st)
	}
	if d.Backend.RoleExists(t, cred.Username) {
		t.Errorf("role %s is still in pg_roles", cred.Username)
	}

	status, resp := b.Call(t, token, "GetLease", map[string]any{"leaseId": cred.LeaseID})
	if status != http.StatusOK || str(resp, "lease", "state") != "LEASE_STATE_REVOKED" {
		t.Errorf("GetLease after revoke: HTTP %d %v", status, resp)
	}
	status, resp = b.Call(t, token, "RenewLease", map[string]any{"leaseId": cred.LeaseID})
	wantError(t, "RenewLease after revoke", status, resp, http.StatusBadRequest, "failed_precondition")

	// Revoking again is harmless: the lease stays REVOKED.
	status, resp = b.Call(t, token, "RevokeLease", map[string]any{"leaseId": cred.LeaseID})
	if status != http.StatusOK || str(resp, "lease", "state") != "LEASE_STATE_REVOKED" {
		t.Errorf("RevokeLease again: HTTP %d %v, want the REVOKED lease", status, resp)
	}
	if n := d.Store.EventCount(t, "revoked"); n != 1 {
		t.Errorf("store: %d revoked events, want 1", n)
	}
}
