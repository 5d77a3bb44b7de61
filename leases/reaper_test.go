package leases

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credbroker/credbroker/plugins"
)

// newReaper returns a reaper on s with the bundle's clock and the fake plugin
// serving backend orders-pg.
func newReaper(t *testing.T, s *Store, b *testBundle, p plugins.Plugin, edit func(*ReaperConfig)) *Reaper {
	t.Helper()
	cfg := ReaperConfig{Store: s, Plugin: lookup(p, "orders-pg"), Now: b.clock.Now}
	if edit != nil {
		edit(&cfg)
	}
	r, err := NewReaper(cfg)
	if err != nil {
		t.Fatalf("NewReaper: %v", err)
	}
	return r
}

func runOnce(t *testing.T, r *Reaper) (revoked, failed int) {
	t.Helper()
	revoked, failed, err := r.RunOnce(t.Context())
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	return revoked, failed
}

// metricValue reads one sample of a counter or gauge from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func TestNewReaper(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	p := newFakePlugin()
	cases := map[string]ReaperConfig{
		"NoStore":          {Plugin: lookup(p)},
		"NoPlugin":         {Store: s},
		"NegativeInterval": {Store: s, Plugin: lookup(p), Interval: -time.Second},
		"NegativeWorkers":  {Store: s, Plugin: lookup(p), Workers: -1},
		"MinAboveMax":      {Store: s, Plugin: lookup(p), MinBackoff: time.Hour, MaxBackoff: time.Minute},
	}
	for name, cfg := range cases {
		if _, err := NewReaper(cfg); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	r := newReaper(t, s, b, p, nil)
	got := r.cfg
	if got.Interval != 5*time.Second || got.PendingGrace != 2*time.Minute || got.Workers != 4 || got.BatchSize != 100 ||
		got.RevokeTimeout != 30*time.Second || got.ClaimTimeout != 2*time.Minute || got.MinBackoff != time.Second || got.MaxBackoff != 5*time.Minute {
		t.Errorf("defaults: %+v", got)
	}
	// Two reapers in one process share one registry.
	reg := prometheus.NewRegistry()
	for range 2 {
		newReaper(t, s, b, p, func(c *ReaperConfig) { c.Registerer = reg })
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	r := &Reaper{cfg: ReaperConfig{MinBackoff: time.Second, MaxBackoff: 10 * time.Second}}
	cases := map[string]struct {
		n        int
		min, max time.Duration
	}{
		"First":      {1, time.Second, time.Second},
		"Second":     {2, time.Second, 2 * time.Second},
		"Third":      {3, 2 * time.Second, 4 * time.Second},
		"Fourth":     {4, 4 * time.Second, 8 * time.Second},
		"Capped":     {5, 5 * time.Second, 10 * time.Second},
		"FarCapped":  {1_000_000, 5 * time.Second, 10 * time.Second},
		"Overflowed": {64, 5 * time.Second, 10 * time.Second},
	}
	for name, tc := range cases {
		for range 200 {
			if d := r.backoff(tc.n); d < tc.min || d > tc.max {
				t.Fatalf("%s: backoff(%d) = %s, want within [%s, %s]", name, tc.n, d, tc.min, tc.max)
			}
		}
	}
}

func TestReaperRevokesWhatIsDue(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	ctx := t.Context()
	p := newFakePlugin()
	reg := prometheus.NewRegistry()
	r := newReaper(t, s, b, p, func(c *ReaperConfig) { c.Registerer = reg })

	oldPending := newLease(b, time.Hour)
	if _, err := s.CreatePending(ctx, oldPending); err != nil {
		t.Fatal(err)
	}
	expiring := createActive(t, s, newLease(b, time.Minute))
	live := createActive(t, s, newLease(b, time.Hour))
	now := b.clock.Advance(3 * time.Minute) // past the 2m grace and the 1m TTL
	freshPending := newLease(b, time.Hour)
	if _, err := s.CreatePending(ctx, freshPending); err != nil {
		t.Fatal(err)
	}

	revoked, failed := runOnce(t, r)
	if revoked != 2 || failed != 0 {
		t.Fatalf("RunOnce = %d revoked, %d failed; want 2, 0", revoked, failed)
	}
	if v := metricValue(t, reg, "credbroker_reaper_backlog", nil); v != 2 {
		t.Errorf("backlog = %v, want 2", v)
	}
	if v := metricValue(t, reg, "credbroker_reaper_revokes_total", map[string]string{"backend": "orders-pg", "result": "success"}); v != 2 {
		t.Errorf("revokes_total = %v, want 2", v)
	}

	for _, tc := range []struct {
		l      Lease
		reason string
	}{{expiring, "expired"}, {oldPending, "abandoned issue"}} {
		got := mustGet(t, s, tc.l.ID)
		if got.State != StateRevoked || got.RevokeReason != tc.reason || !got.RevokedAt.Equal(now) || !got.NextAttemptAt.IsZero() {
			t.Errorf("%s lease after reaping: %+v", tc.reason, got)
		}
		if n := p.calls(tc.l.Username); n != 1 {
			t.Errorf("%s lease: %d revokes, want 1", tc.reason, n)
		}
		evs := eventsOf(t, s, tc.l.ID)
		last := evs[len(evs)-1]
		if last.Kind != "revoked" || last.Actor != "reaper" || last.Details["reason"] != tc.reason || last.Details["username"] != tc.l.Username {
			t.Errorf("%s lease: last event %+v", tc.reason, last)
		}
	}
	for _, l := range []Lease{live, freshPending} {
		if got := mustGet(t, s, l.ID); got.State == StateRevoked || got.State == StateRevoking || p.calls(l.Username) != 0 {
			t.Errorf("lease that is not due was touched: %+v", got)
		}
	}

	if revoked, failed := runOnce(t, r); revoked != 0 || failed != 0 {
		t.Fatalf("second RunOnce = %d, %d; want nothing to do", revoked, failed)
	}
	if v := metricValue(t, reg, "credbroker_leases", map[string]string{"state": "ACTIVE"}); v != 1 {
		t.Errorf("credbroker_leases{ACTIVE} = %v, want 1", v)
	}
	if _, err := s.VerifyChain(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestReaperRetriesFailuresForever(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	p := newFakePlugin()
	p.setFail(func(string) error {
		return fmt.Errorf("%w: dial postgres://admin:topsecret@db:5432/orders: connection refused", plugins.ErrUnavailable)
	})
	reg := prometheus.NewRegistry()
	r := newReaper(t, s, b, p, func(c *ReaperConfig) {
		c.MinBackoff, c.MaxBackoff, c.Registerer = time.Second, time.Hour, reg
	})
	l := createActive(t, s, newLease(b, time.Minute))
	b.clock.Advance(time.Minute)

	var prevDelay time.Duration
	const failures = 8
	for i := 1; i <= failures; i++ {
		if revoked, failed := runOnce(t, r); revoked != 0 || failed != 1 {
			t.Fatalf("attempt %d: RunOnce = %d, %d; want one failure", i, revoked, failed)
		}
		got := mustGet(t, s, l.ID)
		if got.State != StateRevoking || got.RevokeAttempts != i || got.RevokeReason != "expired" {
			t.Fatalf("attempt %d: %+v", i, got)
		}
		if strings.Contains(got.LastError, "topsecret") || !strings.Contains(got.LastError, "connection refused") {
			t.Fatalf("attempt %d: last_error %q", i, got.LastError)
		}
		delay := got.NextAttemptAt.Sub(b.clock.Now())
		ceil := time.Second << (i - 1)
		if delay < max(ceil/2, time.Second) || delay > ceil || delay < prevDelay {
			t.Fatalf("attempt %d: next attempt in %s, want within [%s, %s] and not less than %s", i, delay, ceil/2, ceil, prevDelay)
		}
		prevDelay = delay

		// Not due before its time…
		b.clock.Set(got.NextAttemptAt.Add(-time.Microsecond))
		if revoked, failed := runOnce(t, r); revoked+failed != 0 {
			t.Fatalf("attempt %d: retried before next_attempt_at", i)
		}
		// …and due at it.
		b.clock.Set(got.NextAttemptAt)
	}

	p.setFail(nil)
	if revoked, failed := runOnce(t, r); revoked != 1 || failed != 0 {
		t.Fatalf("RunOnce after recovery = %d, %d; want 1, 0", revoked, failed)
	}
	got := mustGet(t, s, l.ID)
	if got.State != StateRevoked || got.RevokeReason != "expired" || got.LastError != "" || got.RevokeAttempts != failures {
		t.Fatalf("after recovery: %+v", got)
	}
	want := "issued" + strings.Repeat(",revoke_failed", failures) + ",revoked"
	evs := eventsOf(t, s, l.ID)
	if kinds(evs) != want {
		t.Fatalf("events = %s, want %s", kinds(evs), want)
	}
	for _, e := range evs {
		if strings.Contains(fmt.Sprint(e.Details), "topsecret") {
			t.Fatalf("event leaks a secret: %+v", e)
		}
	}
	if v := metricValue(t, reg, "credbroker_reaper_revokes_total", map[string]string{"backend": "orders-pg", "result": "failure"}); v != failures {
		t.Errorf("failures counted = %v, want %d", v, failures)
	}
	if p.calls(l.Username) != failures+1 {
		t.Errorf("plugin calls = %d, want %d", p.calls(l.Username), failures+1)
	}
}

func TestReaperMissingBackendIsRetried(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	p := newFakePlugin()
	var configured atomic.Bool
	r := newReaper(t, s, b, p, func(c *ReaperConfig) {
		c.Plugin = func(name, _ string) (plugins.Plugin, any, bool) {
			if name == "orders-pg" && configured.Load() {
				return p, nil, true
			}
			return nil, nil, false
		}
	})
	l := createActive(t, s, newLease(b, time.Minute))
	b.clock.Advance(time.Minute)
	for i := 1; i <= 3; i++ {
		if revoked, failed := runOnce(t, r); revoked != 0 || failed != 1 {
			t.Fatalf("attempt %d: RunOnce = %d, %d", i, revoked, failed)
		}
		got := mustGet(t, s, l.ID)
		if got.State != StateRevoking || !strings.Contains(got.LastError, `backend "orders-pg" (plugin postgres) is not in the configuration`) {
			t.Fatalf("attempt %d: %+v", i, got)
		}
		b.clock.Set(got.NextAttemptAt)
	}
	configured.Store(true)
	if revoked, _ := runOnce(t, r); revoked != 1 {
		t.Fatalf("not revoked once the backend is back")
	}
	if got := mustGet(t, s, l.ID); got.State != StateRevoked {
		t.Fatalf("state = %s", got.State)
	}
}

func TestReaperPanickingPluginIsAFailure(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	p := newFakePlugin()
	p.hook = func(context.Context, string) { panic("plugin bug") }
	r := newReaper(t, s, b, p, nil)
	l := createActive(t, s, newLease(b, time.Minute))
	b.clock.Advance(time.Minute)
	if revoked, failed := runOnce(t, r); revoked != 0 || failed != 1 {
		t.Fatalf("RunOnce = %d, %d", revoked, failed)
	}
	if got := mustGet(t, s, l.ID); !strings.Contains(got.LastError, "panicked") {
		t.Fatalf("last_error = %q", got.LastError)
	}
}

// TestTwoReapersRevokeEachLeaseOnce runs two replicas' reapers, each with its
// own store and connection pool, concurrently over 500 due leases: every
// lease must be revoked, each exactly once.
func TestThreeReapersRevokeEachLeaseOnce(t *testing.T) {
	t.Parallel()
	s1, b := setup(t)
	stores := []*Store{s1, openStore(t, b), openStore(t, b)}
	ctx := t.Context()
	p := newFakePlugin()
	p.hook = func(context.Context, string) {
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond) // backend latency
	}

	const n = 600
	var ids []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			s := stores[w%len(stores)]
			for range n / 10 {
				l := createActive(t, s, newLease(b, time.Minute))
				mu.Lock()
				ids = append(ids, l.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	b.clock.Advance(time.Minute)

	reg := prometheus.NewRegistry()
	var reapers []*Reaper
	for _, s := range stores {
		reapers = append(reapers, newReaper(t, s, b, p, func(c *ReaperConfig) { c.BatchSize, c.Workers, c.Registerer = 40, 4, reg }))
	}
	totals := make([]int, len(reapers))
	errs := make([]error, len(reapers))
	start := make(chan struct{})
	for i, r := range reapers {
		wg.Go(func() {
			<-start
			for {
				revoked, failed, err := r.RunOnce(ctx)
				if err != nil {
					errs[i] = err
					return
				}
				if failed != 0 {
					errs[i] = fmt.Errorf("%d revokes failed", failed)
					return
				}
				totals[i] += revoked
				if revoked == 0 {
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("reaper %d: %v", i, err)
		}
	}
	if sum := totals[0] + totals[1] + totals[2]; sum != n {
		t.Fatalf("reapers revoked %v, %d in all, want %d", totals, sum, n)
	}
	if slices.Contains(totals, 0) {
		t.Logf("a reaper did none of the work (%v); the test still proves no lease was revoked twice", totals)
	}

	calls := p.snapshot()
	if len(calls) != n {
		t.Fatalf("plugin saw %d usernames, want %d", len(calls), n)
	}
	for user, c := range calls {
		if c != 1 {
			t.Errorf("%s revoked %d times, want exactly once", user, c)
		}
	}
	var revoked int
	if err := s1.pool.QueryRow(ctx, `SELECT count(*) FROM leases WHERE state = 'REVOKED'`).Scan(&revoked); err != nil || revoked != n {
		t.Fatalf("REVOKED leases: %d, %v; want %d", revoked, err, n)
	}
	var revokedEvents int
	if err := s1.Events(ctx, EventFilter{Kind: "revoked"}, func(Event) error { revokedEvents++; return nil }); err != nil {
		t.Fatal(err)
	}
	if revokedEvents != n {
		t.Fatalf("%d revoked events, want %d", revokedEvents, n)
	}
	if v := metricValue(t, reg, "credbroker_reaper_revokes_total", map[string]string{"backend": "orders-pg", "result": "success"}); v != n {
		t.Errorf("revokes_total = %v, want %d", v, n)
	}
	if _, err := stores[2].VerifyChain(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestActivateAfterReaperClaim covers an issue slower than PendingGrace: the
// reaper takes the PENDING lease, then the backend user appears. Activate
// must refuse and the user must still be revoked.
func TestActivateAfterReaperClaim(t *testing.T) {
	t.Parallel()

	t.Run("WhileRevoking", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		ctx := t.Context()
		p := newFakePlugin()
		entered, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		p.hook = func(context.Context, string) {
			once.Do(func() {
				close(entered)
				<-release
			})
		}
		r := newReaper(t, s, b, p, nil)
		l := newLease(b, time.Hour)
		if _, err := s.CreatePending(ctx, l); err != nil {
			t.Fatal(err)
		}
		b.clock.Advance(3 * time.Minute)

		type result struct{ revoked, failed int }
		done := make(chan result, 1)
		go func() {
			revoked, failed, err := r.RunOnce(ctx)
			if err != nil {
				t.Errorf("RunOnce: %v", err)
			}
			done <- result{revoked, failed}
		}()
		<-entered // the reaper is revoking; the slow Create finishes now
		got, err := s.Activate(ctx, l, "broker", []byte("late-state"), nil)
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("Activate after the reaper's claim: %v, want ErrConflict", err)
		}
		if got.State != StateRevoking || !got.NextAttemptAt.Equal(b.clock.Now()) {
			t.Fatalf("lease after the conflict: %+v", got)
		}
		close(release)
		if res := <-done; res.revoked != 0 {
			t.Fatalf("the reaper recorded a revoke that predates the user: %+v", res)
		}
		if got := mustGet(t, s, l.ID); got.State != StateRevoking {
			t.Fatalf("lease = %+v, want still REVOKING", got)
		}
		if revoked, _ := runOnce(t, r); revoked != 1 {
			t.Fatal("the lease was not revoked again")
		}
		if got := mustGet(t, s, l.ID); got.State != StateRevoked || got.RevokeReason != "abandoned issue" {
			t.Fatalf("lease = %+v", got)
		}
		if c := p.calls(l.Username); c != 2 {
			t.Fatalf("revokes = %d, want 2 (one before the user existed, one after)", c)
		}
		// The second revoke has the state of the Create that finished late.
		if req := p.lastRequest(t, l.Username); string(req.State) != "late-state" {
			t.Fatalf("the revoke after the conflict had state %q, want the late Create's", req.State)
		}
		if k := kinds(eventsOf(t, s, l.ID)); k != "issue_conflict,revoked" {
			t.Fatalf("events = %s", k)
		}
	})

	t.Run("AfterRevoked", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		ctx := t.Context()
		p := newFakePlugin()
		r := newReaper(t, s, b, p, nil)
		l := newLease(b, time.Hour)
		if _, err := s.CreatePending(ctx, l); err != nil {
			t.Fatal(err)
		}
		b.clock.Advance(3 * time.Minute)
		if revoked, _ := runOnce(t, r); revoked != 1 {
			t.Fatal("abandoned issue not revoked")
		}
		if _, err := s.Activate(ctx, l, "broker", nil, nil); !errors.Is(err, ErrConflict) {
			t.Fatalf("Activate of a REVOKED lease: %v, want ErrConflict", err)
		}
		got := mustGet(t, s, l.ID)
		if got.State != StateRevoking || !got.RevokedAt.IsZero() {
			t.Fatalf("lease = %+v, want REVOKING again", got)
		}
		if revoked, _ := runOnce(t, r); revoked != 1 {
			t.Fatal("the lease was not revoked again")
		}
		if c := p.calls(l.Username); c != 2 {
			t.Fatalf("revokes = %d, want 2", c)
		}
	})
}

func TestReaperRevoke(t *testing.T) {
	t.Parallel()

	t.Run("Now", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		p := newFakePlugin()
		r := newReaper(t, s, b, p, nil)
		l := createActive(t, s, newLease(b, time.Hour))
		got, err := r.Revoke(t.Context(), l.ID, "no longer needed", "alice")
		if err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if got.State != StateRevoked || got.RevokeReason != "no longer needed" || !got.RevokedAt.Equal(b.clock.Now()) {
			t.Fatalf("Revoke returned %+v", got)
		}
		evs := eventsOf(t, s, l.ID)
		if last := evs[len(evs)-1]; last.Kind != "revoked" || last.Actor != "alice" || last.Details["reason"] != "no longer needed" {
			t.Fatalf("last event = %+v", last)
		}

		again, err := r.Revoke(t.Context(), l.ID, "twice", "bob")
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("Revoke of a REVOKED lease = %+v, %v; want it unchanged", again, err)
		}
		if c := p.calls(l.Username); c != 1 {
			t.Fatalf("revokes = %d, want 1", c)
		}
		if _, err := r.Revoke(t.Context(), "lease_missing", "x", "alice"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Revoke of an unknown lease: %v", err)
		}
	})

	// The holder's revoke: the claim itself checks who holds the lease, so
	// someone else's lease is neither claimed nor revoked.
	t.Run("Held", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		p := newFakePlugin()
		r := newReaper(t, s, b, p, nil)
		l := createActive(t, s, newLease(b, time.Hour))
		holder := Holder{Issuer: l.Issuer, Subject: l.Subject}

		for _, other := range []Holder{{Issuer: l.Issuer, Subject: "someone-else"}, {Issuer: "other-issuer", Subject: l.Subject}} {
			got, err := r.RevokeHeld(t.Context(), l.ID, other, "mine now", "mallory")
			if !errors.Is(err, ErrNotHeld) {
				t.Fatalf("RevokeHeld by %+v: %+v, %v; want ErrNotHeld", other, got, err)
			}
		}
		if cur := mustGet(t, s, l.ID); cur.State != StateActive || cur.RevokeReason != "" || p.calls(l.Username) != 0 {
			t.Fatalf("after refused revokes: %+v, %d backend revokes; want it untouched", cur, p.calls(l.Username))
		}

		got, err := r.RevokeHeld(t.Context(), l.ID, holder, "done", "holder")
		if err != nil || got.State != StateRevoked || got.RevokeReason != "done" {
			t.Fatalf("RevokeHeld by the holder = %+v, %v", got, err)
		}
		again, err := r.RevokeHeld(t.Context(), l.ID, holder, "twice", "holder")
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("RevokeHeld of a REVOKED lease = %+v, %v; want it unchanged", again, err)
		}
		if _, err := r.RevokeHeld(t.Context(), l.ID, Holder{Issuer: "x", Subject: "y"}, "x", "x"); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("RevokeHeld of someone else's REVOKED lease: %v; want ErrNotHeld", err)
		}
		if _, err := r.RevokeHeld(t.Context(), "lease_missing", holder, "x", "x"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("RevokeHeld of an unknown lease: %v", err)
		}
		if c := p.calls(l.Username); c != 1 {
			t.Fatalf("revokes = %d, want 1", c)
		}
	})

	t.Run("BackendFailsThenReaperFinishes", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		p := newFakePlugin()
		p.setFail(func(string) error { return errors.New("connection refused") })
		r := newReaper(t, s, b, p, nil)
		l := createActive(t, s, newLease(b, time.Hour))
		got, err := r.Revoke(t.Context(), l.ID, "compromised", "sre")
		if err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if got.State != StateRevoking || got.RevokeAttempts != 1 || !strings.Contains(got.LastError, "connection refused") || got.NextAttemptAt.IsZero() {
			t.Fatalf("Revoke returned %+v", got)
		}
		// A second request while in backoff tries again and keeps the first reason.
		got, err = r.Revoke(t.Context(), l.ID, "again", "sre")
		if err != nil || got.RevokeAttempts != 2 || got.RevokeReason != "compromised" {
			t.Fatalf("second Revoke = %+v, %v", got, err)
		}

		p.setFail(nil)
		b.clock.Set(got.NextAttemptAt)
		if revoked, _ := runOnce(t, r); revoked != 1 {
			t.Fatal("the reaper did not finish the revoke")
		}
		got = mustGet(t, s, l.ID)
		if got.State != StateRevoked || got.RevokeReason != "compromised" {
			t.Fatalf("lease = %+v", got)
		}
		if k := kinds(eventsOf(t, s, l.ID)); k != "issued,revoke_failed,revoke_failed,revoked" {
			t.Fatalf("events = %s", k)
		}
	})
}

