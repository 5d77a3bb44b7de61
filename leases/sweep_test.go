package leases

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credbroker/credbroker/plugins"
)

func TestSweep(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	p := newFakePlugin()
	reg := prometheus.NewRegistry()
	r := newReaper(t, s, b, p, func(c *ReaperConfig) {
		c.Backends = func() []string { return []string{"orders-pg"} }
		c.Registerer = reg
	})
	ctx := t.Context()

	revokedLong := newLease(b, time.Minute)
	createActive(t, s, revokedLong)
	b.clock.Advance(2 * time.Minute)
	runOnce(t, r) // revokes revokedLong (expired) through the fake
	b.clock.Advance(time.Minute)

	active := createActive(t, s, newLease(b, time.Hour))
	pending := newLease(b, time.Hour)
	if _, err := s.CreatePending(ctx, pending); err != nil {
		t.Fatal(err)
	}
	revoking := newLease(b, time.Hour)
	if _, err := s.CreatePending(ctx, revoking); err != nil {
		t.Fatal(err)
	}
	if err := s.Fail(ctx, revoking.ID, "test", "backend down"); err != nil {
		t.Fatal(err)
	}

	// A user leased under another backend on the same server (two databases
	// of one PostgreSQL cluster share its roles) is accounted for.
	neighbour := newLease(b, time.Hour)
	neighbour.Backend = "reports-pg"
	createActive(t, s, neighbour)

	fresh := b.clock.Now().Add(-time.Second)
	p.managed = []plugins.ManagedUser{
		{Username: active.Username},
		{Username: pending.Username},
		{Username: revoking.Username},
		{Username: neighbour.Username},
		{Username: revokedLong.Username},                    // lease REVOKED before the sweep began: an orphan
		{Username: "cb_nolease_aaaaaaaaaa"},                 // no lease at all: an orphan
		{Username: "cb_young_bbbbbbbbbb", CreatedAt: fresh}, // dated and younger than the grace: spared
	}
	n, err := r.Sweep(ctx)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if n != 2 {
		t.Errorf("Sweep revoked %d, want 2", n)
	}
	var left []string
	for _, u := range p.managed {
		left = append(left, u.Username)
	}
	want := []string{active.Username, pending.Username, revoking.Username, neighbour.Username, "cb_young_bbbbbbbbbb"}
	slices.Sort(left)
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Errorf("users left = %v, want %v", left, want)
	}
	var events []Event
	if err := s.Events(ctx, EventFilter{Kind: EventOrphanRevoked}, func(e Event) error {
		events = append(events, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 {
		t.Fatalf("orphan_revoked events = %d, want 2", len(events))
	}
	// An orphan has no lease: the plugin gets no role, spec or state.
	if req := p.lastRequest(t, "cb_nolease_aaaaaaaaaa"); req.Role != "" || req.Spec != nil || req.State != nil {
		t.Errorf("orphan revoke request = %+v, want only the username", req)
	}
	if got := metricValue(t, reg, "credbroker_sweep_orphans_revoked_total", map[string]string{"backend": "orders-pg"}); got != 2 {
		t.Errorf("orphan metric = %v, want 2", got)
	}
	if _, err := s.VerifyChain(ctx); err != nil {
		t.Errorf("VerifyChain: %v", err)
	}

	// Two replicas sweeping at once revoke each orphan once.
	p.managed = append(p.managed, plugins.ManagedUser{Username: "cb_twice_cccccccccc"})
	r2 := newReaper(t, s, b, p, func(c *ReaperConfig) { c.Backends = func() []string { return []string{"orders-pg"} } })
	var wg sync.WaitGroup
	for _, rr := range []*Reaper{r, r2} {
		wg.Go(func() {
			if _, err := rr.Sweep(ctx); err != nil {
				t.Errorf("Sweep: %v", err)
			}
		})
	}
	wg.Wait()
	if c := p.calls("cb_twice_cccccccccc"); c != 1 {
		t.Errorf("orphan revoked %d times by two sweeping replicas, want 1", c)
	}
}
