package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
	listen := freeAddr(t)

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

// TestDevRevokesOnStop: `credbroker dev` stopped with Ctrl-C (SIGINT)
// revokes every lease it issued, says so, and the users are gone from each
// backend, as its own client sees it: Redis ACL USERS, MySQL's mysql.user,
// RabbitMQ's management API, PostgreSQL's pg_roles. No password reaches its
// output.
func TestDevRevokesOnStop(t *testing.T) {
	t.Parallel()
	rd := harness.NewRedis(t)
	my := harness.NewMySQL(t)
	rabbit := harness.NewRabbitMQ(t)
	pgURL := plugintest.PostgresURL(t)
	dir := t.TempDir()
	listen := freeAddr(t)

	cmd := exec.Command(harness.Binary(t), "dev", "--dir", dir, "--listen", listen, "--metrics-listen", "")
	cmd.Env = append(os.Environ(), "CREDBROKER_DATABASE_URL="+pgURL,
		"CREDBROKER_DEV_REDIS_ADDR="+rd.Addr,
		"CREDBROKER_DEV_MYSQL_DSN="+my.DSN,
		"CREDBROKER_DEV_RABBITMQ_MANAGEMENT_URL="+plugintest.RabbitMQManagementURL(t),
		"CREDBROKER_DEV_RABBITMQ_AMQP_URL="+rabbit.AMQPURL)
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start credbroker dev: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	// Whatever happens, no user of this test is left behind.
	var users []string
	userList := func() []string { return users }
	rd.DeleteUsersAtEnd(t, userList)
	my.DropUsersAtEnd(t, userList)
	rabbit.DeleteUsersAtEnd(t, userList)
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), pgURL)
		if err != nil {
			t.Errorf("drop the PostgreSQL users: %v", err)
			return
		}
		defer conn.Close(context.Background())
		for _, u := range users {
			if _, err := conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{u}.Sanitize()); err != nil {
				t.Errorf("drop role %s: %v", u, err)
			}
		}
	})
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("credbroker dev stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(stdout.String(), "credbroker dev is running on http://"+listen) {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("credbroker dev exited before its banner: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no banner after 2 minutes")
		}
	}

	token, err := os.ReadFile(filepath.Join(dir, "dev-token"))
	if err != nil {
		t.Fatal(err)
	}
	issueDev := func(role string) (username, password string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+listen+"/credbroker.v1.CredentialService/IssueCredential", strings.NewReader(`{"role":"`+role+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("issue %s: %v", role, err)
		}
		defer res.Body.Close()
		var out struct {
			Credential struct{ Username, Password string }
		}
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusOK || out.Credential.Username == "" {
			t.Fatalf("issue %s: HTTP %d %v", role, res.StatusCode, err)
		}
		users = append(users, out.Credential.Username)
		return out.Credential.Username, out.Credential.Password
	}
	pgUser := func(name string) bool {
		t.Helper()
		conn, err := pgx.Connect(context.Background(), pgURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var exists bool
		if err := conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		return exists
	}
	backends := []struct {
		role   string
		exists func(string) bool
	}{
		{"demo-redis", func(u string) bool { return rd.UserExists(t, u) }},
		{"demo-mysql", func(u string) bool { return len(my.UserHosts(t, u)) > 0 }},
		{"demo-rabbitmq", func(u string) bool { return rabbit.UserExists(t, u) }},
		{"demo-readonly", pgUser},
	}
	issuedUsers := map[string]string{}
	var passwords []string
	for _, be := range backends {
		u, pw := issueDev(be.role)
		issuedUsers[be.role] = u
		passwords = append(passwords, pw)
		if !be.exists(u) {
			t.Fatalf("%s: the backend has no user %s after the issue", be.role, u)
		}
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("credbroker dev did not exit cleanly on SIGINT: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("credbroker dev still runs a minute after SIGINT")
	}
	if want := fmt.Sprintf("revoked %d leases issued during this session", len(backends)); !strings.Contains(stdout.String(), want) {
		t.Errorf("credbroker dev did not say %q:\n%s", want, stdout.String())
	}
	for _, be := range backends {
		if be.exists(issuedUsers[be.role]) {
			t.Errorf("%s: user %s outlived credbroker dev", be.role, issuedUsers[be.role])
		}
	}
	for _, pw := range passwords {
		if strings.Contains(stdout.String(), pw) || strings.Contains(stderr.String(), pw) {
			t.Error("an issued password is in credbroker dev's output")
		}
	}
}
