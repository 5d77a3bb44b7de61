package e2e_test

import (
	"net/http"
	"testing"
	"time"
)

func TestShortLeaseIsReaped(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "3s", "1m", "reaper: {interval: 1s, pending_grace: 3s}\n")
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)
	cred := issue(t, b, token, map[string]any{"role": "readonly"})
	if !d.Backend.RoleExists(t, cred.Username) {
		t.Fatalf("role %s was not created", cred.Username)
	}
	if ttl := time.Until(cred.ExpiresAt); ttl > 3*time.Second {
		t.Errorf("lease expires in %s, want the role's default_ttl 3s", ttl)
	}

	// Expiry 3s, reaper every 1s: the user should be gone within ~4s; allow
	// for a slow machine.
	eventually(t, 20*time.Second, "the expired user is still in pg_roles", func() bool {
		return !d.Backend.RoleExists(t, cred.Username)
	})
	gone := time.Now()
	if gone.Before(cred.ExpiresAt) {
		t.Errorf("the user was dropped at %s, before its lease expired at %s", gone, cred.ExpiresAt)
	}
	t.Logf("user dropped %s after its lease expired", gone.Sub(cred.ExpiresAt).Round(time.Millisecond))

	var status int
	var resp map[string]any
	eventually(t, 10*time.Second, "the lease is not REVOKED", func() bool {
		status, resp = b.Call(t, token, "GetLease", map[string]any{"leaseId": cred.LeaseID})
		return str(resp, "lease", "state") == "LEASE_STATE_REVOKED"
	})
	if status != http.StatusOK || str(resp, "lease", "revokeReason") != "expired" {
		t.Errorf("GetLease: HTTP %d %v, want REVOKED with reason expired", status, resp)
	}
}
