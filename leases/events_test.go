package leases

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestEvents(t *testing.T) {
	t.Parallel()

	t.Run("RecordAndFilter", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		ctx := t.Context()
		l := createActive(t, s, newLease(b, time.Minute))
		t0 := b.clock.Now()
		b.clock.Advance(time.Hour)
		if err := s.RecordEvent(ctx, Event{Kind: "denied", Actor: "mallory", Details: map[string]string{"role": "orders-admin", "why": "no policy"}}); err != nil {
			t.Fatalf("RecordEvent: %v", err)
		}
		if err := s.RecordEvent(ctx, Event{LeaseID: l.ID, Kind: "break_glass", Actor: "sre", At: b.clock.Now().Add(time.Nanosecond * 1500)}); err != nil {
			t.Fatalf("RecordEvent: %v", err)
		}
		if err := s.RecordEvent(ctx, Event{}); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("RecordEvent without kind: %v", err)
		}

		all := eventsOf(t, s, "")
		if kinds(all) != "issued,denied,break_glass" {
			t.Fatalf("events = %s", kinds(all))
		}
		for i := 1; i < len(all); i++ {
			if all[i].Seq <= all[i-1].Seq {
				t.Fatalf("events not in seq order: %d after %d", all[i].Seq, all[i-1].Seq)
			}
		}
		denied := all[1]
		if denied.LeaseID != "" || denied.Actor != "mallory" || denied.Details["why"] != "no policy" || !denied.At.Equal(b.clock.Now()) {
			t.Fatalf("denied event = %+v", denied)
		}
		if want := b.clock.Now().Add(time.Microsecond); !all[2].At.Equal(want) {
			t.Fatalf("At = %s, want it truncated to %s", all[2].At, want)
		}

		collect := func(f EventFilter) string {
			var got []Event
			if err := s.Events(ctx, f, func(e Event) error { got = append(got, e); return nil }); err != nil {
				t.Fatalf("Events(%+v): %v", f, err)
			}
			return kinds(got)
		}
		if k := collect(EventFilter{Kind: "denied"}); k != "denied" {
			t.Errorf("by kind: %s", k)
		}
		if k := collect(EventFilter{LeaseID: l.ID}); k != "issued,break_glass" {
			t.Errorf("by lease: %s", k)
		}
		if k := collect(EventFilter{From: t0, To: t0.Add(time.Minute)}); k != "issued" {
			t.Errorf("by time: %s", k)
		}
		if k := collect(EventFilter{From: t0.Add(time.Minute)}); k != "denied,break_glass" {
			t.Errorf("from: %s", k)
		}

		stop := errors.New("stop")
		n := 0
		if err := s.Events(ctx, EventFilter{}, func(Event) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
			t.Fatalf("fn error: %v after %d events", err, n)
		}

		checked, err := s.VerifyChain(ctx)
		if err != nil || checked != 3 {
			t.Fatalf("VerifyChain = %d, %v", checked, err)
		}
	})

	t.Run("OddText", func(t *testing.T) {
		t.Parallel()
		s, _ := setup(t)
		ctx := t.Context()
		e := Event{Kind: "denied", Actor: "bad\x00actor\xff", Details: map[string]string{"k\x00": "ünïcode \xfe", "": ""}}
		if err := s.RecordEvent(ctx, e); err != nil {
			t.Fatalf("RecordEvent: %v", err)
		}
		if checked, err := s.VerifyChain(ctx); err != nil || checked != 1 {
			t.Fatalf("VerifyChain = %d, %v", checked, err)
		}
	})

	t.Run("AppendOnly", func(t *testing.T) {
		t.Parallel()
		s, _ := setup(t)
		ctx := t.Context()
		if err := s.RecordEvent(ctx, Event{Kind: "denied"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Seal(ctx); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			`UPDATE lease_events SET actor = 'someone else'`,
			`DELETE FROM lease_events`,
			`TRUNCATE lease_events`,
		} {
			if _, err := s.pool.Exec(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Errorf("%s: %v, want the append-only trigger to refuse", q, err)
			}
		}
	})

	t.Run("ConcurrentReplicasKeepOneChain", func(t *testing.T) {
		t.Parallel()
		s1, b := setup(t)
		s2 := openStore(t, b)
		ctx := t.Context()
		const writers, each = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			s := s1
			if w%2 == 1 {
				s = s2
			}
			wg.Go(func() {
				for i := range each {
					if w%4 == 0 {
						// Appends inside lease transactions interleave with bare ones.
						l := newLease(b, time.Minute)
						if _, err := s.CreatePending(ctx, l); err != nil {
							errs <- err
							return
						}
						if _, err := s.Activate(ctx, l, "broker", nil, nil); err != nil {
							errs <- err
							return
						}
						continue
					}
					if err := s.RecordEvent(ctx, Event{Kind: "denied", Actor: fmt.Sprintf("w%d", w), Details: map[string]string{"i": fmt.Sprint(i)}}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		checked, err := s2.VerifyChain(ctx)
		if err != nil || checked != writers*each {
			t.Fatalf("VerifyChain = %d, %v; want %d, nil", checked, err, writers*each)
		}
	})

	t.Run("TamperingIsDetected", func(t *testing.T) {
		t.Parallel()
		cases := map[string]struct {
			// tamper runs with triggers disabled (session_replication_role =
			// replica), as a superuser could.
			tamper  string
			wantSeq int64
		}{
			"AlteredDetails":      {`UPDATE lease_events SET details = '{"role":"harmless"}' WHERE seq = 3`, 3},
			"AlteredActor":        {`UPDATE lease_events SET actor = 'nobody' WHERE seq = 4`, 4},
			"AlteredTime":         {`UPDATE lease_events SET at = at - interval '1 day' WHERE seq = 2`, 2},
			"RemovedEvent":        {`DELETE FROM lease_events WHERE seq = 3`, 4},
			"RemovedFirst":        {`DELETE FROM lease_events WHERE seq = 1`, 2},
			"RehashedEvent":       {`UPDATE lease_events SET actor = 'nobody', hash = sha256(hash) WHERE seq = 3`, 3},
			"ReplacedLeaseID":     {`UPDATE lease_events SET lease_id = 'lease_other' WHERE seq = 5`, 5},
			"MovedToAnotherChain": {`UPDATE lease_events SET chain = (chain + 1) % 16 WHERE seq = 4`, 4},
		}
		for name, tc := range cases {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				s, b := setup(t)
				ctx := t.Context()
				// One lease's events share one chain.
				for range 6 {
					b.clock.Advance(time.Second)
					if err := s.RecordEvent(ctx, Event{LeaseID: "lease_1", Kind: "denied", Actor: "a", Details: map[string]string{"role": "orders-admin"}}); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := s.VerifyChain(ctx); err != nil {
					t.Fatalf("VerifyChain before tampering: %v", err)
				}
				err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, tc.tamper)
					return err
				})
				if err != nil {
					t.Fatalf("tamper: %v", err)
				}
				checked, err := s.VerifyChain(ctx)
				if !errors.Is(err, ErrChainBroken) {
					t.Fatalf("VerifyChain after tampering = %d, %v; want ErrChainBroken", checked, err)
				}
				if want := fmt.Sprintf("at seq %d:", tc.wantSeq); !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not name %q", err, want)
				}
			})
		}
	})
}

