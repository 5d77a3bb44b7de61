package leases

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// TestRenewCallsFnOutsideAnyTransaction: while fn (the backend call) runs,
// the lease's row is not locked and the store holds no connection for the
// renewal, so a backend that stalls cannot freeze other callers.
func TestRenewCallsFnOutsideAnyTransaction(t *testing.T) {
	t.Parallel()
	b := &testBundle{dsn: testDatabase(t), clock: newTestClock()}
	s, err := Open(t.Context(), Config{DSN: b.dsn, Now: b.clock.Now, MaxConns: 1})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	l := createActive(t, s, newLease(b, 10*time.Minute))

	_, err = s.Renew(t.Context(), l.ID, "holder", func(cur Lease) (Renewal, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		// The only connection of the pool is free: another caller's read
		// gets it at once.
		if _, err := s.Get(ctx, l.ID); err != nil {
			t.Errorf("another caller's Get while fn runs: %v (the renewal holds the pool's only connection)", err)
		}
		// And nobody holds the row: a NOWAIT lock from outside succeeds.
		conn, err := pgxpool.New(ctx, b.dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		if _, err := tx.Exec(ctx, `SELECT 1 FROM leases WHERE id = $1 FOR UPDATE NOWAIT`, l.ID); err != nil {
			t.Errorf("lock the lease's row while fn runs: %v (the renewal holds it)", err)
		}
		return Renewal{ExpiresAt: b.clock.Now().Add(20 * time.Minute)}, nil
	})
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
}

func TestRenewLostRace(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	replica := openStore(t, b)
	ctx := t.Context()

	// The broker hands over the lease it read to check the holder; when a
	// replica renewed it since, that stale copy loses the compare-and-set
	// and the next round reads the lease afresh.
	t.Run("StaleSeenLeaseIsReadAgain", func(t *testing.T) {
		l := createActive(t, s, newLease(b, 10*time.Minute))
		fast := b.clock.Now().Add(25 * time.Minute)
		if _, err := replica.Renew(ctx, l.ID, "fast", func(Lease) (Renewal, error) {
			return Renewal{ExpiresAt: fast}, nil
		}); err != nil {
			t.Fatal(err)
		}
		var seen []time.Time
		got, err := s.RenewSeen(ctx, l, "slow", func(cur Lease) (Renewal, error) {
			seen = append(seen, cur.ExpiresAt)
			return Renewal{ExpiresAt: cur.ExpiresAt.Add(time.Minute)}, nil
		})
		if err != nil {
			t.Fatalf("RenewSeen: %v", err)
		}
		if len(seen) != 2 || !seen[0].Equal(l.ExpiresAt) || !seen[1].Equal(fast) {
			t.Fatalf("fn saw expiries %v, want [%s %s]", seen, l.ExpiresAt, fast)
		}
		if want := fast.Add(time.Minute); !got.ExpiresAt.Equal(want) {
			t.Fatalf("expires_at = %s, want %s", got.ExpiresAt, want)
		}
	})

	t.Run("RenewedMeanwhileIsRetried", func(t *testing.T) {
		l := createActive(t, s, newLease(b, 10*time.Minute))
		var seen []time.Time
		got, err := s.Renew(ctx, l.ID, "slow", func(cur Lease) (Renewal, error) {
			seen = append(seen, cur.ExpiresAt)
			if len(seen) == 1 {
				// Another replica renews the same lease while our backend
				// call is under way, and wins.
				if _, err := replica.Renew(ctx, l.ID, "fast", func(Lease) (Renewal, error) {
					return Renewal{ExpiresAt: b.clock.Now().Add(25 * time.Minute)}, nil
				}); err != nil {
					t.Fatalf("concurrent Renew: %v", err)
				}
			}
			next := b.clock.Now().Add(15 * time.Minute)
			if next.Before(cur.ExpiresAt) {
				next = cur.ExpiresAt // renewal never moves the expiry back
			}
			return Renewal{ExpiresAt: next}, nil
		})
		if err != nil {
			t.Fatalf("Renew: %v", err)
		}
		fast := b.clock.Now().Add(25 * time.Minute)
		if len(seen) != 2 || !seen[0].Equal(l.ExpiresAt) || !seen[1].Equal(fast) {
			t.Fatalf("fn saw expiries %v, want [%s %s]: the lost race must call fn again with the winner's lease", seen, l.ExpiresAt, fast)
		}
		// Never moved backwards by the loser.
		if !got.ExpiresAt.Equal(fast) || !mustGet(t, s, l.ID).ExpiresAt.Equal(fast) {
			t.Fatalf("expires_at = %s, want the winner's %s", got.ExpiresAt, fast)
		}
		evs := eventsOf(t, s, l.ID)
		if kinds(evs) != "issued,renewed,renewed" || evs[1].Actor != "fast" || evs[2].Actor != "slow" {
			t.Fatalf("events = %s", kinds(evs))
		}
	})

	t.Run("RenewedEveryTimeGivesConflict", func(t *testing.T) {
		l := createActive(t, s, newLease(b, 10*time.Minute))
		calls := 0
		_, err := s.Renew(ctx, l.ID, "loser", func(cur Lease) (Renewal, error) {
			calls++
			if _, err := s.pool.Exec(ctx, `UPDATE leases SET expires_at = expires_at + interval '1 second' WHERE id = $1`, l.ID); err != nil {
				t.Fatal(err)
			}
			return Renewal{ExpiresAt: cur.ExpiresAt.Add(time.Minute)}, nil
		})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("Renew: %v, want ErrConflict", err)
		}
		if calls != renewAttempts {
			t.Errorf("fn called %d times, want %d", calls, renewAttempts)
		}
		if k := kinds(eventsOf(t, s, l.ID)); k != "issued" {
			t.Errorf("events = %s: a lost race recorded a renewal", k)
		}
	})

	t.Run("ExpiredMeanwhile", func(t *testing.T) {
		l := createActive(t, s, newLease(b, time.Minute))
		calls := 0
		_, err := s.Renew(ctx, l.ID, "holder", func(cur Lease) (Renewal, error) {
			calls++
			b.clock.Advance(2 * time.Minute) // the backend took longer than the lease had left
			return Renewal{ExpiresAt: b.clock.Now().Add(10 * time.Minute)}, nil
		})
		if !errors.Is(err, ErrNotActive) {
			t.Fatalf("Renew: %v, want ErrNotActive", err)
		}
		if calls != 1 {
			t.Errorf("fn called %d times, want 1", calls)
		}
		if got := mustGet(t, s, l.ID); !got.ExpiresAt.Equal(l.ExpiresAt) || got.State != StateActive {
			t.Errorf("an expired lease was renewed: %+v", got)
		}
		if k := kinds(eventsOf(t, s, l.ID)); k != "issued" {
			t.Errorf("events = %s", k)
		}
	})

	t.Run("RevokedMeanwhile", func(t *testing.T) {
		l := createActive(t, s, newLease(b, 10*time.Minute))
		_, err := s.Renew(ctx, l.ID, "holder", func(cur Lease) (Renewal, error) {
			if _, _, err := s.claimOne(ctx, l.ID, "revoked by admin", b.clock.Now().Add(time.Minute), nil); err != nil {
				t.Fatal(err)
			}
			return Renewal{ExpiresAt: b.clock.Now().Add(20 * time.Minute)}, nil
		})
		if !errors.Is(err, ErrNotActive) {
			t.Fatalf("Renew: %v, want ErrNotActive", err)
		}
		if got := mustGet(t, s, l.ID); got.State != StateRevoking || !got.ExpiresAt.Equal(l.ExpiresAt) {
			t.Errorf("lease after a renewal lost to a revoke: %+v", got)
		}
	})
}

