package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"connectrpc.com/grpchealth"
)

// TestStoreDownFailsClosed takes the lease store away from a running broker
// (connections to its database refused and the open ones ended, as during a
// store restart or failover) and checks that nothing is issued while it is
// gone, that health says NOT_SERVING, and that the broker recovers on its own
// when the store is back.
func TestStoreDownFailsClosed(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "10m", "1h", "")
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)
	held := issue(t, b, token, map[string]any{"role": "readonly"})
	health := grpchealth.NewClient(http.DefaultClient, b.Addr)
	status := func() grpchealth.Status {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		resp, err := health.Check(ctx, &grpchealth.CheckRequest{})
		if err != nil {
			t.Logf("health check: %v", err)
			return grpchealth.StatusUnknown
		}
		return resp.Status
	}

	usersBefore := d.Backend.ManagedUsers(t)
	d.Store.SetDown(t, true)

	for i := range 3 {
		code, resp := b.Call(t, token, "IssueCredential", map[string]any{"role": "readonly"})
		wantError(t, fmt.Sprintf("IssueCredential with the store down (#%d)", i+1), code, resp, http.StatusServiceUnavailable, "unavailable")
	}
	code, resp := b.Call(t, token, "RenewLease", map[string]any{"leaseId": held.LeaseID})
	wantError(t, "RenewLease with the store down", code, resp, http.StatusServiceUnavailable, "unavailable")
	code, resp = b.Call(t, token, "RevokeLease", map[string]any{"leaseId": held.LeaseID})
	wantError(t, "RevokeLease with the store down", code, resp, http.StatusServiceUnavailable, "unavailable")
	// Health caches the store's answer for a second.
	eventually(t, 10*time.Second, "health is not NOT_SERVING with the store down", func() bool {
		return status() == grpchealth.StatusNotServing
	})
	// And the plain GET a Kubernetes readiness probe sends says 503.
	readyz := func() int {
		res, err := http.Get(b.Addr + "/readyz")
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	eventually(t, 10*time.Second, "GET /readyz is not 503 with the store down", func() bool {
		return readyz() == http.StatusServiceUnavailable
	})
	if users := d.Backend.ManagedUsers(t); !slices.Equal(users, usersBefore) {
		t.Errorf("with the store down the backend's users went from %v to %v: something was issued", usersBefore, users)
	}

	d.Store.SetDown(t, false)
	eventually(t, 30*time.Second, "health is not SERVING again after the store came back", func() bool {
		return status() == grpchealth.StatusServing
	})
	eventually(t, 10*time.Second, "GET /readyz is not 200 after the store came back", func() bool {
		return readyz() == http.StatusOK
	})
	again := issue(t, b, token, map[string]any{"role": "readonly"})
	checkReadOnlyWithPGX(t, again.URI)
	checkReadOnlyWithPGX(t, held.URI) // the lease held through the outage is intact
	code, resp = b.Call(t, token, "RevokeLease", map[string]any{"leaseId": held.LeaseID})
	if code != http.StatusOK || str(resp, "lease", "state") != "LEASE_STATE_REVOKED" {
		t.Errorf("RevokeLease after the store came back: HTTP %d %v", code, resp)
	}
}
