package e2e_test

import (
	"strings"
	"testing"
	"time"
)

// TestConnectAndExec: a person runs `credbroker connect ROLE` (psql opens with
// a temporary login) and `credbroker exec ROLE -- CMD`; the lease is revoked
// when the program ends, and its exit status comes back.
func TestConnectAndExec(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "5m", "10m", "")
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)

	out, stderr, code := b.CLI(t, token, "connect", "readonly", "--", "-tAc", "SELECT current_user")
	user := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(user, "cb_readonly_") {
		t.Fatalf("connect: exit %d, stdout %q, stderr %s", code, out, stderr)
	}
	if d.Backend.RoleExists(t, user) {
		t.Errorf("%s still exists after psql quit", user)
	}

	out, stderr, code = b.CLI(t, token, "exec", "readonly", "--", "sh", "-c",
		`psql -tAc 'SELECT current_user' && echo "lease=$CREDBROKER_LEASE_ID" && exit 3`)
	if code != 3 {
		t.Fatalf("exec: exit %d, want the command's 3; stdout %q, stderr %s", code, out, stderr)
	}
	lines := strings.Fields(out)
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "cb_readonly_") || !strings.HasPrefix(lines[1], "lease=lease_") {
		t.Fatalf("exec printed %q", out)
	}
	if d.Backend.RoleExists(t, lines[0]) {
		t.Errorf("%s still exists after the command ended", lines[0])
	}
	for _, l := range d.Store.Leases(t) {
		if l.State != "REVOKED" || l.RevokeReason != "revoked by holder" {
			t.Errorf("lease %s is %s (%s) after connect/exec ended", l.ID, l.State, l.RevokeReason)
		}
	}
	if _, _, code := b.CLI(t, token, "exec", "readonly"); code != 2 {
		t.Errorf("exec without a command: exit %d, want 2", code)
	}
}
