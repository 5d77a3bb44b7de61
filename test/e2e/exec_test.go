package e2e_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/test/harness"
)

// execProc is a `credbroker exec` running in the background.
type execProc struct {
	cmd    *exec.Cmd
	stderr *safeBuffer
	exited chan struct{}
	err    error // what Wait returned; read after exited
}

// startExec runs `credbroker exec` with args against b, as appSubject.
func startExec(t *testing.T, d *harness.Deployment, b *harness.Broker, args ...string) *execProc {
	t.Helper()
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)
	p := &execProc{stderr: &safeBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(harness.Binary(t), append([]string{"exec"}, args...)...)
	p.cmd.Env = append(os.Environ(), "CREDBROKER_ADDR="+b.Addr, "CREDBROKER_TOKEN_FILE=", "CREDBROKER_TOKEN="+token)
	p.cmd.Stderr = p.stderr
	// The command leads a process group of its own and shares exec's
	// stderr: should it outlive a killed exec, Wait still returns.
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		// SIGTERM first, so that exec stops its command (which SIGKILL
		// would leave running) after a test that failed half-way.
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// stop sends credbroker SIGTERM and returns its exit status once it exited.
func (p *execProc) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("credbroker exec did not exit within 30 s of SIGTERM")
	}
	var exitErr *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &exitErr):
		return exitErr.ExitCode()
	}
	t.Fatalf("credbroker exec: %v", p.err)
	return -1
}

