package deploy

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// repoRoot is the repository's top directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot find the test's source file")
	}
	root, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	return root
}

// requireServices is whether a missing tool fails the test rather than
// skipping it (CI).
func requireServices() bool { return os.Getenv(plugintest.RequireServicesEnv) == "1" }
