package leases

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins"
)

// TestPluginState: the state Create returned is stored by Activate, handed
// to Revoke with the lease's role and the role's current spec, replaced by
// a renewal that returns one and kept by one that does not.
func TestPluginState(t *testing.T) {
	t.Parallel()

	t.Run("ActivateRenewRevoke", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		ctx := t.Context()
		p := newFakePlugin()
		r := newReaper(t, s, b, p, nil)

		l := newLease(b, 10*time.Minute)
		if _, err := s.CreatePending(ctx, l); err != nil {
			t.Fatal(err)
		}
		got, err := s.Activate(ctx, l, "broker", []byte("created"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.PluginState) != "created" || string(mustGet(t, s, l.ID).PluginState) != "created" {
			t.Fatalf("state after Activate = %q", got.PluginState)
		}

		renew := func(state []byte) Lease {
			t.Helper()
			out, err := s.Renew(ctx, l.ID, "holder", func(cur Lease) (Renewal, error) {
				return Renewal{ExpiresAt: cur.ExpiresAt.Add(time.Minute), PluginState: state}, nil
			})
			if err != nil {
				t.Fatalf("Renew: %v", err)
			}
			return out
		}
		if out := renew(nil); string(out.PluginState) != "created" {
			t.Fatalf("a renewal without a state changed it to %q", out.PluginState)
		}
		if out := renew([]byte("renewed")); string(out.PluginState) != "renewed" {
			t.Fatalf("state after a renewal with one = %q, want renewed", out.PluginState)
		}

		if _, err := r.Revoke(ctx, l.ID, "done", "holder"); err != nil {
			t.Fatal(err)
		}
		req := p.lastRequest(t, l.Username)
		if req.Role != l.Role || string(req.State) != "renewed" {
			t.Fatalf("Revoke request = %+v, want role %s and the renewed state", req, l.Role)
		}
		if spec, ok := req.Spec.(*testSpec); !ok || spec.role != l.Role {
			t.Fatalf("Revoke spec = %#v, want the role's current spec", req.Spec)
		}
	})

	t.Run("RoleGoneRevokesFromState", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		p := newFakePlugin()
		r := newReaper(t, s, b, p, nil)
		l := newLease(b, time.Minute)
		l.Role = goneRole
		createActive(t, s, l)
		b.clock.Advance(time.Minute)
		if revoked, _ := runOnce(t, r); revoked != 1 {
			t.Fatal("not revoked")
		}
		req := p.lastRequest(t, l.Username)
		if req.Role != goneRole || req.Spec != nil || string(req.State) != `{"test":"state"}` {
			t.Fatalf("Revoke request = %+v, want the role's name, no spec and the lease's state", req)
		}
	})

	t.Run("EmptyStateReachesThePluginAsNil", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		p := newFakePlugin()
		r := newReaper(t, s, b, p, nil)
		// An issue that failed: Create never returned a state.
		l := newLease(b, time.Hour)
		if _, err := s.CreatePending(t.Context(), l); err != nil {
			t.Fatal(err)
		}
		if err := s.Fail(t.Context(), l.ID, "broker", "backend refused"); err != nil {
			t.Fatal(err)
		}
		if got := mustGet(t, s, l.ID); got.PluginState == nil || len(got.PluginState) != 0 {
			t.Fatalf("stored state = %#v, want empty (not NULL: the lease is not from before contract v2)", got.PluginState)
		}
		if revoked, _ := runOnce(t, r); revoked != 1 {
			t.Fatal("not revoked")
		}
		if req := p.lastRequest(t, l.Username); req.State != nil {
			t.Fatalf("Revoke state = %#v, want nil", req.State)
		}
	})

	t.Run("TooLargeIsRefused", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		l := newLease(b, time.Minute)
		if _, err := s.CreatePending(t.Context(), l); err != nil {
			t.Fatal(err)
		}
		big := bytes.Repeat([]byte{'x'}, plugins.MaxStateSize+1)
		if _, err := s.Activate(t.Context(), l, "broker", big, nil); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("Activate with a %d-byte state: %v, want ErrInvalidArgument", len(big), err)
		}
		if _, err := s.Activate(t.Context(), l, "broker", big[:plugins.MaxStateSize], nil); err != nil {
			t.Fatalf("Activate with a %d-byte state: %v", plugins.MaxStateSize, err)
		}
	})
}
