package sdk

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestParentOnly: a connection from a process that is not the one wanted
// is closed before a byte is read; the wanted process is served.
func TestParentOnly(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	inner, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	var want atomic.Int64
	want.Store(int64(os.Getppid())) // the test process is not its own parent
	l := &parentOnly{Listener: inner, want: func() int { return int(want.Load()) }, log: &log}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()

	refused, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()
	_ = refused.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := refused.Read(make([]byte, 1)); n != 0 || err == nil || os.IsTimeout(err) {
		t.Fatalf("a connection from another process: read %d, %v; want it closed at once", n, err)
	}

	want.Store(int64(os.Getpid()))
	ok, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	select {
	case c := <-accepted:
		if c == nil {
			t.Fatal("Accept failed")
		}
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the wanted process's connection was not accepted")
	}
	_ = inner.Close()
	if !strings.Contains(log.String(), "refused a connection from process") {
		t.Errorf("the refusal was not said: %q", log.String())
	}
}