// TestReaperHasItsOwnPool: with every connection of the store's pool held by
// callers, the reaper still claims, revokes and records.
func TestReaperHasItsOwnPool(t *testing.T) {
	t.Parallel()
	b := &testBundle{dsn: testDatabase(t), clock: newTestClock()}
	s, err := Open(t.Context(), Config{DSN: b.dsn, Now: b.clock.Now, MaxConns: 2})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	p := newFakePlugin()
	r := newReaper(t, s, b, p, nil)
	l := createActive(t, s, newLease(b, time.Minute))
	b.clock.Advance(2 * time.Minute)

	var held []*pgxpool.Conn
	for range 2 {
		c, err := s.pool.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Release()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	revoked, failed, err := r.RunOnce(ctx)
	if err != nil || revoked != 1 || failed != 0 {
		t.Fatalf("RunOnce with the API pool exhausted: revoked %d, failed %d, %v", revoked, failed, err)
	}
	if p.calls(l.Username) != 1 {
		t.Errorf("backend revokes of %s: %d", l.Username, p.calls(l.Username))
	}
	for _, c := range held {
		c.Release()
	}
	held = nil
	if got := mustGet(t, s, l.ID); got.State != StateRevoked {
		t.Errorf("lease is %s, want REVOKED", got.State)
	}
}

func TestDenialsAreAggregated(t *testing.T) {
	t.Parallel()
	b := &testBundle{dsn: testDatabase(t), clock: newTestClock()}
	b.clock.Set(time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC))
	open := func() *Store {
		s, err := Open(t.Context(), Config{DSN: b.dsn, Now: b.clock.Now, DenialKeys: 2, DenialFlushInterval: time.Hour})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	}
	s := open()
	ctx := t.Context()
	denied := func(st *Store) []Event {
		var out []Event
		if err := st.Events(ctx, EventFilter{Kind: EventDenied}, func(e Event) error { out = append(out, e); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}

	for i := range 1000 {
		s.CountDenial("test:alice", "reports")
		if i%2 == 0 {
			s.CountDenial("test:bob", "reports")
		}
		if i%10 == 0 {
			b.clock.Advance(time.Millisecond)
		}
	}
	for i := range 5 { // the map is full: counted, not itemized
		s.CountDenial("test:mallory-"+strconv.Itoa(i), "reports")
	}
	// The minute has not ended: nothing is written yet.
	if err := s.flushDenials(ctx, false); err != nil {
		t.Fatal(err)
	}
	if evs := denied(s); len(evs) != 0 {
		t.Fatalf("%d denied events before the minute ended", len(evs))
	}
	b.clock.Advance(time.Minute)
	if err := s.flushDenials(ctx, false); err != nil {
		t.Fatal(err)
	}
	evs := denied(s)
	got := map[string]string{}
	for _, e := range evs {
		got[e.Actor] = e.Details["count"]
		if e.Details["first_at"] == "" || e.Details["last_at"] == "" {
			t.Errorf("event %+v has no first_at/last_at", e)
		}
	}
	want := map[string]string{"test:alice": "1000", "test:bob": "500", overflowActor: "5"}
	if len(evs) != 3 || got["test:alice"] != want["test:alice"] || got["test:bob"] != want["test:bob"] || got[overflowActor] != want[overflowActor] {
		t.Fatalf("denied events: %v, want one per identity with counts %v", got, want)
	}
	// Close writes what is left, including the current minute's.
	s.CountDenial("test:alice", "reports")
	s.Close()
	s = open()
	t.Cleanup(s.Close)
	if evs := denied(s); len(evs) != 4 || evs[3].Actor != "test:alice" || evs[3].Details["count"] != "1" {
		t.Fatalf("after Close: %d denied events %+v, want the last minute's too", len(evs), evs)
	}
	if _, err := s.VerifyChain(ctx); err != nil {
		t.Fatal(err)
	}
}
