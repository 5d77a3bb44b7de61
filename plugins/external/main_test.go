package external_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// binDir holds the test programs, built once per run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "credbroker-external-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	buildMu sync.Mutex
	built   = map[string]error{}
)

// program builds the test program test/plugins/<name> (once) and returns
// its path and SHA-256.
func program(t testing.TB, name string) (path, sum string) {
	t.Helper()
	path = filepath.Join(binDir, name)
	buildMu.Lock()
	err, ok := built[name]
	if !ok {
		var out bytes.Buffer
		cmd := exec.Command("go", "build", "-o", path, "github.com/credbroker/credbroker/test/plugins/"+name)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err = cmd.Run(); err != nil {
			err = fmt.Errorf("go build %s: %v\n%s", name, err, out.String())
		}
		built[name] = err
	}
	buildMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return path, fileSum(t, path)
}

func fileSum(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
