package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// BinaryEnv names a prebuilt credbroker binary to use instead of building one.
const BinaryEnv = "CREDBROKER_TEST_BINARY"

// buildTimeout bounds `go build` (a cold -race build on two cores takes a
// minute or so).
const buildTimeout = 5 * time.Minute

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Binary returns the path of a credbroker binary built from this module's
// ./cmd/credbroker. It is built once per test process (with -race when the
// test binary has it), into a temporary directory that [Main] removes; set
// CREDBROKER_TEST_BINARY to use a prebuilt one instead.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		if p := os.Getenv(BinaryEnv); p != "" {
			build.path, build.err = filepath.Abs(p)
			return
		}
		build.dir, build.err = os.MkdirTemp("", "credbroker-harness-")
		if build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "credbroker")
		args := []string{"build", "-o", build.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/credbroker/credbroker/cmd/credbroker")
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			build.err = fmt.Errorf("go %v: %w\n%s", args, err, out.String())
		}
	})
	if build.err != nil {
		t.Fatalf("harness: build credbroker: %v", build.err)
	}
	return build.path
}

// Main runs the tests of m, removes the binary [Binary] built, and exits. Call
// it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// RunCLI runs the credbroker binary with args and env (added to the test
// process's environment) and returns what it printed and its exit status.
// It fails the test if the binary cannot be started or runs for more than a
// minute.
func RunCLI(t testing.TB, env []string, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		t.Fatalf("harness: credbroker %v did not finish in a minute\nstdout:\n%s\nstderr:\n%s", args, out.String(), errOut.String())
	case errors.As(err, &exitErr):
		return out.String(), errOut.String(), exitErr.ExitCode()
	default:
		t.Fatalf("harness: run credbroker %v: %v", args, err)
	}
	return out.String(), errOut.String(), 0
}