func TestCheckpointCoversChainHeads(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	ctx := t.Context()
	record := func(lease string) {
		t.Helper()
		b.clock.Advance(time.Second)
		if err := s.RecordEvent(ctx, Event{LeaseID: lease, Kind: "renewed", Actor: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		record(fmt.Sprintf("lease_%d", i)) // spread over the chains
	}
	var chains = map[int]bool{}
	if err := s.Events(ctx, EventFilter{}, func(e Event) error { chains[e.Chain] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(chains) < 4 {
		t.Fatalf("20 leases landed in %d chains; appends are not spread", len(chains))
	}
	wrote, err := s.Checkpoint(ctx)
	if err != nil || !wrote {
		t.Fatalf("Checkpoint = %v, %v", wrote, err)
	}
	if wrote, err := s.Checkpoint(ctx); err != nil || wrote {
		t.Fatalf("a second Checkpoint with nothing new = %v, %v; want false", wrote, err)
	}
	record("lease_after")
	if _, err := s.VerifyChain(ctx); err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}

	// The newest event of a chain nothing was appended to after the
	// checkpoint is removed: its chain alone cannot tell, the checkpoint can.
	var victim int64
	if err := s.pool.QueryRow(ctx, `
		WITH cp AS (SELECT seq FROM lease_events WHERE kind = 'checkpoint')
		SELECT max(seq) FROM lease_events
		WHERE chain NOT IN (SELECT chain FROM lease_events WHERE seq >= (SELECT seq FROM cp))
		GROUP BY chain ORDER BY 1 LIMIT 1`).Scan(&victim); err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM lease_events WHERE seq = $1`, victim)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.VerifyChain(ctx)
	if !errors.Is(err, ErrChainBroken) || !strings.Contains(err.Error(), fmt.Sprintf("records seq %d", victim)) {
		t.Fatalf("VerifyChain after removing a checkpointed head = %v; want ErrChainBroken naming seq %d", err, victim)
	}
}