// TestReaperCancelHandsLeasesBack cancels a pass mid-batch: the lease being
// revoked and those not yet started are handed back, due now, without a
// failure counted against them.
func TestReaperCancelHandsLeasesBack(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	p := newFakePlugin()
	entered := make(chan struct{})
	var once sync.Once
	p.hook = func(ctx context.Context, _ string) {
		once.Do(func() { close(entered) })
		<-ctx.Done()
	}
	p.setFail(func(string) error { return context.Canceled })
	r := newReaper(t, s, b, p, func(c *ReaperConfig) { c.Workers = 1 })
	var ids []string
	for range 3 {
		ids = append(ids, createActive(t, s, newLease(b, time.Minute)).ID)
	}
	now := b.clock.Advance(time.Minute)

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, _, err := r.RunOnce(ctx)
		errc <- err
	}()
	<-entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunOnce after cancel: %v, want context.Canceled", err)
	}
	for _, id := range ids {
		got := mustGet(t, s, id)
		if got.State != StateRevoking || !got.NextAttemptAt.Equal(now) || got.RevokeAttempts != 0 {
			t.Errorf("lease after cancel: %+v, want REVOKING, due now, no attempt counted", got)
		}
	}
	p.hook = nil
	p.setFail(nil)
	if revoked, _ := runOnce(t, r); revoked != 3 {
		t.Fatalf("revoked %d after the restart, want 3", revoked)
	}
}

