package e2e_test

import (
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/test/harness"
)

// background is a credbroker command a test runs beside it (agent, dev):
// started, waited for, and killed when the test ends if still running.
type background struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // what Wait returned, once exited is closed
}

// startBackground starts the built binary with args and env added to the
// test's environment, its stderr to stderr (nil: discarded).
func startBackground(t *testing.T, env []string, stderr io.Writer, args ...string) *background {
	t.Helper()
	bg := &background{cmd: exec.Command(harness.Binary(t), args...), exited: make(chan struct{})}
	bg.cmd.Env = append(os.Environ(), env...)
	bg.cmd.Stderr = stderr
	if err := bg.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { bg.err = bg.cmd.Wait(); close(bg.exited) }()
	t.Cleanup(func() {
		_ = bg.cmd.Process.Kill()
		<-bg.exited
	})
	return bg
}

// asHolder is the environment of a client command calling b with token.
func asHolder(b *harness.Broker, token string) []string {
	return []string{"CREDBROKER_ADDR=" + b.Addr, "CREDBROKER_TOKEN_FILE=", "CREDBROKER_TOKEN=" + token}
}

// stopAndWait sends the command SIGTERM and fails the test unless it exits
// 0 within d; say describes the command's output for the failure.
func (bg *background) stopAndWait(t *testing.T, d time.Duration, say func() string) {
	t.Helper()
	if err := bg.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bg.exited:
		if bg.err != nil {
			t.Fatalf("%s exited with %v: %s", bg.cmd.Args[1], bg.err, say())
		}
	case <-time.After(d):
		t.Fatalf("%s did not exit on SIGTERM: %s", bg.cmd.Args[1], say())
	}
}

// freeAddr returns a loopback address nothing listens on (for a server the
// test starts as a separate process).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
