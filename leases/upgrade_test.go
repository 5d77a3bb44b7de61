package leases

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/plugins"
)

// oldLease inserts a lease the way the release before contract v2 did: its
// INSERT names no plugin_state, so the column holds NULL.
func oldLease(t *testing.T, s *Store, b *testBundle, role, backend, state string) Lease {
	t.Helper()
	l := newLease(b, time.Hour)
	l.Role, l.Backend = role, backend
	now := b.clock.Now()
	var nextAttempt *time.Time // set in state REVOKING only
	if state == "REVOKING" {
		nextAttempt = &now
	}
	_, err := s.pool.Exec(t.Context(), `
		INSERT INTO leases (id, role, backend, plugin, username, state, subject, issuer,
			break_glass, renewable, created_at, expires_at, max_expires_at, next_attempt_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, false, true, $9, $10, $11, $12)`,
		l.ID, l.Role, l.Backend, l.Plugin, l.Username, state, l.Subject, l.Issuer,
		now, l.ExpiresAt, l.MaxExpiresAt, nextAttempt)
	if err != nil {
		t.Fatalf("insert a lease as the previous release did: %v", err)
	}
	return mustGet(t, s, l.ID)
}

// TestUpgradeStates: leases written before contract v2 get the state their
// plugin derives, once; the others are left alone, and failures are counted
// and retried by the next run.
func TestUpgradeStates(t *testing.T) {
	t.Parallel()

	t.Run("FromSchemaVersion4", func(t *testing.T) {
		t.Parallel()
		// A store the previous release wrote: schema version 4, one lease.
		b := &testBundle{dsn: testDatabase(t), clock: newTestClock()}
		cfg, err := pgx.ParseConfig(b.dsn)
		if err != nil {
			t.Fatal(err)
		}
		m, err := newMigrate(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Migrate(4); err != nil {
			t.Fatalf("migrate to 4: %v", err)
		}
		if srcErr, dbErr := m.Close(); srcErr != nil || dbErr != nil {
			t.Fatal(srcErr, dbErr)
		}
		conn, err := pgx.Connect(t.Context(), b.dsn)
		if err != nil {
			t.Fatal(err)
		}
		id, username := NewID(), plugins.NewUsername("orders-readonly", 63)
		now := b.clock.Now()
		if _, err := conn.Exec(t.Context(), `
			INSERT INTO leases (id, role, backend, plugin, username, state, created_at, expires_at, max_expires_at)
			VALUES ($1, 'orders-readonly', 'orders-pg', 'postgres', $2, 'ACTIVE', $3, $4, $4)`,
			id, username, now, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		conn.Close(t.Context())

		// This release opens it: migration 005 leaves the lease without state…
		s := openStore(t, b)
		if got := mustGet(t, s, id); got.PluginState != nil {
			t.Fatalf("state of a lease from version 4 = %#v, want NULL", got.PluginState)
		}
		// …and the upgrade fills it from the plugin.
		p := newFakePlugin()
		var asked []plugins.UpgradeStateRequest
		p.upgrade = func(req plugins.UpgradeStateRequest) ([]byte, error) {
			asked = append(asked, req)
			return []byte("derived:" + req.Username), nil
		}
		r := newReaper(t, s, b, p, nil)
		res, err := r.UpgradeStates(t.Context())
		if err != nil || res != (UpgradeResult{Upgraded: 1}) {
			t.Fatalf("UpgradeStates = %+v, %v; want 1 upgraded", res, err)
		}
		if len(asked) != 1 || asked[0].Username != username || asked[0].Role != "orders-readonly" {
			t.Fatalf("UpgradeState asked %+v", asked)
		}
		if spec, ok := asked[0].Spec.(*testSpec); !ok || spec.role != "orders-readonly" {
			t.Fatalf("UpgradeState spec = %#v, want the role's current spec", asked[0].Spec)
		}
		if got := mustGet(t, s, id); string(got.PluginState) != "derived:"+username {
			t.Fatalf("stored state = %q", got.PluginState)
		}
		// Done once: the next start finds nothing to do.
		if res, err := r.UpgradeStates(t.Context()); err != nil || res != (UpgradeResult{}) {
			t.Fatalf("second UpgradeStates = %+v, %v; want nothing", res, err)
		}
		// And revoking hands the derived state to the plugin.
		if _, err := r.Revoke(t.Context(), id, "done", "admin"); err != nil {
			t.Fatal(err)
		}
		if req := p.lastRequest(t, username); string(req.State) != "derived:"+username {
			t.Fatalf("Revoke state = %q", req.State)
		}
	})

	t.Run("BatchesFailuresAndOtherBackends", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		ctx := t.Context()
		p := newFakePlugin()
		var calls int
		p.upgrade = func(req plugins.UpgradeStateRequest) ([]byte, error) {
			calls++
			switch {
			case strings.HasPrefix(req.Role, "fails"):
				return nil, fmt.Errorf("read the marker of %s: permission denied for postgres://admin:topsecret@db/x", req.Username)
			case req.Role == "nostate":
				return nil, nil
			}
			return []byte("state-of-" + req.Username), nil
		}
		r := newReaper(t, s, b, p, func(c *ReaperConfig) { c.BatchSize = 3 })

		var good []Lease
		for range 7 { // three batches
			good = append(good, oldLease(t, s, b, "orders-readonly", "orders-pg", "ACTIVE"))
		}
		pendingOld := oldLease(t, s, b, "orders-readonly", "orders-pg", "PENDING")
		revokingOld := oldLease(t, s, b, "orders-readonly", "orders-pg", "REVOKING")
		failing := oldLease(t, s, b, "fails", "orders-pg", "ACTIVE")
		noState := oldLease(t, s, b, "nostate", "orders-pg", "ACTIVE")
		elsewhere := oldLease(t, s, b, "orders-readonly", "gone-pg", "ACTIVE") // backend not configured
		revokedOld := oldLease(t, s, b, "orders-readonly", "orders-pg", "ACTIVE")
		if _, err := s.pool.Exec(ctx, `UPDATE leases SET state = 'REVOKED', revoked_at = now() WHERE id = $1`, revokedOld.ID); err != nil {
			t.Fatal(err)
		}
		v2 := createActive(t, s, newLease(b, time.Hour)) // written by this release

		res, err := r.UpgradeStates(ctx)
		if err != nil {
			t.Fatalf("UpgradeStates: %v", err)
		}
		if want := (UpgradeResult{Upgraded: 9, NoState: 1, Failed: 2}); res != want {
			t.Fatalf("UpgradeStates = %+v, want %+v", res, want)
		}
		for _, l := range append(good, pendingOld, revokingOld) {
			if got := mustGet(t, s, l.ID); string(got.PluginState) != "state-of-"+l.Username {
				t.Errorf("lease %s (%s): state %q", l.ID, l.State, got.PluginState)
			}
		}
		if got := mustGet(t, s, noState.ID); got.PluginState == nil || len(got.PluginState) != 0 {
			t.Errorf("lease %s whose plugin derived nothing: state %q (nil %v), want empty, not NULL", noState.ID, got.PluginState, got.PluginState == nil)
		}
		for _, l := range []Lease{failing, elsewhere, revokedOld} {
			if got := mustGet(t, s, l.ID); got.PluginState != nil {
				t.Errorf("lease %s (role %s, backend %s, %s): state %q, want still NULL", l.ID, l.Role, l.Backend, got.State, got.PluginState)
			}
		}
		if got := mustGet(t, s, v2.ID); string(got.PluginState) != `{"test":"state"}` {
			t.Errorf("a lease of this release was changed: %q", got.PluginState)
		}
		if calls != 11 {
			t.Errorf("UpgradeState called %d times, want 11 (not for REVOKED leases, other backends or leases with a state)", calls)
		}

		// The next start retries the failures only.
		calls = 0
		p.upgrade = func(req plugins.UpgradeStateRequest) ([]byte, error) {
			calls++
			return []byte("now"), nil
		}
		res, err = r.UpgradeStates(ctx)
		if err != nil || res != (UpgradeResult{Upgraded: 1, Failed: 1}) {
			t.Fatalf("second UpgradeStates = %+v, %v; want 1 upgraded (the failure), 1 failed (no backend)", res, err)
		}
		if calls != 1 {
			t.Errorf("second run called UpgradeState %d times, want 1 (the one that derived nothing is not asked again)", calls)
		}
	})

	// A backend that cannot be reached, or that hangs until the call's
	// timeout, is asked once per start, not once per lease: start must not
	// wait a timeout per lease.
	for name, failure := range map[string]error{
		"UnavailableBackendIsAskedOnce": fmt.Errorf("%w: dial tcp 10.0.0.1:5432: i/o timeout", plugins.ErrUnavailable),
		"HangingBackendIsAskedOnce":     fmt.Errorf("read the marker: %w", context.DeadlineExceeded),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, b := setup(t)
			p := newFakePlugin()
			var calls int
			p.upgrade = func(plugins.UpgradeStateRequest) ([]byte, error) {
				calls++
				return nil, failure
			}
			r := newReaper(t, s, b, p, nil)
			for range 5 {
				oldLease(t, s, b, "orders-readonly", "orders-pg", "ACTIVE")
			}
			res, err := r.UpgradeStates(t.Context())
			if err != nil || res != (UpgradeResult{Failed: 5}) {
				t.Fatalf("UpgradeStates = %+v, %v; want 5 failed", res, err)
			}
			if calls != 1 {
				t.Errorf("the backend was asked %d times, want once per start", calls)
			}
		})
	}

	t.Run("StateSetMeanwhileIsKept", func(t *testing.T) {
		t.Parallel()
		s, b := setup(t)
		l := oldLease(t, s, b, "orders-readonly", "orders-pg", "ACTIVE")
		p := newFakePlugin()
		p.upgrade = func(plugins.UpgradeStateRequest) ([]byte, error) {
			// Another replica upgrades the lease while this one asks.
			if _, err := s.setPluginState(context.WithoutCancel(t.Context()), l.ID, []byte("other replica")); err != nil {
				t.Error(err)
			}
			return []byte("this replica"), nil
		}
		r := newReaper(t, s, b, p, nil)
		if res, err := r.UpgradeStates(t.Context()); err != nil || res.Upgraded != 0 {
			t.Fatalf("UpgradeStates = %+v, %v; want nothing stored", res, err)
		}
		if got := mustGet(t, s, l.ID); string(got.PluginState) != "other replica" {
			t.Fatalf("state = %q, want the first one stored", got.PluginState)
		}
	})
}
