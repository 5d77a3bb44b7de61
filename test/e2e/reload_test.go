package e2e_test

import (
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadOnSIGHUP: an operator edits the config and sends SIGHUP; the new
// policy applies without a restart, and a broken file leaves the running
// config in force.
func TestReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "5m", "10m", "")
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)
	issue(t, b, token, map[string]any{"role": "readonly"})
	if status, resp := b.Call(t, token, "IssueCredential", map[string]any{"role": "reports"}); status != http.StatusForbidden {
		t.Fatalf("before reload: reports gave HTTP %d %v, want 403 permission_denied", status, resp)
	}

	orig, err := os.ReadFile(b.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	granted := strings.Replace(string(orig), "roles: [readonly]\n", "roles: [readonly, reports]\n", 1)
	if granted == string(orig) {
		t.Fatal("test config did not have the expected policy line")
	}
	write := func(s string) {
		if err := os.WriteFile(b.ConfigPath, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(granted)
	b.Signal(t, syscall.SIGHUP)
	eventually(t, 20*time.Second, "reports is still denied after SIGHUP", func() bool {
		status, _ := b.Call(t, token, "IssueCredential", map[string]any{"role": "reports"})
		return status == http.StatusOK
	})
	if !strings.Contains(b.Logs(), "config reloaded") {
		t.Error("the broker did not log the reload")
	}

	// A broken file is refused; the running config (with the grant) stays.
	write(granted + "bogus_key: 1\n")
	b.Signal(t, syscall.SIGHUP)
	eventually(t, 20*time.Second, "the broken config's rejection was not logged", func() bool {
		return strings.Contains(b.Logs(), "config not reloaded")
	})
	if !strings.Contains(b.Logs(), "bogus_key: unknown key") {
		t.Error("the log does not say what is wrong with the file")
	}
	cred := issue(t, b, token, map[string]any{"role": "reports"})
	if !d.Backend.RoleExists(t, cred.Username) {
		t.Errorf("after a refused reload the issued user %s does not exist", cred.Username)
	}
}
