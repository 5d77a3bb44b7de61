package leases

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOpen(t *testing.T) {
	t.Parallel()

	t.Run("UnreachableIsAClearError", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_, err := Open(ctx, Config{DSN: "postgres://broker:s3cretpw@127.0.0.1:1/leases?sslmode=disable&connect_timeout=2"})
		if err == nil {
			t.Fatal("Open of a closed port succeeded")
		}
		msg := err.Error()
		if !strings.Contains(msg, "cannot reach the lease store at 127.0.0.1:1/leases") {
			t.Errorf("error does not say where: %v", err)
		}
		if strings.Contains(msg, "s3cretpw") {
			t.Errorf("error leaks the password: %v", err)
		}
	})

	t.Run("EmptyDSN", func(t *testing.T) {
		t.Parallel()
		if _, err := Open(t.Context(), Config{}); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("Open with no DSN: %v, want ErrInvalidArgument", err)
		}
	})

	t.Run("PingAndReopen", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		if err := s.Ping(t.Context()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		// A second Open finds the schema in place.
		s2 := openStore(t, b)
		if err := s2.Ping(t.Context()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
}

func TestNewID(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if !strings.HasPrefix(id, "lease_") || len(id) != len("lease_")+26 || strings.ToLower(id) != id {
			t.Fatalf("NewID() = %q", id)
		}
		if seen[id] {
			t.Fatalf("NewID repeated %q", id)
		}
		seen[id] = true
	}
}

func TestStore(t *testing.T) {
	t.Parallel()

	t.Run("CreateGetActivate", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		in := newLease(b, 15*time.Minute)
		in.BreakGlass = true
		got, err := s.CreatePending(t.Context(), in)
		if err != nil {
			t.Fatalf("CreatePending: %v", err)
		}
		want := in
		want.State = StatePending
		want.CreatedAt = b.clock.Now()
		want.PluginState = []byte{} // a new lease has a state, empty until Activate
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("CreatePending returned\n%+v\nwant\n%+v", got, want)
		}
		if g := mustGet(t, s, in.ID); !reflect.DeepEqual(g, want) {
			t.Fatalf("Get returned\n%+v\nwant\n%+v", g, want)
		}

		b.clock.Advance(time.Second)
		act, err := s.Activate(t.Context(), in, "broker", nil, map[string]string{"request_id": "r1", "role": "spoofed"})
		if err != nil {
			t.Fatalf("Activate: %v", err)
		}
		if act.State != StateActive {
			t.Fatalf("state after Activate = %s", act.State)
		}
		if act.PluginState == nil || len(act.PluginState) != 0 {
			t.Fatalf("plugin state after an Activate without one = %#v, want empty, not NULL", act.PluginState)
		}
		evs := eventsOf(t, s, in.ID)
		if kinds(evs) != "issued" {
			t.Fatalf("events = %s, want issued", kinds(evs))
		}
		e := evs[0]
		if e.Actor != "broker" || !e.At.Equal(b.clock.Now()) || e.Details["request_id"] != "r1" ||
			e.Details["role"] != in.Role || e.Details["username"] != in.Username || e.Details["break_glass"] != "true" {
			t.Fatalf("issued event = %+v", e)
		}

		if _, err := s.Activate(t.Context(), in, "broker", nil, nil); !errors.Is(err, ErrConflict) {
			t.Fatalf("second Activate: %v, want ErrConflict", err)
		}
		if g := mustGet(t, s, in.ID); g.State != StateActive {
			t.Fatalf("second Activate changed an ACTIVE lease to %s", g.State)
		}
	})

	t.Run("IDDefaults", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		in := newLease(b, time.Minute)
		in.ID, in.MaxExpiresAt = "", time.Time{}
		got, err := s.CreatePending(t.Context(), in)
		if err != nil {
			t.Fatalf("CreatePending: %v", err)
		}
		if !strings.HasPrefix(got.ID, "lease_") || !got.MaxExpiresAt.Equal(in.ExpiresAt) {
			t.Fatalf("defaults not applied: %+v", got)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		s, _ := setup(t)
		ctx := t.Context()
		if _, err := s.Get(ctx, "lease_missing"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get: %v", err)
		}
		if _, err := s.Activate(ctx, Lease{ID: "lease_missing"}, "broker", nil, nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("Activate: %v", err)
		}
		if err := s.Fail(ctx, "lease_missing", "broker", "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Fail: %v", err)
		}
		if _, err := s.Renew(ctx, "lease_missing", "x", nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("Renew: %v", err)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		cases := map[string]func(*Lease){
			"NoRole":         func(l *Lease) { l.Role = "" },
			"NoBackend":      func(l *Lease) { l.Backend = "" },
			"NoPlugin":       func(l *Lease) { l.Plugin = "" },
			"NoUsername":     func(l *Lease) { l.Username = "" },
			"NoExpiry":       func(l *Lease) { l.ExpiresAt = time.Time{} },
			"ExpiryAfterMax": func(l *Lease) { l.MaxExpiresAt = l.ExpiresAt.Add(-time.Second) },
		}
		for name, mutate := range cases {
			l := newLease(b, time.Minute)
			mutate(&l)
			if _, err := s.CreatePending(t.Context(), l); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
			}
		}
	})

	t.Run("Duplicates", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		l := newLease(b, time.Minute)
		if _, err := s.CreatePending(t.Context(), l); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreatePending(t.Context(), l); !errors.Is(err, ErrConflict) {
			t.Errorf("same id: %v, want ErrConflict", err)
		}
		other := newLease(b, time.Minute)
		other.Username = l.Username
		if _, err := s.CreatePending(t.Context(), other); !errors.Is(err, ErrConflict) {
			t.Errorf("same backend user: %v, want ErrConflict", err)
		}
	})

	t.Run("Fail", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		l := newLease(b, time.Minute)
		if _, err := s.CreatePending(t.Context(), l); err != nil {
			t.Fatal(err)
		}
		b.clock.Advance(time.Second)
		if err := s.Fail(t.Context(), l.ID, "broker", `CREATE ROLE x PASSWORD 'hunter2hunter2' failed`); err != nil {
			t.Fatalf("Fail: %v", err)
		}
		got := mustGet(t, s, l.ID)
		if got.State != StateRevoking || !got.NextAttemptAt.Equal(b.clock.Now()) || got.RevokeReason != "issue failed" {
			t.Fatalf("after Fail: %+v", got)
		}
		if strings.Contains(got.LastError, "hunter2") || !strings.Contains(got.LastError, "CREATE ROLE") {
			t.Fatalf("last_error not sanitized: %q", got.LastError)
		}
		if k := kinds(eventsOf(t, s, l.ID)); k != "issue_failed" {
			t.Fatalf("events = %s", k)
		}
		if _, err := s.Activate(t.Context(), l, "broker", nil, nil); !errors.Is(err, ErrConflict) {
			t.Fatalf("Activate after Fail: %v, want ErrConflict", err)
		}

		active := createActive(t, s, newLease(b, time.Minute))
		if err := s.Fail(t.Context(), active.ID, "broker", "x"); !errors.Is(err, ErrConflict) {
			t.Fatalf("Fail of an ACTIVE lease: %v, want ErrConflict", err)
		}
	})
}