func TestReaperRun(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	p := newFakePlugin()
	r := newReaper(t, s, b, p, func(c *ReaperConfig) { c.Interval, c.BatchSize = 5*time.Millisecond, 3 })
	var ids []string
	for range 10 {
		ids = append(ids, createActive(t, s, newLease(b, time.Minute)).ID)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()

	b.clock.Advance(time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range ids {
		for mustGet(t, s, id).State != StateRevoked {
			if time.Now().After(deadline) {
				t.Fatalf("lease %s not revoked by Run", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run returned %v on cancel, want nil", err)
	}
}

// TestReaperWakesAtNextExpiry: with an interval far longer than the test,
// the reaper sleeps until the next lease is due rather than polling, and a
// lease activated while it sleeps that is due sooner wakes it.
func TestReaperWakesAtNextExpiry(t *testing.T) {
	t.Parallel()
	revokedWithin := func(t *testing.T, s *Store, id string, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for mustGet(t, s, id).State != StateRevoked {
			if time.Now().After(deadline) {
				t.Fatalf("lease %s not revoked within %s of its expiry, with the reaper's interval at an hour", id, d)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	run := func(t *testing.T, r *Reaper) {
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- r.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("Run returned %v on cancel, want nil", err)
			}
		})
	}
	hourly := func(c *ReaperConfig) { c.Interval, c.SweepInterval = time.Hour, time.Hour }

	t.Run("LeaseThere", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		r := newReaper(t, s, b, newFakePlugin(), hourly)
		l := createActive(t, s, newLease(b, 300*time.Millisecond))
		run(t, r)
		time.Sleep(50 * time.Millisecond) // the reaper has looked and gone to sleep
		b.clock.Advance(300 * time.Millisecond)
		revokedWithin(t, s, l.ID, 2*time.Second)
	})

	t.Run("LeaseIssuedWhileAsleep", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		r := newReaper(t, s, b, newFakePlugin(), hourly)
		run(t, r)
		time.Sleep(100 * time.Millisecond) // nothing to reap: asleep for the interval
		l := createActive(t, s, newLease(b, 200*time.Millisecond))
		b.clock.Advance(200 * time.Millisecond)
		revokedWithin(t, s, l.ID, 2*time.Second)
	})

	t.Run("FailedIssueWhileAsleep", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		r := newReaper(t, s, b, newFakePlugin(), hourly)
		run(t, r)
		time.Sleep(100 * time.Millisecond)
		l := newLease(b, time.Hour)
		if _, err := s.CreatePending(t.Context(), l); err != nil {
			t.Fatal(err)
		}
		if err := s.Fail(t.Context(), l.ID, "broker", "the backend refused"); err != nil {
			t.Fatal(err)
		}
		revokedWithin(t, s, l.ID, 2*time.Second)
	})
}
