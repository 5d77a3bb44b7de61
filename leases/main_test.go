package leases

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testDatabase creates an empty database for one test, dropped (WITH FORCE)
// when the test ends, and returns its URL: plugintest's service discovery,
// which skips the test when PostgreSQL does not answer, unless
// CREDBROKER_REQUIRE_SERVICES=1.
func testDatabase(t testing.TB) string {
	t.Helper()
	return plugintest.NewTestDatabase(t, plugintest.PostgresURL(t))
}

// testClock is a clock tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// testBundle is what setup returns besides the store.
type testBundle struct {
	dsn   string
	clock *testClock
}

// setup opens a Store on a fresh database with a hand-moved clock.
func setup(t *testing.T) (*Store, *testBundle) {
	t.Helper()
	b := &testBundle{dsn: testDatabase(t), clock: newTestClock()}
	return openStore(t, b), b
}

// openStore opens another Store (a replica) on the bundle's database.
func openStore(t *testing.T, b *testBundle) *Store {
	t.Helper()
	s, err := Open(t.Context(), Config{DSN: b.dsn, Now: b.clock.Now, MaxConns: 8})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// newLease returns a valid lease to create, expiring ttl after the clock.
func newLease(b *testBundle, ttl time.Duration) Lease {
	now := b.clock.Now()
	return Lease{
		ID:           NewID(),
		Role:         "orders-readonly",
		Backend:      "orders-pg",
		Plugin:       "postgres",
		Username:     plugins.NewUsername("orders-readonly", 63),
		Subject:      "system:serviceaccount:orders:api",
		Issuer:       "k8s-prod",
		Renewable:    true,
		ExpiresAt:    now.Add(ttl),
		MaxExpiresAt: now.Add(4 * ttl),
	}
}

// createActive creates a lease and activates it.
func createActive(t *testing.T, s *Store, l Lease) Lease {
	t.Helper()
	if _, err := s.CreatePending(t.Context(), l); err != nil {
		t.Fatalf("CreatePending: %v", err)
	}
	out, err := s.Activate(t.Context(), l, "broker", []byte(`{"test":"state"}`), nil)
	if err != nil {
		t.Fatalf("Activate: %v", err)
	}
	return out
}

// fakePlugin is a plugins.Plugin that records Revoke calls. The unit under
// test is the reaper, not a backend, so a recording fake is the right tool.
type fakePlugin struct {
	mu      sync.Mutex
	revokes map[string]int
	// requests are the Revoke requests received, by username.
	requests map[string][]plugins.RevokeRequest
	// fail, when set, decides whether a Revoke of username fails.
	fail func(username string) error
	// hook, when set, runs inside Revoke before it records the call.
	hook func(ctx context.Context, username string)
	// managed is what ListManaged reports; Revoke removes from it.
	managed []plugins.ManagedUser
	// upgrade, when set, makes the fake a plugins.StateUpgrader.
	upgrade func(req plugins.UpgradeStateRequest) ([]byte, error)
}

var (
	_ plugins.Plugin        = (*fakePlugin)(nil)
	_ plugins.StateUpgrader = (*fakePlugin)(nil)
)

func newFakePlugin() *fakePlugin {
	return &fakePlugin{revokes: map[string]int{}, requests: map[string][]plugins.RevokeRequest{}}
}

func (p *fakePlugin) Create(context.Context, plugins.CreateRequest) (plugins.CreateResponse, error) {
	return plugins.CreateResponse{}, errors.New("not used")
}
func (p *fakePlugin) Renew(context.Context, plugins.RenewRequest) (plugins.RenewResponse, error) {
	return plugins.RenewResponse{}, nil
}
func (p *fakePlugin) CheckRole(context.Context, any) error { return nil }
func (p *fakePlugin) Check(context.Context) error          { return nil }

func (p *fakePlugin) ListManaged(context.Context) ([]plugins.ManagedUser, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.managed), nil
}
func (p *fakePlugin) Close() error { return nil }

func (p *fakePlugin) Revoke(ctx context.Context, req plugins.RevokeRequest) (plugins.RevokeResponse, error) {
	username := req.Username
	p.mu.Lock()
	hook, fail := p.hook, p.fail
	p.mu.Unlock()
	if hook != nil {
		hook(ctx, username)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revokes[username]++
	p.requests[username] = append(p.requests[username], req)
	if fail != nil {
		if err := fail(username); err != nil {
			return plugins.RevokeResponse{}, err
		}
	}
	p.managed = slices.DeleteFunc(p.managed, func(u plugins.ManagedUser) bool { return u.Username == username })
	return plugins.RevokeResponse{}, nil
}

func (p *fakePlugin) UpgradeState(_ context.Context, req plugins.UpgradeStateRequest) ([]byte, error) {
	p.mu.Lock()
	upgrade := p.upgrade
	p.mu.Unlock()
	if upgrade == nil {
		return nil, nil
	}
	return upgrade(req)
}

func (p *fakePlugin) setFail(f func(string) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = f
}

func (p *fakePlugin) calls(username string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.revokes[username]
}

// lastRequest returns the last Revoke request for username.
func (p *fakePlugin) lastRequest(t *testing.T, username string) plugins.RevokeRequest {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	reqs := p.requests[username]
	if len(reqs) == 0 {
		t.Fatalf("no Revoke of %s", username)
	}
	return reqs[len(reqs)-1]
}

func (p *fakePlugin) snapshot() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.revokes))
	for k, v := range p.revokes {
		out[k] = v
	}
	return out
}

// testSpec is the role spec lookup hands out for every role but goneRole.
type testSpec struct{ role string }

// goneRole is a role lookup reports as no longer in the config.
const goneRole = "removed-role"

// lookup returns a ReaperConfig.Plugin serving p for the given backends,
// wrapped in the sanitizing decorator as plugins.Open wraps every plugin
// the broker opens, with a *testSpec for every role but goneRole and "".
func lookup(p plugins.Plugin, backends ...string) func(string, string) (plugins.Plugin, any, bool) {
	sp := plugins.Sanitized(p)
	return func(name, role string) (plugins.Plugin, any, bool) {
		for _, b := range backends {
			if b == name {
				if role == "" || role == goneRole {
					return sp, nil, true
				}
				return sp, &testSpec{role: role}, true
			}
		}
		return nil, nil, false
	}
}

// eventsOf returns the events of one lease (or all, for id "").
func eventsOf(t *testing.T, s *Store, id string) []Event {
	t.Helper()
	var out []Event
	if err := s.Events(t.Context(), EventFilter{LeaseID: id}, func(e Event) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatalf("Events: %v", err)
	}
	return out
}

func kinds(evs []Event) string {
	var k []string
	for _, e := range evs {
		k = append(k, e.Kind)
	}
	return strings.Join(k, ",")
}

func mustGet(t *testing.T, s *Store, id string) Lease {
	t.Helper()
	l, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	return l
}