func TestRenew(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	ctx := t.Context()

	t.Run("CapsAtMax", func(t *testing.T) {
		l := createActive(t, s, newLease(b, 10*time.Minute)) // max: 40m
		var seen Lease
		got, err := s.Renew(ctx, l.ID, "holder", func(cur Lease) (Renewal, error) {
			seen = cur
			return Renewal{ExpiresAt: b.clock.Now().Add(20 * time.Minute)}, nil
		})
		if err != nil {
			t.Fatalf("Renew: %v", err)
		}
		if seen.ID != l.ID || seen.State != StateActive {
			t.Fatalf("fn saw %+v", seen)
		}
		if want := b.clock.Now().Add(20 * time.Minute); !got.ExpiresAt.Equal(want) {
			t.Fatalf("expires_at = %s, want %s", got.ExpiresAt, want)
		}
		got, err = s.Renew(ctx, l.ID, "holder", func(Lease) (Renewal, error) {
			return Renewal{ExpiresAt: b.clock.Now().Add(24 * time.Hour)}, nil
		})
		if err != nil {
			t.Fatalf("Renew: %v", err)
		}
		if !got.ExpiresAt.Equal(l.MaxExpiresAt) {
			t.Fatalf("expires_at = %s, want the max %s", got.ExpiresAt, l.MaxExpiresAt)
		}
		evs := eventsOf(t, s, l.ID)
		if kinds(evs) != "issued,renewed,renewed" {
			t.Fatalf("events = %s", kinds(evs))
		}
		if evs[2].Details["expires_at"] != l.MaxExpiresAt.Format(time.RFC3339Nano) || evs[2].Actor != "holder" {
			t.Fatalf("renewed event = %+v", evs[2])
		}
	})

	t.Run("FnErrorChangesNothing", func(t *testing.T) {
		l := createActive(t, s, newLease(b, 10*time.Minute))
		boom := errors.New("backend down")
		if _, err := s.Renew(ctx, l.ID, "holder", func(Lease) (Renewal, error) { return Renewal{}, boom }); !errors.Is(err, boom) {
			t.Fatalf("Renew: %v, want the fn's error", err)
		}
		if got := mustGet(t, s, l.ID); !reflect.DeepEqual(got, l) {
			t.Fatalf("lease changed:\n%+v\n%+v", got, l)
		}
		if k := kinds(eventsOf(t, s, l.ID)); k != "issued" {
			t.Fatalf("events = %s", k)
		}
	})

	t.Run("NotActive", func(t *testing.T) {
		called := false
		fn := func(Lease) (Renewal, error) {
			called = true
			return Renewal{ExpiresAt: b.clock.Now().Add(time.Minute)}, nil
		}

		pending := newLease(b, time.Minute)
		if _, err := s.CreatePending(ctx, pending); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Renew(ctx, pending.ID, "holder", fn); !errors.Is(err, ErrNotActive) {
			t.Errorf("pending: %v, want ErrNotActive", err)
		}

		expired := createActive(t, s, newLease(b, time.Minute))
		b.clock.Advance(time.Minute)
		if _, err := s.Renew(ctx, expired.ID, "holder", fn); !errors.Is(err, ErrNotActive) {
			t.Errorf("expired: %v, want ErrNotActive", err)
		}

		notRenewable := newLease(b, time.Minute)
		notRenewable.Renewable = false
		notRenewable = createActive(t, s, notRenewable)
		if _, err := s.Renew(ctx, notRenewable.ID, "holder", fn); !errors.Is(err, ErrNotRenewable) {
			t.Errorf("not renewable: %v, want ErrNotRenewable", err)
		}
		if called {
			t.Error("fn was called for a lease that cannot be renewed")
		}

		past := createActive(t, s, newLease(b, time.Minute))
		if _, err := s.Renew(ctx, past.ID, "holder", func(Lease) (Renewal, error) {
			return Renewal{ExpiresAt: b.clock.Now().Add(-time.Second)}, nil
		}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("expiry in the past: %v, want ErrInvalidArgument", err)
		}
	})
}

