package e2e_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/test/harness"
)

// TestAgentKeepsCredentialFresh: the sidecar agent writes a credential file,
// renews it, replaces it before its lease can be renewed no further, and
// revokes it when stopped.
func TestAgentKeepsCredentialFresh(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "2s", "4s", "")
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)
	file := filepath.Join(t.TempDir(), "db.env")

	var stderr bytes.Buffer
	agent := exec.Command(harness.Binary(t), "agent", "readonly", "--out", file)
	agent.Env = append(os.Environ(), "CREDBROKER_ADDR="+b.Addr, "CREDBROKER_TOKEN_FILE=", "CREDBROKER_TOKEN="+token)
	agent.Stderr = &stderr
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = agent.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = agent.Process.Kill()
		<-exited
	})

	// read returns the file's variables once it exists.
	read := func() map[string]string {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil
		}
		vars := map[string]string{}
		for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
			k, v, _ := strings.Cut(line, "=")
			vars[k] = strings.Trim(v, "'")
		}
		b.Track(vars["PGPASSWORD"])
		return vars
	}
	var first map[string]string
	eventually(t, 20*time.Second, "the agent wrote no credential file", func() bool {
		first = read()
		return first["PGUSER"] != ""
	})
	if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("credential file mode = %v, %v; want 0600", info.Mode().Perm(), err)
	}
	psql := exec.Command("sh", "-c", `set -a; . "$1"; psql -tAc 'SELECT current_user'`, "sh", file)
	psql.Env = os.Environ()
	if out, err := psql.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != first["PGUSER"] {
		t.Fatalf("psql with the agent's file: %v: %s", err, out)
	}

	// 2s leases renewable to 4s: the agent renews, then replaces the credential.
	var second map[string]string
	eventually(t, 20*time.Second, "the agent never replaced the credential", func() bool {
		second = read()
		return second["PGUSER"] != "" && second["PGUSER"] != first["PGUSER"]
	})

	if err := agent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("agent exited with %v: %s", waitErr, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("agent did not exit on SIGTERM: %s", stderr.String())
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the credential file is still there after the agent stopped: %v", err)
	}
	for _, l := range d.Store.Leases(t) {
		if l.ID == second["CREDBROKER_LEASE_ID"] && l.State != "REVOKED" {
			t.Errorf("the agent's current lease is %s after it stopped", l.State)
		}
	}
	renewed := d.Store.EventCount(t, "renewed")
	if renewed == 0 {
		t.Errorf("the agent never renewed a lease (%s)", stderr.String())
	}
	t.Logf("agent: %d renewals, %d leases issued", renewed, len(d.Store.Leases(t)))
}
