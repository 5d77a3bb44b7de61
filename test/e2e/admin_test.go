package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const auditorSubject = "auditor@example.com"

// TestAuditorExportsAndVerifies: an auditor exports the lease history with
// the CLI, verifies its hash chains, and a row altered in the store is caught.
// Operators revoke by filter and read the inventory; others may not.
func TestAuditorExportsAndVerifies(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "5m", "10m", `  - name: auditors
    issuer: test
    subject: "`+auditorSubject+`"
    admin: true
`)
	app := d.Issuer.Token(t, appSubject, nil, time.Hour)
	other := d.Issuer.Token(t, otherSubject, nil, time.Hour)
	auditor := d.Issuer.Token(t, auditorSubject, nil, time.Hour)

	first := issue(t, b, app, map[string]any{"role": "readonly"})
	issue(t, b, app, map[string]any{"role": "readonly"})
	issue(t, b, other, map[string]any{"role": "reports"})
	b.Call(t, app, "IssueCredential", map[string]any{"role": "reports"}) // denied, on the record
	if status, r := b.Call(t, app, "RevokeLease", map[string]any{"leaseId": first.LeaseID}); status != http.StatusOK {
		t.Fatalf("RevokeLease: HTTP %d %v", status, r)
	}

	// Not for workloads.
	for _, method := range []string{"GetInventory", "RevokeLeases"} {
		status, r := b.CallPath(t, app, "/credbroker.v1.AdminService/"+method, map[string]any{"role": "readonly"})
		wantError(t, method+" as a workload", status, r, http.StatusForbidden, "permission_denied")
	}
	if _, stderr, code := b.CLI(t, app, "export"); code != 1 || !strings.Contains(stderr, "permission_denied") {
		t.Errorf("export as a workload: exit %d, %s", code, stderr)
	}

	out, stderr, code := b.CLI(t, auditor, "export", "--verify")
	if code != 0 {
		t.Fatalf("export --verify: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "verified:") {
		t.Errorf("export --verify said: %s", stderr)
	}
	kinds := map[string]int{}
	var revoked map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("export line is not JSON: %q", line)
		}
		kind, _ := ev["kind"].(string)
		kinds[kind]++
		if kind == "revoked" && ev["leaseId"] == first.LeaseID {
			revoked = ev
		}
	}
	for kind, want := range map[string]int{"issued": 3, "denied": 1, "revoked": 1, "exported": 1} {
		if kinds[kind] != want {
			t.Errorf("export has %d %s events, want %d (all: %v)", kinds[kind], kind, want, kinds)
		}
	}
	if revoked == nil || !strings.Contains(revoked["actor"].(string), appSubject) {
		t.Errorf("the revoke is not on the record with its actor: %v", revoked)
	}
	if strings.Contains(out, first.Password) {
		t.Error("the export contains an issued password")
	}

	// Someone with database access rewrites who revoked the lease.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, d.Store.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE lease_events SET actor = 'nobody' WHERE kind = 'revoked' AND lease_id = $1`, first.LeaseID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, code = b.CLI(t, auditor, "export", "--verify")
	if code != 1 || !strings.Contains(stderr, "hash does not match") {
		t.Errorf("export --verify after tampering: exit %d: %s", code, stderr)
	}

	// Inventory and revoke-by-role.
	inv, stderr, code := b.CLI(t, auditor, "admin", "inventory")
	var inventory struct {
		Roles []struct {
			Name         string
			Policies     []string
			ActiveLeases string // protojson writes int64 as a string
		}
	}
	if err := json.Unmarshal([]byte(inv), &inventory); code != 0 || err != nil {
		t.Fatalf("admin inventory: exit %d %s %v\n%s", code, stderr, err, inv)
	}
	for _, r := range inventory.Roles {
		if r.Name == "readonly" && (r.ActiveLeases != "1" || !slices.Contains(r.Policies, "orders-api")) {
			t.Errorf("inventory of readonly = %+v, want 1 active lease and policy orders-api", r)
		}
	}
	res, stderr, code := b.CLI(t, auditor, "admin", "revoke", "--role", "readonly", "--reason", "incident 42")
	var revokedN struct{ Revoked int }
	if err := json.Unmarshal([]byte(res), &revokedN); code != 0 || err != nil || revokedN.Revoked != 1 {
		t.Errorf("admin revoke: exit %d %s %v\n%s", code, stderr, err, res)
	}
	for _, l := range d.Store.Leases(t) {
		if l.Role == "readonly" && l.State != "REVOKED" {
			t.Errorf("lease %s of readonly is %s after admin revoke", l.ID, l.State)
		}
		if l.Role == "readonly" && l.ID != first.LeaseID && !strings.Contains(l.RevokeReason, "incident 42") {
			t.Errorf("revoke reason %q does not carry the admin's reason", l.RevokeReason)
		}
		if l.Role == "reports" && l.State != "ACTIVE" {
			t.Errorf("lease %s of reports is %s; admin revoke by role touched it", l.ID, l.State)
		}
	}
	if _, stderr, code := b.CLI(t, auditor, "admin", "revoke"); code != 2 {
		t.Errorf("admin revoke without a filter: exit %d: %s", code, stderr)
	}
}
