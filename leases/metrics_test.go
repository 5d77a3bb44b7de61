package leases

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credbroker/credbroker/plugins"
)

// The reaper reports how long the oldest REVOKING lease has been REVOKING,
// counted from when it became REVOKING (by a caller's revoke or by expiry),
// not from its last retry, so an operator can alarm on a revoke that keeps
// failing.
func TestRevokingAgeMetric(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	ctx := t.Context()
	p := newFakePlugin()
	refused := fmt.Errorf("%w: connection refused", plugins.ErrUnavailable)
	p.setFail(func(string) error { return refused })
	reg := prometheus.NewRegistry()
	r := newReaper(t, s, b, p, func(c *ReaperConfig) {
		c.Registerer, c.MinBackoff, c.MaxBackoff = reg, time.Second, time.Second
	})
	age := func() float64 {
		t.Helper()
		return metricValue(t, reg, "credbroker_leases_revoking_oldest_age_seconds", nil)
	}

	runOnce(t, r)
	if v := age(); v != 0 {
		t.Fatalf("age = %v with no lease REVOKING, want 0", v)
	}

	// t0: the holder revokes one lease (claimOne); it fails and stays
	// REVOKING. Another lease expires at t0+2m.
	byHolder := createActive(t, s, newLease(b, time.Hour))
	expiring := createActive(t, s, newLease(b, 2*time.Minute))
	if l, err := r.Revoke(ctx, byHolder.ID, "revoked by holder", "test"); err != nil || l.State != StateRevoking {
		t.Fatalf("Revoke = %v, %v; want the lease left REVOKING", l.State, err)
	}

	// t0+2m: the pass sees byHolder 2 minutes REVOKING, then retries it and
	// claims the expired lease; both fail.
	b.clock.Advance(2 * time.Minute)
	if revoked, failed := runOnce(t, r); revoked != 0 || failed != 2 {
		t.Fatalf("RunOnce = %d, %d; want two failures", revoked, failed)
	}
	if v := age(); v != 120 {
		t.Fatalf("age = %v, want 120 (the holder's revoke, 2 minutes ago)", v)
	}

	// t0+5m: retries did not restart the count. byHolder now succeeds.
	b.clock.Advance(3 * time.Minute)
	p.setFail(func(username string) error {
		if username == expiring.Username {
			return refused
		}
		return nil
	})
	if revoked, failed := runOnce(t, r); revoked != 1 || failed != 1 {
		t.Fatalf("RunOnce = %d, %d; want one revoked, one failed", revoked, failed)
	}
	if v := age(); v != 300 {
		t.Fatalf("age = %v, want 300: a retry does not restart the count", v)
	}

	// t0+6m: the oldest is now the expired lease, REVOKING since t0+2m.
	b.clock.Advance(time.Minute)
	p.setFail(nil)
	if revoked, failed := runOnce(t, r); revoked != 1 || failed != 0 {
		t.Fatalf("RunOnce = %d, %d; want the expired lease revoked", revoked, failed)
	}
	if v := age(); v != 240 {
		t.Fatalf("age = %v, want 240 (the expired lease, claimed 4 minutes ago)", v)
	}
	runOnce(t, r)
	if v := age(); v != 0 {
		t.Fatalf("age = %v once every lease is REVOKED, want 0", v)
	}
}
