package e2e_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/test/harness"
)

// TestOutputOnATerminal: with stdout a terminal (a pseudo-terminal), the
// client commands print tables, the state coloured unless NO_COLOR is set,
// and creds prints its block with the warning on stderr.
func TestOutputOnATerminal(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "15m", "1h", "")
	app := d.Issuer.Token(t, appSubject, nil, time.Hour)

	out, stderr := onTerminal(t, b, app, nil, "creds", "readonly")
	block := blockValues(out)
	b.Track(block["password"])
	if block["lease"] == "" || block["password"] == "" || !inMinutes.MatchString(block["expires"]) || strings.HasPrefix(out, "{") {
		t.Errorf("creds on a terminal is not the block:\n%s", out)
	}
	if !strings.Contains(stderr, "the password is shown") || strings.Contains(stderr, block["password"]) {
		t.Errorf("creds on a terminal: stderr %q, want the warning without the password", stderr)
	}

	out, _ = onTerminal(t, b, app, nil, "lease", "list")
	if !strings.HasPrefix(out, "ID ") || !strings.Contains(out, "\x1b[32mactive\x1b[0m") || !inMinutes.MatchString(out) {
		t.Errorf("lease list on a terminal is not a coloured table:\n%q", out)
	}
	out, _ = onTerminal(t, b, app, []string{"NO_COLOR=1"}, "lease", "list")
	if !strings.HasPrefix(out, "ID ") || strings.Contains(out, "\x1b[") || !strings.Contains(out, "active") {
		t.Errorf("lease list on a terminal with NO_COLOR has colour codes or no table:\n%q", out)
	}
	out, _ = onTerminal(t, b, app, nil, "roles")
	if !strings.HasPrefix(out, "ROLE ") || !strings.Contains(out, "15m") {
		t.Errorf("roles on a terminal is not a table:\n%s", out)
	}
}

// inMinutes is how a table says when a 15m lease expires.
var inMinutes = regexp.MustCompile(`in \d+m\b`)

// onTerminal runs the CLI against b with stdout a pseudo-terminal and
// returns what it wrote there (with the terminal's \r\n made \n) and on
// stderr. It skips where the system has no pseudo-terminals.
func onTerminal(t *testing.T, b *harness.Broker, token string, env []string, args ...string) (stdout, stderr string) {
	t.Helper()
	ptm, pts := harness.OpenPTY(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), args...)
	cmd.Env = append(os.Environ(), "CREDBROKER_ADDR="+b.Addr, "CREDBROKER_TOKEN_FILE=", "CREDBROKER_TOKEN="+token, "NO_COLOR=")
	cmd.Env = append(cmd.Env, env...)
	var errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = pts, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close() // the child has its copy; reads end (EIO) when it exits
	read := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		chunk := make([]byte, 4096)
		for {
			n, err := ptm.Read(chunk)
			buf.Write(chunk[:n])
			if err != nil {
				read <- buf.Bytes()
				return
			}
		}
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("credbroker %v on a terminal: %v\n%s", args, err, errOut.String())
	}
	var out []byte
	select {
	case out = <-read:
	case <-ctx.Done():
		t.Fatalf("credbroker %v: the terminal did not close", args)
	}
	return strings.ReplaceAll(string(out), "\r\n", "\n"), errOut.String()
}