// distinctLines returns the distinct non-empty lines of file, in order.
func distinctLines(file string) []string {
	data, _ := os.ReadFile(file)
	var out []string
	for l := range strings.SplitSeq(string(data), "\n") {
		if l != "" && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

// noUserLeft fails the test unless every lease in the store is REVOKED and
// no user of users is left in the backend, polling up to a deadline (the
// revokes of the old leases run in the background, and a lease that expired
// first is revoked by the reaper).
func noUserLeft(t *testing.T, d *harness.Deployment, users []string) {
	t.Helper()
	eventually(t, 30*time.Second, "users or leases left behind", func() bool {
		for _, l := range d.Store.Leases(t) {
			if l.State != "REVOKED" {
				return false
			}
		}
		for _, u := range users {
			if d.Backend.RoleExists(t, u) {
				return false
			}
		}
		return true
	})
}

// TestExecRotatesPastMaxTTL: with 2 s leases renewable to 4 s, `credbroker
// exec` replaces the credential before each lease's max expiry and restarts
// its command with the new user's environment; SIGTERM to credbroker reaches
// the command, credbroker exits with its status, and no user is left behind.
func TestExecRotatesPastMaxTTL(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "2s", "4s", "")
	file := filepath.Join(t.TempDir(), "users")
	// Each run appends its user, whom it logs in as, and its password (to
	// look for in credbroker's stderr), and exits 7 on SIGTERM (the status
	// credbroker must pass on).
	script := `u=$(psql -tAc 'SELECT current_user') || u="login-failed"
echo "$PGUSER $u $PGPASSWORD" >> "$1"
trap 'exit 7' TERM
while :; do sleep 0.1; done`
	p := startExec(t, d, b, "readonly", "--restart-grace", "5s", "--", "sh", "-c", script, "sh", file)

	deadline := time.Now().Add(12 * time.Second)
	for len(distinctLines(file)) < 3 && time.Now().Before(deadline) {
		select {
		case <-p.exited:
			t.Fatalf("credbroker exec ended: %v\n%s", p.err, p.stderr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	runs := distinctLines(file)
	if len(runs) < 3 {
		t.Fatalf("in 12 s the command ran as %d users (%q), want at least 3 (two restarts)", len(runs), runs)
	}
	var users, passwords []string
	for _, r := range runs {
		f := strings.Fields(r)
		if len(f) != 3 || f[0] != f[1] || !strings.HasPrefix(f[0], "cb_readonly_") {
			t.Errorf("a run of the command: %.40q…, want its PGUSER logged in as itself", r)
			continue
		}
		b.Track(f[2])
		passwords = append(passwords, f[2])
		if slices.Contains(users, f[0]) {
			t.Errorf("user %s ran twice: the credential was not replaced", f[0])
		}
		users = append(users, f[0])
	}

	if code := p.stop(t); code != 7 {
		t.Errorf("credbroker exec exited %d after SIGTERM, want the command's 7\n%s", code, p.stderr)
	}
	if leases := d.Store.Leases(t); len(leases) < 3 {
		t.Errorf("%d leases issued, want one a run", len(leases))
	}
	noUserLeft(t, d, users)
	for _, l := range d.Store.Leases(t) {
		if l.RevokeReason != "revoked by holder" {
			t.Logf("lease %s: %s (not revoked by exec)", l.ID, l.RevokeReason)
		}
	}
	stderr := p.stderr.String()
	t.Logf("credbroker exec's stderr:\n%s", stderr)
	if !strings.Contains(stderr, "restarting sh") {
		t.Errorf("exec's stderr does not say it restarted the command:\n%s", stderr)
	}
	for _, pw := range passwords {
		if strings.Contains(stderr, pw) {
			t.Errorf("exec's stderr holds an issued password")
		}
	}
	b.AssertNoSecrets(t)
}

// TestExecOnRotateSignal: with --on-rotate=signal the command keeps running;
// exec rewrites --env-file with a new credential and sends it SIGHUP, the
// command re-reads the file and logs in as the new user, and the old lease
// is revoked --restart-grace later.
func TestExecOnRotateSignal(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "2s", "4s", "")
	dir := t.TempDir()
	file, envFile := filepath.Join(dir, "runs"), filepath.Join(dir, "db.env")
	script := `echo "start $PGUSER" >> "$1"
trap '. "$CREDBROKER_ENV_FILE"; echo "hup $PGUSER $(psql -tAc "SELECT current_user")" >> "$1"' HUP
trap 'exit 0' TERM
while :; do sleep 0.1; done`
	p := startExec(t, d, b, "readonly", "--on-rotate", "signal", "--env-file", envFile, "--restart-grace", "1s",
		"--", "sh", "-c", script, "sh", file)

	var runs []string
	eventually(t, 20*time.Second, "the command got no SIGHUP", func() bool {
		runs = distinctLines(file)
		return len(runs) >= 2
	})
	start, hup := strings.Fields(runs[0]), strings.Fields(runs[1])
	if len(start) != 2 || start[0] != "start" || len(hup) != 3 || hup[0] != "hup" {
		t.Fatalf("the command logged %q, want a start, then a SIGHUP", runs)
	}
	oldUser, newUser := start[1], hup[1]
	if newUser == oldUser || hup[2] != newUser {
		t.Errorf("after SIGHUP the env file's user is %s and psql logs in as %s; the first user was %s", newUser, hup[2], oldUser)
	}
	if info, err := os.Stat(envFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("--env-file: %v, mode %v; want 0600", err, info.Mode().Perm())
	}
	data, _ := os.ReadFile(envFile)
	var password string
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "PGPASSWORD="); ok {
			password = strings.Trim(v, "'")
			b.Track(password)
		}
	}
	if password == "" {
		t.Errorf("--env-file holds no PGPASSWORD (%d bytes)", len(data))
	}
	// The old lease is revoked while the command runs on (the user is
	// dropped first, then the lease is marked REVOKED).
	eventually(t, 20*time.Second, "the old lease outlived --restart-grace after SIGHUP", func() bool {
		if d.Backend.RoleExists(t, oldUser) {
			return false
		}
		for _, l := range d.Store.Leases(t) {
			if l.Username == oldUser && l.State != "REVOKED" {
				return false
			}
		}
		return true
	})
	select {
	case <-p.exited:
		t.Fatalf("credbroker exec ended: %v\n%s", p.err, p.stderr)
	default:
	}
	if starts := slices.DeleteFunc(distinctLines(file), func(l string) bool { return !strings.HasPrefix(l, "start ") }); len(starts) != 1 {
		t.Errorf("the command was started %d times, want once (signal mode does not restart)", len(starts))
	}

	if code := p.stop(t); code != 0 {
		t.Errorf("credbroker exec exited %d after SIGTERM, want the command's 0\n%s", code, p.stderr)
	}
	if _, err := os.Stat(envFile); !os.IsNotExist(err) {
		t.Errorf("--env-file is still there after exec ended: %v", err)
	}
	noUserLeft(t, d, []string{oldUser, newUser})
	stderr := p.stderr.String()
	t.Logf("credbroker exec's stderr:\n%s", stderr)
	if !strings.Contains(stderr, "sending sh SIGHUP") {
		t.Errorf("exec's stderr does not say it sent SIGHUP:\n%s", stderr)
	}
	if password != "" && strings.Contains(stderr, password) {
		t.Error("exec's stderr holds an issued password")
	}
	b.AssertNoSecrets(t)
}

// TestExecOnRotateSignalEnvFileUnwritable: with --on-rotate=signal, a
// rotation whose credential cannot be written to --env-file sends no
// SIGHUP (the command would reload the old credential from the file and
// lose it when the old lease is revoked): exec keeps the old lease, whose
// user still logs in, revokes each new lease at once, and tries again until
// the file can be written; then the command gets SIGHUP and the new user.
func TestExecOnRotateSignalEnvFileUnwritable(t *testing.T) {
	t.Parallel()
	// Leases that cannot be renewed (default_ttl = max_ttl): exec rotates
	// 4 s (a third of 12 s) before the first one ends, which leaves the
	// old credential valid for a while after a failed rewrite.
	d, b := setup(t, "12s", "12s", "")
	dir := t.TempDir()
	file, envFile, oldEnv := filepath.Join(dir, "runs"), filepath.Join(dir, "db.env"), filepath.Join(dir, "old.env")
	script := `echo "start $PGUSER" >> "$1"
trap '. "$CREDBROKER_ENV_FILE"; echo "hup $PGUSER $(psql -tAc "SELECT current_user")" >> "$1"' HUP
trap 'exit 0' TERM
while :; do sleep 0.1; done`
	p := startExec(t, d, b, "readonly", "--on-rotate", "signal", "--env-file", envFile, "--restart-grace", "1s",
		"--", "sh", "-c", script, "sh", file)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("credbroker exec's stderr:\n%s", p.stderr)
		}
	})

	var oldUser string
	eventually(t, 20*time.Second, "the command did not start", func() bool {
		runs := distinctLines(file)
		if len(runs) == 0 {
			return false
		}
		f := strings.Fields(runs[0])
		if len(f) != 2 || f[0] != "start" {
			t.Fatalf("the command logged %q, want a start", runs)
		}
		oldUser = f[1]
		return true
	})
	data, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	oldPassword := readEnvFile(envFile)["PGPASSWORD"]
	b.Track(oldPassword)
	if err := os.WriteFile(oldEnv, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// From now on the env file cannot be replaced: exec's rename onto a
	// directory fails, root or not.
	if err := os.Remove(envFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(envFile, 0o700); err != nil {
		t.Fatal(err)
	}

	// The rotation fails, and so does the retry: two new leases, each
	// revoked by exec, its user dropped.
	var failed []harness.LeaseRow
	eventually(t, 30*time.Second, "exec did not revoke two new leases while the env file could not be written", func() bool {
		failed = nil
		for _, l := range d.Store.Leases(t) {
			if l.Username == oldUser {
				continue
			}
			if l.State != "REVOKED" || d.Backend.RoleExists(t, l.Username) {
				return false // issued and not revoked yet: look again
			}
			failed = append(failed, l)
		}
		return len(failed) >= 2
	})
	for _, l := range failed {
		if l.RevokeReason != "revoked by holder" {
			t.Errorf("new lease %s: revoked for %q, want revoked by exec (its holder)", l.ID, l.RevokeReason)
		}
	}
	if runs := distinctLines(file); len(runs) != 1 {
		t.Fatalf("the command logged %q while the env file could not be written, want its start alone (no SIGHUP)", runs)
	}
	// The old credential still works: the command keeps using it.
	psql := exec.Command("sh", "-c", `set -a; . "$1"; psql -tAc 'SELECT current_user'`, "sh", oldEnv)
	psql.Env = os.Environ()
	if out, err := psql.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != oldUser {
		t.Fatalf("psql as the old user %s after the failed rotations: %v: %s\n%s", oldUser, err, out, p.stderr)
	}
	for _, l := range d.Store.Leases(t) {
		if l.Username == oldUser && l.State != "ACTIVE" {
			t.Errorf("the old lease is %s while the command still uses it", l.State)
		}
	}
	t.Logf("%d rotations failed while the env file was a directory; the old user %s still logs in", len(failed), oldUser)

	// The file can be written again: the next try rotates.
	if err := os.Remove(envFile); err != nil {
		t.Fatal(err)
	}
	var runs []string
	eventually(t, 60*time.Second, "the command got no SIGHUP once the env file could be written", func() bool {
		runs = distinctLines(file)
		return len(runs) >= 2
	})
	hup := strings.Fields(runs[1])
	if len(hup) != 3 || hup[0] != "hup" || hup[1] == oldUser || hup[2] != hup[1] {
		t.Fatalf("after the rotation the command logged %q, want a SIGHUP and a login as a new user", runs)
	}
	newUser := hup[1]
	b.Track(readEnvFile(envFile)["PGPASSWORD"])
	eventually(t, 20*time.Second, "the old lease outlived --restart-grace after SIGHUP", func() bool {
		return !d.Backend.RoleExists(t, oldUser)
	})

	if code := p.stop(t); code != 0 {
		t.Errorf("credbroker exec exited %d after SIGTERM, want the command's 0\n%s", code, p.stderr)
	}
	users := []string{oldUser, newUser}
	for _, l := range failed {
		users = append(users, l.Username)
	}
	noUserLeft(t, d, users)
	stderr := p.stderr.String()
	t.Logf("credbroker exec's stderr:\n%s", stderr)
	if !strings.Contains(stderr, "not sending sh SIGHUP") {
		t.Errorf("exec's stderr does not say why it sent no SIGHUP:\n%s", stderr)
	}
	if oldPassword == "" || strings.Contains(stderr, oldPassword) {
		t.Errorf("the old env file held no password, or exec's stderr holds it")
	}
	b.AssertNoSecrets(t)
}

// TestExecOnRotateExit: with --on-rotate=exit, exec stops the command when
// its credential is due for replacement and exits 75 (EX_TEMPFAIL) with the
// lease revoked; a bad --on-rotate or --restart-signal is a usage error.
func TestExecOnRotateExit(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "2s", "4s", "")
	p := startExec(t, d, b, "readonly", "--on-rotate", "exit", "--restart-signal", "INT",
		"--", "sh", "-c", `trap 'exit 0' INT; while :; do sleep 0.1; done`)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("credbroker exec --on-rotate=exit still runs 30 s after a 4 s max TTL")
	}
	var exitErr *exec.ExitError
	if !errors.As(p.err, &exitErr) || exitErr.ExitCode() != 75 {
		t.Fatalf("credbroker exec --on-rotate=exit ended with %v, want exit status 75\n%s", p.err, p.stderr)
	}
	leases := d.Store.Leases(t)
	if len(leases) != 1 || leases[0].State != "REVOKED" || leases[0].RevokeReason != "revoked by holder" {
		t.Errorf("leases after exec exited: %+v, want the one lease revoked by its holder", leases)
	}
	if !strings.Contains(p.stderr.String(), "due for replacement") {
		t.Errorf("exec's stderr does not say why it exited:\n%s", p.stderr)
	}

	token := d.Issuer.Token(t, appSubject, nil, time.Hour)
	for _, bad := range [][]string{
		{"--on-rotate", "reload"},
		{"--restart-signal", "SIGBOGUS"},
		{"--restart-signal", "0"},
		{"--restart-grace", "-1s"},
		{"--on-rotate", "signal"}, // without --env-file the command could not see the new credential
	} {
		args := append(append([]string{"exec", "readonly"}, bad...), "--", "true")
		if _, stderr, code := b.CLI(t, token, args...); code != 2 || !strings.Contains(stderr, bad[0]) {
			t.Errorf("exec %v: exit %d, stderr %q; want exit 2 naming %s", bad, code, stderr, bad[0])
		}
	}
	if n := len(d.Store.Leases(t)); n != 1 {
		t.Errorf("usage errors issued credentials: %d leases", n)
	}
}
