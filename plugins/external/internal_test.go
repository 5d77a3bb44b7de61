package external

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// records is a log handler's output, safe for concurrent writes.
type records struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *records) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(b)
}

func (r *records) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// TestOutputRateLimit: a program that floods its output gets a burst of
// records, then one record saying how many lines were dropped once lines
// are logged again, and another at its exit; its tail still has its last
// lines.
func TestOutputRateLimit(t *testing.T) {
	var log records
	o := newOutput(slog.New(slog.NewTextHandler(&log, nil)), nil)
	now := time.Unix(1_700_000_000, 0)
	o.now = func() time.Time { return now }
	s := o.stream("stdout")
	const flood = 10_000
	for i := range flood {
		fmt.Fprintf(s, "line %d\n", i)
	}
	if n := strings.Count(log.String(), "plugin program output"); n != outputBurst {
		t.Fatalf("%d of %d lines logged at once, want the burst, %d", n, flood, outputBurst)
	}
	if !strings.Contains(o.tailText(), fmt.Sprintf("line %d", flood-1)) {
		t.Errorf("the tail lost the last line: %s", o.tailText())
	}

	now = now.Add(time.Second)
	fmt.Fprintln(s, "after a second")
	want := fmt.Sprintf("%d lines of plugin program output dropped", flood-outputBurst)
	if got := log.String(); !strings.Contains(got, want) || !strings.Contains(got, "after a second") {
		t.Fatalf("after a second, the log does not say %q and the new line:\n%s", want, got[max(0, len(got)-400):])
	}
	before := strings.Count(log.String(), "\n")
	for i := range 2 * outputRate {
		fmt.Fprintf(s, "more %d\n", i)
	}
	s.flush()
	o.finish()
	got := log.String()
	// "after a second" took one of the outputRate tokens a second gave.
	if n := strings.Count(got, "\n") - before; n != outputRate {
		t.Errorf("%d records for %d lines a second after, want %d lines and one drop record", n, 2*outputRate, outputRate-1)
	}
	if !strings.Contains(got, fmt.Sprintf("%d lines of plugin program output dropped", outputRate+1)) {
		t.Errorf("the exit does not say the lines dropped at the end:\n%s", got[max(0, len(got)-400):])
	}
}

// TestSuperviseAfterClose: when the supervisor wakes with Close's cancel and
// the program's exit both ready, it says nothing: the exit is Close's.
// select picks at random, so a supervisor that does not look again at its
// context logs an error about one run in two.
func TestSuperviseAfterClose(t *testing.T) {
	var log records
	d := &Driver{cfg: Config{Name: "probe-be"}}
	d.cfg.setDefaults()
	d.SetLogger(slog.New(slog.NewTextHandler(&log, nil)))
	for range 30 {
		p := &Plugin{d: d}
		p.ctx, p.cancel = context.WithCancel(context.Background())
		inst := &instance{
			cmd:     exec.Command("/nonexistent"),
			dir:     t.TempDir(),
			stdin:   io.NopCloser(nil),
			tr:      &http.Transport{},
			out:     newOutput(d.logger(), nil),
			started: time.Now(),
			done:    make(chan struct{}),
		}
		close(inst.done)
		p.cancel()
		p.wg.Add(1)
		p.supervise(inst)
	}
	if got := log.String(); strings.Contains(got, "exited") {
		t.Errorf("a closed plugin's exit was logged:\n%s", got)
	}
}

// build builds test/plugins/name into dir.
func build(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	out, err := exec.Command("go", "build", "-o", path, "github.com/credbroker/credbroker/test/plugins/"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	return path
}

// TestRunsWhatWasHashed replaces the program's file between the hash and
// the start: what starts is the file that was hashed, not the new one at
// the path.
func TestRunsWhatWasHashed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the program runs from its open file on Linux only (/proc/self/fd)")
	}
	dir := t.TempDir()
	probe, other := build(t, dir, "probe"), build(t, t.TempDir(), "grpconly")
	b, err := os.ReadFile(probe)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	cfg := Config{Name: "probe-be", Command: []string{probe}, SHA256: hex.EncodeToString(sum[:]), SocketDir: t.TempDir()}
	cfg.setDefaults()

	exe, err := openProgram(probe, cfg.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	// The swap: a new file at the path, as a rename of a same-user process
	// would make it.
	b, err = os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(probe+".new", b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(probe+".new", probe); err != nil {
		t.Fatal(err)
	}
	inst, err := spawn(&cfg, exe, nil, newOutput(slog.New(slog.DiscardHandler), nil))
	_ = exe.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer inst.stop(cfg.StopTimeout)
	ctx, cancel := context.WithTimeout(t.Context(), cfg.StartTimeout)
	defer cancel()
	hs, err := inst.handshake(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if hs.name != "probe" {
		t.Errorf("the program that started says it is %q, want probe: the file at the path ran, not the one hashed", hs.name)
	}
}