func TestList(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	ctx := t.Context()

	// 120 leases for alice, 8 for bob, interleaved, some sharing created_at.
	var alice []string
	created := map[string]time.Time{}
	for i := range 128 {
		l := newLease(b, time.Hour)
		if i%18 == 0 {
			l.Subject = "bob"
		} else {
			l.Subject = "alice"
			alice = append(alice, l.ID)
			created[l.ID] = b.clock.Now()
		}
		if _, err := s.CreatePending(ctx, l); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			b.clock.Advance(time.Millisecond)
		}
	}
	if len(alice) != 120 {
		t.Fatalf("setup made %d alice leases", len(alice))
	}
	if _, err := s.Activate(ctx, mustGet(t, s, alice[5]), "broker", nil, nil); err != nil {
		t.Fatal(err)
	}

	t.Run("Pages", func(t *testing.T) {
		var got []string
		tok := ""
		pages := 0
		for {
			page, next, err := s.List(ctx, ListFilter{Issuer: "k8s-prod", Subject: "alice", PageSize: 50, PageToken: tok})
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			pages++
			for _, l := range page {
				if l.Subject != "alice" {
					t.Fatalf("List returned %s's lease", l.Subject)
				}
				got = append(got, l.ID)
			}
			if next == "" {
				break
			}
			tok = next
		}
		if pages != 3 {
			t.Errorf("pages = %d, want 3", pages)
		}
		// Leases created in the same instant come in id order.
		want := slices.Clone(alice)
		slices.SortStableFunc(want, func(a, b string) int {
			return cmp.Or(created[a].Compare(created[b]), strings.Compare(a, b))
		})
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("listing is not every alice lease in creation order:\n%v\n%v", got, alice)
		}
	})

	t.Run("DefaultAndMaxPageSize", func(t *testing.T) {
		page, next, err := s.List(ctx, ListFilter{})
		if err != nil || len(page) != 50 || next == "" {
			t.Fatalf("default page: %d leases, next %q, %v", len(page), next, err)
		}
		page, next, err = s.List(ctx, ListFilter{PageSize: 10_000})
		if err != nil || len(page) != 128 || next != "" {
			t.Fatalf("huge page: %d leases, next %q, %v", len(page), next, err)
		}
	})

	t.Run("ByState", func(t *testing.T) {
		page, _, err := s.List(ctx, ListFilter{Subject: "alice", State: StateActive})
		if err != nil || len(page) != 1 || page[0].ID != alice[5] {
			t.Fatalf("active: %+v, %v", page, err)
		}
		if _, _, err := s.List(ctx, ListFilter{State: "EXPIRED"}); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("bad state: %v", err)
		}
	})

	t.Run("BadToken", func(t *testing.T) {
		for _, tok := range []string{"garbage!", "dGVzdA", encodePageToken(time.Now(), "")} {
			if _, _, err := s.List(ctx, ListFilter{PageToken: tok}); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("token %q: %v, want ErrInvalidArgument", tok, err)
			}
		}
	})
}

func TestListStableUnderInserts(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	ctx := t.Context()
	var want []string
	for range 10 {
		l := newLease(b, time.Hour)
		want = append(want, l.ID)
		if _, err := s.CreatePending(ctx, l); err != nil {
			t.Fatal(err)
		}
		b.clock.Advance(time.Second)
	}
	page, next, err := s.List(ctx, ListFilter{PageSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range page {
		got = append(got, l.ID)
	}
	// New leases arrive between pages; they sort after, never shifting a page.
	for range 3 {
		if _, err := s.CreatePending(ctx, newLease(b, time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	for next != "" {
		page, next, err = s.List(ctx, ListFilter{PageSize: 4, PageToken: next})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range page {
			got = append(got, l.ID)
		}
	}
	if fmt.Sprint(got[:10]) != fmt.Sprint(want) || len(got) != 13 {
		t.Fatalf("got %v", got)
	}
}
