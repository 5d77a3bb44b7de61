package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// programs are the binaries Program built, by import path.
var programs struct {
	mu     sync.Mutex
	dir    string
	byPath map[string]*releaseBuild
}

// Program returns the path of the command at import path pkg of this module
// (a backend run as a separate program, say), built once per test process
// with -race when the test binary has it, and its hex SHA-256, as a
// backend's sha256: wants it. [Main] removes it.
func Program(t testing.TB, pkg string) (path, sha256Hex string) {
	t.Helper()
	programs.mu.Lock()
	if programs.byPath == nil {
		programs.byPath = map[string]*releaseBuild{}
	}
	pb := programs.byPath[pkg]
	if pb == nil {
		pb = &releaseBuild{}
		programs.byPath[pkg] = pb
	}
	if programs.dir == "" {
		var err error
		if programs.dir, err = os.MkdirTemp("", "credbroker-programs-"); err != nil {
			programs.mu.Unlock()
			t.Fatalf("harness: %v", err)
		}
	}
	dir := programs.dir
	programs.mu.Unlock()
	pb.once.Do(func() {
		pb.path = filepath.Join(dir, strings.ReplaceAll(strings.Trim(pkg, "/"), "/", "_"))
		args := []string{"build", "-o", pb.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, pkg)
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			pb.err = fmt.Errorf("go %v: %w\n%s", args, err, out.String())
		}
	})
	if pb.err != nil {
		t.Fatalf("harness: build %s: %v", pkg, pb.err)
	}
	data, err := os.ReadFile(pb.path)
	if err != nil {
		t.Fatalf("harness: read %s: %v", pb.path, err)
	}
	sum := sha256.Sum256(data)
	return pb.path, hex.EncodeToString(sum[:])
}

// releases are the binaries ReleaseBinary built, by revision.
var releases struct {
	mu    sync.Mutex
	dirs  []string
	byRev map[string]*releaseBuild
}

type releaseBuild struct {
	once sync.Once
	path string
	err  error
}

// ReleaseBinary returns the path of a credbroker binary built from revision
// rev (a commit, tag or branch) of the git repository this test runs in: the
// source is taken with `git archive rev` into a temporary directory and built
// there with `go build ./cmd/credbroker` (with -race when the test binary has
// it), once per revision and test process; [Main] removes it. It is what
// upgrade tests run as the previous release. The test fails, saying what is
// missing, when git is not on PATH, the test does not run in a git checkout
// or rev is not in it (a shallow clone).
func ReleaseBinary(t testing.TB, rev string) string {
	t.Helper()
	releases.mu.Lock()
	if releases.byRev == nil {
		releases.byRev = map[string]*releaseBuild{}
	}
	rb := releases.byRev[rev]
	if rb == nil {
		rb = &releaseBuild{}
		releases.byRev[rev] = rb
	}
	releases.mu.Unlock()
	rb.once.Do(func() { rb.path, rb.err = buildRelease(rev) })
	if rb.err != nil {
		t.Fatalf("harness: build credbroker at %s: %v", rev, rb.err)
	}
	return rb.path
}

func buildRelease(rev string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	if _, err := exec.LookPath("git"); err != nil {
		return "", fmt.Errorf("git is not on PATH: %w", err)
	}
	root, err := exec.CommandContext(ctx, "git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("the test does not run in a git checkout (git rev-parse --show-toplevel: %w)", err)
	}
	repo := strings.TrimSpace(string(root))
	if err := exec.CommandContext(ctx, "git", "-C", repo, "cat-file", "-e", rev+"^{commit}").Run(); err != nil {
		return "", fmt.Errorf("commit %s is not in the repository at %s (a shallow clone? git fetch --unshallow)", rev, repo)
	}
	dir, err := os.MkdirTemp("", "credbroker-release-")
	if err != nil {
		return "", err
	}
	releases.mu.Lock()
	releases.dirs = append(releases.dirs, dir)
	releases.mu.Unlock()
	src := filepath.Join(dir, "src")
	archive := exec.CommandContext(ctx, "git", "-C", repo, "archive", "--format=tar", rev)
	var gitErr bytes.Buffer
	archive.Stderr = &gitErr
	tarOut, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := archive.Start(); err != nil {
		return "", fmt.Errorf("git archive %s: %w", rev, err)
	}
	untarErr := untar(tarOut, src)
	if err := archive.Wait(); err != nil {
		return "", fmt.Errorf("git archive %s: %w\n%s", rev, err, gitErr.String())
	}
	if untarErr != nil {
		return "", fmt.Errorf("unpack git archive %s: %w", rev, untarErr)
	}
	bin := filepath.Join(dir, "credbroker")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/credbroker")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %v in %s: %w\n%s", args, src, err, out.String())
	}
	return bin, nil
}

// untar writes the regular files and directories of a tar stream under dir.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("archive entry %q leaves the directory", h.Name)
		}
		path := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// Main runs the tests of m, removes the binaries [Binary], [ReleaseBinary]
// and [Program] built, and exits. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	releases.mu.Lock()
	for _, dir := range releases.dirs {
		_ = os.RemoveAll(dir)
	}
	releases.mu.Unlock()
	programs.mu.Lock()
	if programs.dir != "" {
		_ = os.RemoveAll(programs.dir)
	}
	programs.mu.Unlock()
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
