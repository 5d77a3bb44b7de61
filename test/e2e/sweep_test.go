package e2e_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/test/harness"
)

// sweepReaper sweeps every 2s; users the backend dates are spared for 3s.
const sweepReaper = "reaper: {interval: 1s, pending_grace: 3s, sweep_interval: 2s}\n"

// postgresSweepReaper spares dated users for 5m: the PostgreSQL plugin dates
// every role it makes, so the users other packages' tests issue meanwhile on
// the shared cluster (roles are cluster-wide) are never swept by
// this broker, while the orphan this test makes by hand, undated, is.
const postgresSweepReaper = "reaper: {interval: 1s, pending_grace: 5m, sweep_interval: 2s}\n"

// A sweep revokes every user the backend's marker says credbroker made that
// the broker's own store has no lease for, and the marker is server-wide.
// TestSweepRevokesPostgresOrphan therefore also does not call t.Parallel
// (such tests finish before the parallel ones of the package start), and it
// stops its broker as soon as it has seen the sweep. The Redis test has a
// server of its own.

func TestSweepRevokesPostgresOrphan(t *testing.T) {
	d := harness.NewDeployment(t)
	orphan := harness.RandomName("cb_orphan_")
	t.Cleanup(func() { d.Backend.Exec(t, "DROP ROLE IF EXISTS "+orphan) })
	b := harness.StartBroker(t, d.Config(rolesConfig(d.Backend, "10m", "1h", postgresSweepReaper)), d.Env()...)
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)
	cred := issue(t, b, token, map[string]any{"role": "readonly"})
	seen := &secrets{b: b}
	seen.addIssued(cred)

	// The plugin takes a role carrying its comment for its own.
	d.Backend.Exec(t, fmt.Sprintf("CREATE ROLE %s LOGIN; COMMENT ON ROLE %s IS '%s'", orphan, orphan, harness.ManagedComment))
	made := time.Now()
	// The event is recorded after the revoke: wait for both before stopping
	// the broker, which would cancel a recording under way.
	eventually(t, 20*time.Second, "the orphan is still in pg_roles, or its revoke is not recorded", func() bool {
		return !d.Backend.RoleExists(t, orphan) && orphanEventRecorded(t, d.Store, orphan)
	})
	t.Logf("orphan swept %s after it was made", time.Since(made).Round(time.Millisecond))
	if err := b.Stop(); err != nil {
		t.Errorf("stop the broker: %v", err)
	}

	if !d.Backend.RoleExists(t, cred.Username) {
		t.Fatalf("the sweep dropped %s, whose lease is active", cred.Username)
	}
	checkReadOnlyWithPGX(t, cred.URI)
	if n := d.Store.EventCount(t, "orphan_revoked"); n < 1 {
		t.Errorf("store: %d orphan_revoked events, want at least 1 (the sweep may revoke other orphans on a shared cluster too)", n)
	}
	if leases := d.Store.Leases(t); len(leases) != 1 || leases[0].State != "ACTIVE" {
		t.Errorf("store leases %+v, want the one issued, ACTIVE", leases)
	}
	seen.check(t, d.Store)
}

func TestSweepRevokesRedisOrphan(t *testing.T) {
	t.Parallel()
	rd := harness.StartRedisServer(t)
	iss := harness.NewIssuer(t, "test")
	store := harness.NewStore(t)
	orphan := harness.RandomName("cb_orphan_")
	// Not made by credbroker (no cb_ prefix): the sweep must leave it alone.
	bystander := harness.RandomName("cbtest_keep_")
	prefix := harness.RandomName("e2e")

	b := harness.StartBroker(t, harness.ServicesConfig(iss, rd.BackendYAML(redisBackend), sweepReaper+fmt.Sprintf(`roles:
  - name: cache
    backend: %s
    default_ttl: 10m
    max_ttl: 1h
    redis:
      rules: ["~%s:*", "+@read"]
`, redisBackend, prefix)+singlePolicy("cache")), store.StoreEnv()...)
	token := iss.Token(t, appSubject, nil, time.Hour)
	cred := issue(t, b, token, map[string]any{"role": "cache"})
	seen := &secrets{b: b}
	seen.addIssued(cred)

	rd.Do(t, "ACL", "SETUSER", bystander, "on", ">x", "~"+prefix+":*", "+get")
	rd.Do(t, "ACL", "SETUSER", orphan, "on", ">x")
	made := time.Now()
	eventually(t, 20*time.Second, "ACL USERS still lists the orphan, or its revoke is not recorded", func() bool {
		return !rd.UserExists(t, orphan) && orphanEventRecorded(t, store, orphan)
	})
	t.Logf("orphan swept %s after it was made", time.Since(made).Round(time.Millisecond))
	if err := b.Stop(); err != nil {
		t.Errorf("stop the broker: %v", err)
	}

	if !rd.UserExists(t, cred.Username) {
		t.Errorf("the sweep deleted %s, whose lease is active", cred.Username)
	}
	if !rd.UserExists(t, bystander) {
		t.Errorf("the sweep deleted %s, a user without the cb_ prefix", bystander)
	}
	if n := store.EventCount(t, "orphan_revoked"); n != 1 {
		t.Errorf("store: %d orphan_revoked events, want 1", n)
	}
	seen.check(t, store)
}

// orphanEventRecorded reports whether the store holds an orphan_revoked
// event naming orphan.
func orphanEventRecorded(t *testing.T, store *harness.Store, orphan string) bool {
	t.Helper()
	for _, line := range strings.Split(store.Dump(t), "\n") {
		if strings.Contains(line, "orphan_revoked") && strings.Contains(line, orphan) {
			return true
		}
	}
	return false
}
