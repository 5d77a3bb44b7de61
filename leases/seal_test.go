package leases

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// queuedCount returns how many events wait in the queue.
func queuedCount(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(t.Context(), `SELECT count(*) FROM lease_event_queue`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// sealedCount returns how many events the hash-chained history holds.
func sealedCount(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(t.Context(), `SELECT count(*) FROM lease_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSealer(t *testing.T) {
	t.Parallel()

	// A broker that committed events and died before its sealer ran: the
	// events wait in the queue, and another replica seals them into a chain
	// that verifies.
	t.Run("CrashBetweenCommitAndSeal", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		ctx := t.Context()
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			for i := range 5 {
				b.clock.Advance(time.Second)
				e := Event{LeaseID: "lease_dead", Kind: "renewed", Actor: "a", At: b.clock.Now(), Details: map[string]string{"i": fmt.Sprint(i)}}
				if err := enqueueEvent(ctx, tx, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// Nobody poked a sealer: the events are committed but unsealed.
		if q := queuedCount(t, s); q != 5 {
			t.Fatalf("queued = %d, want 5", q)
		}
		replica := openStore(t, b)
		if err := replica.Seal(ctx); err != nil {
			t.Fatal(err)
		}
		if q, n := queuedCount(t, s), sealedCount(t, s); q != 0 || n != 5 {
			t.Fatalf("after sealing: queued %d, sealed %d; want 0, 5", q, n)
		}
		if checked, err := s.VerifyChain(ctx); err != nil || checked != 5 {
			t.Fatalf("VerifyChain = %d, %v; want 5, nil", checked, err)
		}
		var got []string
		err = s.Events(ctx, EventFilter{LeaseID: "lease_dead"}, func(e Event) error {
			got = append(got, e.Details["i"])
			return nil
		})
		if err != nil || fmt.Sprint(got) != "[0 1 2 3 4]" {
			t.Fatalf("events in order %v, %v; want [0 1 2 3 4]", got, err)
		}
	})

	// A sealer that dies mid-batch rolls the batch back: the events are
	// queued again, nothing half-sealed is left, and the next seal works.
	t.Run("CrashWhileSealing", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		ctx := t.Context()
		createActive(t, s, newLease(b, time.Minute))
		if err := s.Seal(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := s.RecordEvent(ctx, Event{Kind: "denied", Actor: fmt.Sprint("a", i)}); err != nil {
				t.Fatal(err)
			}
		}
		errCrash := errors.New("the sealer died")
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := lockSealer(ctx, tx, true); err != nil {
				return err
			}
			if _, err := sealTx(ctx, tx, sealBatch); err != nil {
				return err
			}
			return errCrash
		})
		if !errors.Is(err, errCrash) {
			t.Fatalf("sealing transaction: %v", err)
		}
		if checked, err := s.VerifyChain(ctx); err != nil || checked != 4 {
			t.Fatalf("VerifyChain = %d, %v; want 4 (issued + 3 denied), nil", checked, err)
		}
	})

	// Several replicas write lease events while each seals in the
	// background: every event is sealed exactly once, the chains verify,
	// and each lease's events keep the order they happened in.
	t.Run("ReplicasSealConcurrently", func(t *testing.T) {
		t.Parallel()
		_, b := setup(t)
		stores := []*Store{openStore(t, b), openStore(t, b), openStore(t, b)}
		ctx := t.Context()
		const workers, each = 6, 15
		var wg sync.WaitGroup
		errs := make(chan error, workers+1)
		// Checkpoints are written all along, as every replica's reaper
		// does: each must record heads that the events sealed before it
		// in seq order end at (an earlier release could record a head
		// while an event with a lower seq was still uncommitted).
		done := make(chan struct{})
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := stores[1].Checkpoint(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
		var writers sync.WaitGroup
		for w := range workers {
			s := stores[w%len(stores)]
			writers.Go(func() {
				for range each {
					if err := issueRenewRevoke(ctx, s, b); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		writers.Wait()
		close(done)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var checkpoints int64
		if err := stores[0].pool.QueryRow(ctx, `SELECT count(*) FROM lease_events WHERE kind = 'checkpoint'`).Scan(&checkpoints); err != nil {
			t.Fatal(err)
		}
		if checked, err := stores[0].VerifyChain(ctx); err != nil || checked != workers*each*3+checkpoints {
			t.Fatalf("VerifyChain = %d, %v; want %d (%d checkpoints), nil", checked, err, workers*each*3+checkpoints, checkpoints)
		}
		t.Logf("%d checkpoints among the events", checkpoints)
		// issued < renewed < revoked in seq, for every lease.
		rows, err := stores[1].pool.Query(ctx, `
			SELECT lease_id FROM lease_events WHERE lease_id IS NOT NULL GROUP BY lease_id
			HAVING array_agg(kind ORDER BY seq) <> ARRAY['issued', 'renewed', 'revoked']`)
		if err != nil {
			t.Fatal(err)
		}
		bad, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(bad) > 0 {
			t.Fatalf("leases whose history is out of order: %v, %v", bad, err)
		}
	})

	// Closing a store seals what it queued: nothing waits for another
	// replica after a clean shutdown.
	t.Run("CloseSeals", func(t *testing.T) {
		t.Parallel()
		_, b := setup(t)
		s, err := Open(t.Context(), Config{DSN: b.dsn, Now: b.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RecordEvent(t.Context(), Event{Kind: "denied", Actor: "x"}); err != nil {
			s.Close()
			t.Fatal(err)
		}
		s.Close()
		other := openStore(t, b)
		if q, n := queuedCount(t, other), sealedCount(t, other); q != 0 || n != 1 {
			t.Fatalf("after Close: queued %d, sealed %d; want 0, 1", q, n)
		}
	})
}

// issueRenewRevoke takes one lease through its whole life on s, as the
// broker and the reaper would.
func issueRenewRevoke(ctx context.Context, s *Store, b *testBundle) error {
	l, err := s.CreatePending(ctx, newLease(b, time.Minute))
	if err != nil {
		return err
	}
	if l, err = s.Activate(ctx, l, "broker", nil, nil); err != nil {
		return err
	}
	_, err = s.Renew(ctx, l.ID, "holder", func(cur Lease) (Renewal, error) {
		return Renewal{ExpiresAt: cur.ExpiresAt.Add(time.Second)}, nil
	})
	if err != nil {
		return err
	}
	claimed, ok, err := s.claimOne(ctx, l.ID, "revoked by holder", b.clock.Now().Add(time.Minute), &Holder{Issuer: l.Issuer, Subject: l.Subject})
	if err != nil || !ok {
		return fmt.Errorf("claim %s: %v, %v", l.ID, ok, err)
	}
	_, err = s.finishRevoked(ctx, claimed, b.clock.Now(), "holder")
	return err
}

// A checkpoint records the chains' heads it read; an event committed to the
// queue after that read must be sealed after the checkpoint, never between
// the read and the checkpoint's own seq, or the verifier finds a head the
// checkpoint did not name. Not parallel: it sets the package's hook.
func TestCheckpointRacesAQueuedEvent(t *testing.T) {
	s, b := setup(t)
	other := openStore(t, b)
	ctx := t.Context()
	for i := range 4 {
		createActive(t, s, newLease(b, time.Minute))
		if _, err := s.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		// Between the heads' read and the checkpoint's seal, a replica
		// commits an event of every chain.
		var hookErr error
		checkpointHook = func() {
			for c := range eventChains {
				if err := other.RecordEvent(ctx, Event{Kind: "denied", Actor: fmt.Sprintf("racer-%d-%d", i, c)}); err != nil {
					hookErr = err
				}
			}
		}
		createActive(t, s, newLease(b, time.Minute))
		wrote, err := s.Checkpoint(ctx)
		checkpointHook = func() {}
		if err != nil || hookErr != nil || !wrote {
			t.Fatalf("iteration %d: Checkpoint = %v, %v (hook: %v); want a checkpoint written", i, wrote, err, hookErr)
		}
	}
	if _, err := other.VerifyChain(ctx); err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}
}

// The reaper reports how long the oldest event has waited for the sealer,
// so an operator can alarm on a history that stops being chained.
func TestUnsealedAgeMetric(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	ctx := t.Context()
	reg := prometheus.NewRegistry()
	r := newReaper(t, s, b, newFakePlugin(), func(c *ReaperConfig) { c.Registerer = reg })

	// Another session holds the sealer's lock: nothing gets sealed.
	blocker, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = blocker.Rollback(context.Background()) }()
	if _, err := lockSealer(ctx, blocker, true); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordEvent(ctx, Event{Kind: "denied", Actor: "a"}); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(90 * time.Second)
	runOnce(t, r)
	if v := metricValue(t, reg, "credbroker_events_unsealed_age_seconds", nil); v != 90 {
		t.Fatalf("unsealed age = %v, want 90 while the sealer is blocked", v)
	}

	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	runOnce(t, r)
	if v := metricValue(t, reg, "credbroker_events_unsealed_age_seconds", nil); v != 0 {
		t.Fatalf("unsealed age = %v, want 0 once sealed", v)
	}
}
