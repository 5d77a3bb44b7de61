package broker

import (
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/plugins/plugintest"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/proto/credbroker/v1/credbrokerv1connect"
)

// TestIssueToADownProgram: a request for a role whose backend program is
// down is answered unavailable before a lease is written, so the store
// gets no PENDING row (and the reaper nothing to clean up).
func TestIssueToADownProgram(t *testing.T) {
	path, sum := probeProgram(t)
	t.Setenv("PROBE_ADMIN_PASSWORD", "probe-admin-Secret-4e1b")
	admin := plugintest.PostgresURL(t)
	dir := t.TempDir()
	b := &testBroker{issuer: newTestIssuer(t, dir), admin: admin, logs: &syncBuffer{}}
	b.storeDSN = plugintest.NewTestDatabase(t, admin)
	storeFile, backendFile := filepath.Join(dir, "store.dsn"), filepath.Join(dir, "backend.dsn")
	for file, dsn := range map[string]string{storeFile: b.storeDSN, backendFile: plugintest.NewTestDatabase(t, admin)} {
		if err := os.WriteFile(file, []byte(dsn), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config := strings.Replace(harnessConfig, "roles:\n", fmt.Sprintf(
		"  - {name: probe-be, plugin: external, environment: test, owner: team-test, command: [%s], sha256: %s, env: {PROBE_ADMIN: env:PROBE_ADMIN_PASSWORD}, connection: {password: env:PROBE_ADMIN}}\n"+
			"roles:\n  - {name: probe-role, backend: probe-be, default_ttl: 1m, max_ttl: 5m, probe: {grant: read}}\n", path, sum), 1)
	config = strings.Replace(config, "roles: [reader, fixed]", "roles: [reader, fixed, probe-role]", 1)
	cfg, err := ParseConfig(fmt.Appendf(nil, config, storeFile, backendFile, b.issuer.yaml()), testDrivers)
	if err != nil {
		t.Fatal(err)
	}
	b.srv, err = New(t.Context(), cfg, Options{Logger: slog.New(slog.NewTextHandler(b.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	b.http = httptest.NewServer(b.srv.Handler())
	b.cred = credbrokerv1connect.NewCredentialServiceClient(b.http.Client(), b.http.URL)
	t.Cleanup(b.Close)
	ctx := t.Context()
	app := b.token(t, "app")
	if _, err := b.cred.IssueCredential(ctx, authed(app, &credbrokerv1.IssueCredentialRequest{Role: "probe-role"})); err != nil {
		t.Fatalf("IssueCredential with the program up: %v", err)
	}

	// Down for good: a new file at the path fails the pin on every restart.
	if err := os.WriteFile(path+".new", []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	for _, pid := range runningProgram(t, path) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.logs.String(), "the plugin program exited") {
		if time.Now().After(deadline) {
			t.Fatalf("the program's death was not seen:\n%s", b.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	before := countLeases(t, b.storeDSN)
	_, err = b.cred.IssueCredential(ctx, authed(app, &credbrokerv1.IssueCredentialRequest{Role: "probe-role"}))
	wantCode(t, "IssueCredential with the program down", err, connect.CodeUnavailable, "")
	if after := countLeases(t, b.storeDSN); after != before {
		t.Errorf("the refused request wrote %d lease rows", after-before)
	}
}

// runningProgram returns the pids of this process's children whose command
// line starts with path (the long-running and the validation instance).
func runningProgram(t *testing.T, path string) []int {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err != nil || !strings.HasPrefix(string(b), path+"\x00") {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(filepath.Dir(f), "stat"))
		if err != nil {
			continue
		}
		var pid, ppid int
		var state string
		s := string(stat)
		if _, err := fmt.Sscanf(s[strings.LastIndexByte(s, ')')+2:], "%s %d", &state, &ppid); err != nil || ppid != os.Getpid() {
			continue
		}
		if _, err := fmt.Sscanf(s, "%d", &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		t.Fatalf("no child runs %s", path)
	}
	return pids
}

func countLeases(t *testing.T, dsn string) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM leases").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
