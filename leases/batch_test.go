package leases

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Group commit under concurrency: many callers create and activate leases at
// once, so their writes share statements; each gets its own lease back, a
// caller whose row fails (a duplicate username) gets its own error while the
// rest of its batch succeeds, an activation of a lease the reaper already
// took gets the conflict path, and the history holds exactly one `issued`
// event per activated lease.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	ctx := t.Context()

	// A lease the reaper takes before its activation.
	taken, err := s.CreatePending(ctx, newLease(b, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, claimed, err := s.claimOne(ctx, taken.ID, "abandoned issue", b.clock.Now().Add(time.Minute), nil); err != nil || !claimed {
		t.Fatalf("claim: %v, %v", claimed, err)
	}
	// A username already leased, which one caller will try to take again.
	dup, err := s.CreatePending(ctx, newLease(b, time.Minute))
	if err != nil {
		t.Fatal(err)
	}

	const workers, each = 16, 20
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		activated = map[string]bool{}
		errs      = make(chan error, workers*each+2)
	)
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range each {
				in := newLease(b, time.Minute)
				in.Subject = fmt.Sprintf("w%d-%d", w, i)
				p, err := s.CreatePending(ctx, in)
				if err != nil {
					errs <- fmt.Errorf("CreatePending %s: %w", in.ID, err)
					return
				}
				if p.ID != in.ID || p.Username != in.Username || p.Subject != in.Subject || p.State != StatePending {
					errs <- fmt.Errorf("CreatePending of %s/%s returned %s/%s (%s): another caller's row", in.ID, in.Subject, p.ID, p.Subject, p.State)
					return
				}
				a, err := s.Activate(ctx, p, "broker", []byte(in.Subject), nil)
				if err != nil {
					errs <- fmt.Errorf("Activate %s: %w", p.ID, err)
					return
				}
				if a.ID != p.ID || a.State != StateActive || string(a.PluginState) != in.Subject {
					errs <- fmt.Errorf("Activate of %s returned %s (%s, state %q)", p.ID, a.ID, a.State, a.PluginState)
					return
				}
				mu.Lock()
				activated[a.ID] = true
				mu.Unlock()
			}
		})
	}
	// Among them, the two that must fail alone.
	wg.Go(func() {
		<-start
		again := newLease(b, time.Minute)
		again.Username = dup.Username
		if _, err := s.CreatePending(ctx, again); !errors.Is(err, ErrConflict) {
			errs <- fmt.Errorf("CreatePending of a leased username: %v, want ErrConflict", err)
		}
		if got, err := s.Activate(ctx, taken, "broker", nil, nil); !errors.Is(err, ErrConflict) || got.State != StateRevoking {
			errs <- fmt.Errorf("Activate of a lease the reaper took: %s, %v; want REVOKING and ErrConflict", got.State, err)
		}
	})
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if len(activated) != workers*each {
		t.Fatalf("%d leases activated, want %d", len(activated), workers*each)
	}
	// The point of it all: writes did share statements.
	shared := [2]int64{s.writes.pending.shared.Load(), s.writes.activations.shared.Load()}
	if shared[0] == 0 || shared[1] == 0 {
		t.Fatalf("requests answered by shared statements: %d creates, %d activations; want some of each", shared[0], shared[1])
	}
	t.Logf("requests answered by shared statements: %d of %d creates, %d of %d activations", shared[0], workers*each+2, shared[1], workers*each+1)
	issued := 0
	err = s.Events(ctx, EventFilter{Kind: "issued"}, func(e Event) error {
		if !activated[e.LeaseID] {
			return fmt.Errorf("issued event for %s, which no caller activated", e.LeaseID)
		}
		issued++
		return nil
	})
	if err != nil || issued != workers*each {
		t.Fatalf("issued events: %d, %v; want %d", issued, err, workers*each)
	}
	if _, err := s.VerifyChain(ctx); err != nil {
		t.Fatal(err)
	}
}

// A caller that gives up while its write is still queued gets its context's
// error and nothing is written for it.
func TestGroupCommitCancelled(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	l := newLease(b, time.Minute)
	if _, err := s.CreatePending(ctx, l); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreatePending with a cancelled context: %v", err)
	}
	if _, err := s.Get(t.Context(), l.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the cancelled lease was written: %v", err)
	}
}
