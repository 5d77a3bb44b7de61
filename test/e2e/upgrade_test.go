package e2e_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/test/harness"
)

// releaseBeforeV2 is the last release on main before plugin contract v2: its
// PostgreSQL and MySQL plugins found a lease's revocation statements through
// a process-wide registry, keyed by a marker on the backend user.
const releaseBeforeV2 = "be7dac6"

// TestUpgradeFromReleaseBeforeContractV2: a deployment of the previous
// release issues leases of a PostgreSQL and a MySQL role that both have
// revocation_statements; the new release starts on the same store, derives
// the leases' plugin state from the backends' markers, and revokes them
// (through the API, and one through the reaper when it expires) exactly as
// the old release would have: the statements run, the users are gone, no
// orphan is left.
func TestUpgradeFromReleaseBeforeContractV2(t *testing.T) {
	t.Parallel()
	// Both binaries first: the previous release is built from git (the
	// test fails, saying why, without git or the commit).
	oldBin := harness.ReleaseBinary(t, releaseBeforeV2)
	newBin := harness.Binary(t)

	d := harness.NewDeployment(t)
	my := harness.NewMySQL(t)
	my.DropUsersAtEnd(t, d.Store.IssuedUsernames(t, "app-mysql"))
	d.Backend.Exec(t, `CREATE TABLE revoke_audit (username text NOT NULL)`)
	my.Exec(t, "CREATE TABLE `"+my.Database+"`.revoke_audit (username VARCHAR(64) NOT NULL)")

	// One config for both releases: the previous one accepts it as it is.
	cfg := d.Config(my.BackendYAML("app-mysql") + fmt.Sprintf(`roles:
  - name: pg-audited
    backend: app-pg
    owner: e2e
    default_ttl: 10m
    max_ttl: 1h
    postgres:
      member_of: [%[1]s]
      revocation_statements:
        - INSERT INTO revoke_audit (username) VALUES ('{{name}}')
  - name: pg-short
    backend: app-pg
    owner: e2e
    default_ttl: 20s
    max_ttl: 1h
    postgres:
      member_of: [%[1]s]
      revocation_statements:
        - INSERT INTO revoke_audit (username) VALUES ('{{name}}')
  - name: my-audited
    backend: app-mysql
    owner: e2e
    default_ttl: 10m
    max_ttl: 1h
    mysql:
      grants: [{privileges: [SELECT], on: "%[2]s.items"}]
      revocation_statements:
        - INSERT INTO `+"`%[2]s`"+`.revoke_audit (username) VALUES ('{{name}}')
policies:
  - name: app
    issuer: test
    subject: %[3]q
    roles: [pg-audited, pg-short, my-audited]
reaper: {interval: 1s, pending_grace: 30s}
`, d.Backend.ReadGroup, my.Database, appSubject))
	b := harness.StartBrokerWith(t, harness.Options{Config: cfg, Env: append(d.Env(), my.Env()...), Binary: oldBin})
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)

	pgLease := issue(t, b, token, map[string]any{"role": "pg-audited"})
	shortLease := issue(t, b, token, map[string]any{"role": "pg-short"})
	myLease := issue(t, b, token, map[string]any{"role": "my-audited"})
	all := []issued{pgLease, shortLease, myLease}
	for _, l := range all {
		if time.Until(l.ExpiresAt) < 10*time.Second {
			t.Fatalf("lease %s expires at %s: too soon to outlive the previous release", l.LeaseID, l.ExpiresAt)
		}
	}
	if got := d.Store.Leases(t); len(got) != 3 {
		t.Fatalf("the previous release stored %d leases, want 3", len(got))
	}

	// The new release on the same store and backends.
	b.Upgrade(t, newBin)
	states := d.Store.PluginStates(t)
	for _, l := range all {
		state, ok := states[l.LeaseID]
		switch {
		case !ok:
			t.Errorf("lease %s is gone from the store", l.LeaseID)
		case state == nil:
			t.Errorf("lease %s (%s): plugin_state NULL after the upgrade, want the state derived from the markers", l.LeaseID, l.Username)
		case len(state) == 0:
			t.Errorf("lease %s (%s): plugin_state empty after the upgrade, want the state derived from the markers", l.LeaseID, l.Username)
		case strings.Contains(string(state), l.Password):
			t.Errorf("lease %s: plugin_state holds the password", l.LeaseID)
		}
	}
	if !strings.Contains(b.Logs(), "plugin states of leases written before contract v2") {
		t.Errorf("the new release logged no count of upgraded lease states")
	}

	// Revoked through the API…
	for _, l := range []issued{pgLease, myLease} {
		status, resp := b.Call(t, token, "RevokeLease", map[string]any{"leaseId": l.LeaseID})
		if status != http.StatusOK || str(resp, "lease", "state") != "LEASE_STATE_REVOKED" {
			t.Errorf("RevokeLease %s (%s): HTTP %d %v", l.LeaseID, l.Username, status, resp)
		}
	}
	// …and by the reaper, when the short one expires.
	eventually(t, 2*time.Minute, "the expired lease of the previous release is not REVOKED", func() bool {
		status, resp := b.Call(t, token, "GetLease", map[string]any{"leaseId": shortLease.LeaseID})
		return status == http.StatusOK && str(resp, "lease", "state") == "LEASE_STATE_REVOKED"
	})

	// The revocation statements ran, once per user.
	pgAudit := pgAuditRows(t, d.Backend.URL)
	for _, l := range []issued{pgLease, shortLease} {
		if n := count(pgAudit, l.Username); n != 1 {
			t.Errorf("PostgreSQL revoke_audit has %d rows for %s, want 1 (revocation_statements ran %d times): %v", n, l.Username, n, pgAudit)
		}
	}
	if myAudit := myAuditRows(t, my); count(myAudit, myLease.Username) != 1 {
		t.Errorf("MySQL revoke_audit = %v, want one row for %s", myAudit, myLease.Username)
	}
	// The users are gone, and nothing is left behind.
	for _, l := range []issued{pgLease, shortLease} {
		if d.Backend.RoleExists(t, l.Username) {
			t.Errorf("PostgreSQL role %s still exists", l.Username)
		}
	}
	if hosts := my.UserHosts(t, myLease.Username); len(hosts) != 0 {
		t.Errorf("MySQL accounts of %s left: %v", myLease.Username, hosts)
	}
	if left := d.Backend.ManagedUsers(t); len(left) != 0 {
		t.Errorf("PostgreSQL users of this test left after every lease was revoked: %v", left)
	}
	for _, l := range d.Store.Leases(t) {
		if l.State != "REVOKED" {
			t.Errorf("lease %s (%s) is %s, want REVOKED", l.ID, l.Role, l.State)
		}
		if l.ID == shortLease.LeaseID && l.RevokeReason != "expired" {
			t.Errorf("lease %s: revoke reason %q, want expired", l.ID, l.RevokeReason)
		}
	}
	dump := d.Store.Dump(t)
	for _, l := range all {
		if strings.Contains(dump, l.Password) {
			t.Errorf("the store holds the password of %s", l.Username)
		}
	}
}

// count returns how often s is in list.
func count(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}

// pgAuditRows returns the usernames in the backend's revoke_audit.
func pgAuditRows(t *testing.T, url string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to the backend: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT username FROM revoke_audit ORDER BY 1`)
	if err != nil {
		t.Fatalf("read revoke_audit: %v", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read revoke_audit: %v", err)
	}
	return out
}

// myAuditRows returns the usernames in the MySQL test database's
// revoke_audit.
func myAuditRows(t *testing.T, my *harness.MySQL) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("mysql", my.DSN)
	if err != nil {
		t.Fatalf("mysql: %v", err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT username FROM `"+my.Database+"`.revoke_audit ORDER BY 1")
	if err != nil {
		t.Fatalf("read revoke_audit: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}
