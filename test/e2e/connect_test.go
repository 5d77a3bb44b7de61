package e2e_test

import (
	"bytes"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/credbroker/credbroker/test/harness"
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

// TestConnectRabbitMQ: RabbitMQ has no client that logs in from the
// credential's variables, so `credbroker connect` opens $SHELL with them set
// and prints the URI with its password masked; the login works while the
// shell runs and is revoked when it ends. The password is never in
// connect's output.
func TestConnectRabbitMQ(t *testing.T) {
	t.Parallel()
	rs := startRabbitMQBroker(t)
	b, token, vhost, mq, store := rs.b, rs.token, rs.vhost, rs.mq, rs.store

	dir := t.TempDir()
	urlFile, doneFile := filepath.Join(dir, "url"), filepath.Join(dir, "done")
	type result struct {
		stdout, stderr string
		code           int
	}
	cmd := exec.Command(harness.Binary(t), "connect", "events", "--", "-c",
		`umask 077; printf '%s' "$AMQP_URL" > "$1.tmp" && mv "$1.tmp" "$1"; echo "user=$RABBITMQ_USERNAME vhost=$RABBITMQ_VHOST"
while [ ! -e "$2" ]; do sleep 0.1; done`, "sh", urlFile, doneFile)
	cmd.Env = append(os.Environ(), "CREDBROKER_ADDR="+b.Addr, "CREDBROKER_TOKEN_FILE=", "CREDBROKER_TOKEN="+token, "SHELL=/bin/sh")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ran := make(chan result, 1)
	go func() {
		err := cmd.Wait()
		r := result{stdout: stdout.String(), stderr: stderr.String()}
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			r.code = exitErr.ExitCode()
		} else if err != nil {
			r.code = -1
		}
		ran <- r
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var uri string
	eventually(t, 30*time.Second, "the shell connect opened never wrote AMQP_URL", func() bool {
		data, _ := os.ReadFile(urlFile)
		uri = string(data)
		return uri != ""
	})
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "amqp" || u.User == nil {
		t.Fatalf("AMQP_URL in the shell does not parse as an amqp:// login")
	}
	password, _ := u.User.Password()
	b.Track(password, uri)
	conn, err := amqp.DialConfig(uri, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		t.Errorf("amqp dial with the shell's AMQP_URL: %v", redact(err.Error(), password))
	} else {
		conn.Close()
	}
	if err := os.WriteFile(doneFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-ran:
	case <-time.After(time.Minute):
		t.Fatal("credbroker connect did not end after its shell did")
	}
	user := u.User.Username()
	if r.code != 0 || strings.TrimSpace(r.stdout) != "user="+user+" vhost="+vhost {
		t.Fatalf("connect: exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	masked := *u
	masked.User = url.UserPassword(user, "xxxxx")
	for _, want := range []string{masked.String(), "RABBITMQ_PASSWORD", "AMQP_URL"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("connect's stderr does not hold %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, password) || strings.Contains(r.stdout, password) {
		t.Error("connect printed the password")
	}
	if mq.UserExists(t, user) {
		t.Errorf("RabbitMQ user %s still exists after the shell ended", user)
	}
	for _, l := range store.Leases(t) {
		if l.State != "REVOKED" || l.RevokeReason != "revoked by holder" {
			t.Errorf("lease %s is %s (%s) after connect ended", l.ID, l.State, l.RevokeReason)
		}
	}
	b.AssertNoSecrets(t)
}
