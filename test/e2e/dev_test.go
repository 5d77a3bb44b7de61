package e2e_test

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/test/harness"
)

// TestDevServesAndReloads: `credbroker dev` starts a throwaway broker on the
// local PostgreSQL, prints its banner, serves the dev token's roles, and,
// since it runs the same serve loop as `credbroker serve`, reloads its config
// on SIGHUP (before, SIGHUP ended it) and stops cleanly on SIGTERM.
func TestDevServesAndReloads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()

	cmd := exec.Command(harness.Binary(t), "dev", "--dir", dir, "--listen", listen, "--metrics-listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "CREDBROKER_DATABASE_URL="+plugintest.PostgresURL(t))
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start credbroker dev: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("credbroker dev stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
	})
	waitFor := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !cond() {
			select {
			case err := <-exited:
				stopped = true
				t.Fatalf("credbroker dev exited while waiting for %s: %v", what, err)
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %s: no %s", timeout, what)
			}
		}
	}

	waitFor("banner", 2*time.Minute, func() bool { return strings.Contains(stdout.String(), "credbroker dev is running on http://"+listen) })
	banner := stdout.String()
	if m := regexp.MustCompile(`metrics: http://(127\.0\.0\.1:\d+)/metrics`).FindStringSubmatch(banner); m == nil || m[1] == "127.0.0.1:0" {
		t.Errorf("the banner names no metrics address it listens on:\n%s", banner)
	}
	env := []string{"CREDBROKER_ADDR=http://" + listen, "CREDBROKER_TOKEN=", "CREDBROKER_TOKEN_FILE=" + filepath.Join(dir, "dev-token")}
	roles := func() string {
		t.Helper()
		out, errOut, code := harness.RunCLI(t, env, "roles")
		if code != 0 {
			t.Fatalf("credbroker roles: exit %d: %s", code, errOut)
		}
		return out
	}
	if out := roles(); !strings.Contains(out, "demo-readonly") || !strings.Contains(out, "demo-readwrite") {
		t.Fatalf("credbroker roles with the dev token:\n%s", out)
	}

	// SIGHUP re-reads dev.yaml: a role taken out of the policy is gone.
	cfgPath := filepath.Join(dir, "dev.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(cfg), "roles: [demo-readonly, demo-readwrite", "roles: [demo-readonly", 1)
	if edited == string(cfg) {
		t.Fatalf("dev.yaml has no policy granting demo-readwrite:\n%s", cfg)
	}
	if err := os.WriteFile(cfgPath, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("config reloaded log line", time.Minute, func() bool { return strings.Contains(stderr.String(), "config reloaded") })
	if out := roles(); !strings.Contains(out, "demo-readonly") || strings.Contains(out, "demo-readwrite") {
		t.Fatalf("credbroker roles after the reload:\n%s", out)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("credbroker dev did not exit cleanly on SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("credbroker dev still runs 30s after SIGTERM")
	}
	if logs := stderr.String(); strings.Contains(logs, "DATA RACE") || strings.Contains(logs, "panic:") {
		t.Errorf("credbroker dev reported a data race or panicked")
	}
}

// lockedBuffer is a bytes.Buffer a process writes while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
