package e2e_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/test/harness"
)

// TestKillDuringIssueBurst kills the broker with SIGKILL while 8 clients issue
// as fast as they can, restarts it, and checks after the pending grace that
// no backend user outlives its lease (orphans) and that every credential a
// client received is backed by an ACTIVE lease (lost leases). It does this
// twice, so the second kill also lands on a broker that has recovered once.
func TestKillDuringIssueBurst(t *testing.T) {
	t.Parallel()
	const (
		workers      = 8
		rounds       = 2
		pendingGrace = 3 * time.Second
	)
	d, b := setup(t, "10m", "1h", fmt.Sprintf("reaper: {interval: 500ms, pending_grace: %s}\nlimits: {issue_rate: 100000, issue_burst: 100000}\n", pendingGrace))
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)

	type got struct{ leaseID, username, uri string }
	var (
		mu       sync.Mutex
		received []got
	)
	var totalErrors, totalAttempts int64
	for round := 1; round <= rounds; round++ {
		c := b.Client(token)
		var attempts, failures atomic.Int64
		var n atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					resp, err := c.IssueCredential(ctx, connect.NewRequest(&credbrokerv1.IssueCredentialRequest{Role: "readonly"}))
					cancel()
					attempts.Add(1)
					if err != nil {
						failures.Add(1)
						continue
					}
					mu.Lock()
					received = append(received, got{resp.Msg.GetLease().GetId(), resp.Msg.GetCredential().GetUsername(), resp.Msg.GetCredential().GetUri()})
					mu.Unlock()
					n.Add(1)
				}
			})
		}
		// Kill once the burst is well under way.
		eventually(t, time.Minute, "the burst issued fewer than 40 credentials", func() bool { return n.Load() >= 40 })
		before := n.Load()
		b.Kill()
		killedAt := time.Now()
		close(stop)
		wg.Wait()
		after := n.Load() - before // responses that were on their way at the kill

		// What the kill left behind, before anything cleans up.
		pending, orphans := 0, 0
		byUser := map[string]harness.LeaseRow{}
		for _, l := range d.Store.Leases(t) {
			byUser[l.Username] = l
			if l.State == "PENDING" {
				pending++
			}
		}
		for _, u := range d.Backend.ManagedUsers(t) {
			if byUser[u].State != "ACTIVE" {
				orphans++
			}
		}
		t.Logf("round %d: %d issued before the kill (+%d answered while it was being killed), %d of %d attempts failed; at the kill: %d PENDING leases, %d users without an ACTIVE lease",
			round, before, after, failures.Load(), attempts.Load(), pending, orphans)
		totalErrors += failures.Load()
		totalAttempts += attempts.Load()

		b.Restart(t)
		// Past the pending grace the reaper revokes the abandoned issues.
		if wait := time.Until(killedAt.Add(pendingGrace)); wait > 0 {
			time.Sleep(wait) // the grace is the very thing under test: no signal marks its end
		}
		eventually(t, 30*time.Second, "abandoned issues are not cleaned up", func() bool {
			for _, l := range d.Store.Leases(t) {
				if l.State == "PENDING" || l.State == "REVOKING" {
					return false
				}
			}
			return len(orphanUsers(t, d)) == 0
		})
	}

	// The invariants, over both rounds.
	leases := d.Store.Leases(t)
	byID := map[string]harness.LeaseRow{}
	states := map[string]int{}
	for _, l := range leases {
		byID[l.ID] = l
		states[l.State]++
		if l.State != "ACTIVE" && d.Backend.RoleExists(t, l.Username) {
			t.Errorf("lease %s is %s (%s) but its user %s still exists", l.ID, l.State, l.RevokeReason, l.Username)
		}
	}
	orphans := orphanUsers(t, d)
	for _, u := range orphans {
		t.Errorf("orphan: user %s has no ACTIVE lease", u)
	}
	lost := 0
	mu.Lock()
	defer mu.Unlock()
	for _, g := range received {
		l, ok := byID[g.leaseID]
		if !ok || l.State != "ACTIVE" || l.Username != g.username || !d.Backend.RoleExists(t, g.username) {
			lost++
			t.Errorf("lost lease: a client holds %s (%s) but the store says %+v", g.leaseID, g.username, l)
		}
	}
	unreceived := states["ACTIVE"] - len(received)
	t.Logf("after %d kills: %d credentials received by clients, %d attempts failed of %d; store: %d leases %v (%d ACTIVE leases whose response never arrived); orphans %d, lost leases %d",
		rounds, len(received), totalErrors, totalAttempts, len(leases), states, unreceived, len(orphans), lost)
	if unreceived < 0 {
		t.Errorf("more credentials received (%d) than ACTIVE leases (%d)", len(received), states["ACTIVE"])
	}

	// The first and the last credential received still log in.
	for _, g := range []got{received[0], received[len(received)-1]} {
		conn, err := connectPG(t.Context(), g.uri)
		if err != nil {
			t.Errorf("log in as %s after the kills: %v", g.username, err)
			continue
		}
		conn.Close(t.Context())
	}
}

// orphanUsers returns the backend's issued users that have no ACTIVE lease.
func orphanUsers(t *testing.T, d *harness.Deployment) []string {
	t.Helper()
	active := map[string]bool{}
	for _, l := range d.Store.Leases(t) {
		if l.State == "ACTIVE" {
			active[l.Username] = true
		}
	}
	var out []string
	for _, u := range d.Backend.ManagedUsers(t) {
		if !active[u] {
			out = append(out, u)
		}
	}
	return out
}
