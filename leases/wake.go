package leases

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// minReaperWait is the shortest the reaper sleeps between passes, so a due
// lease another replica holds (claimed, not yet revoked) does not make it
// spin.
const minReaperWait = 20 * time.Millisecond

// wakeup lets the reaper sleep until the next lease is due instead of
// polling, and be woken early when this process writes a lease that is due
// sooner than it planned to wake (an issue with a short TTL, a failed issue
// handed to the reaper). Leases other replicas write are found at the next
// pass, which is never later than the reaper's interval: each replica's own
// reaper is woken by its own writes.
type wakeup struct {
	mu sync.Mutex
	// at is when the reaper plans to wake; zero while a pass runs, so a
	// write during a pass wakes it again at once.
	at time.Time
	ch chan struct{}
}

func newWakeup() *wakeup { return &wakeup{ch: make(chan struct{}, 1)} }

// due tells the reaper that a lease is due at t. It wakes the reaper when
// that is before the reaper's planned wake. Safe on a nil wakeup.
func (w *wakeup) due(t time.Time) {
	if w == nil {
		return
	}
	w.mu.Lock()
	soon := w.at.IsZero() || t.Before(w.at)
	w.mu.Unlock()
	if soon {
		select {
		case w.ch <- struct{}{}:
		default: // a wake is already pending
		}
	}
}

// passing marks the start of a reaper pass.
func (w *wakeup) passing() {
	w.mu.Lock()
	w.at = time.Time{}
	w.mu.Unlock()
}

// sleeping records when the reaper plans to wake.
func (w *wakeup) sleeping(at time.Time) {
	w.mu.Lock()
	w.at = at
	w.mu.Unlock()
}

// nextDue returns when the earliest lease that the reaper would claim
// becomes due: the earliest expiry of an ACTIVE lease, creation plus
// pendingGrace of a PENDING one, or retry time of a REVOKING one (a claimed
// lease's is its claim's end). Zero when no lease is left to reap.
func (s *Store) nextDue(ctx context.Context, pendingGrace time.Duration) (time.Time, error) {
	var next *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT LEAST(
			(SELECT min(expires_at) FROM leases WHERE state = 'ACTIVE'),
			(SELECT min(created_at) FROM leases WHERE state = 'PENDING') + $1::bigint * interval '1 microsecond',
			(SELECT min(next_attempt_at) FROM leases WHERE state = 'REVOKING'))`,
		pendingGrace.Microseconds()).Scan(&next)
	if err != nil {
		return time.Time{}, fmt.Errorf("find the next due lease: %w", err)
	}
	if next == nil {
		return time.Time{}, nil
	}
	return *next, nil
}
