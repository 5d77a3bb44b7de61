package external_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestIsolation runs the probe program under test/plugins/isolation, which
// plays the broker and then a sibling process of the same user: the sibling
// can neither read the program's environment (the backend's secrets) nor
// talk to it on its socket, while the broker can. Run from its open file
// as the broker runs it, the program names itself after its path again. As root, which passes
// every such check with CAP_SYS_PTRACE, the three run as nobody.
func TestIsolation(t *testing.T) {
	probe, _ := program(t, "probe")
	iso, _ := program(t, "isolation")
	cmd := exec.Command(iso, probe)
	if os.Getuid() == 0 {
		// nobody must reach both programs: a copy in a directory it may
		// enter.
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range []*string{&probe, &iso} {
			to := filepath.Join(dir, filepath.Base(*p))
			copyFile(t, *p, to)
			*p = to
		}
		if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil { // t.TempDir's parent is 0700
			t.Fatal(err)
		}
		cmd = exec.Command(iso, probe)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Dir = "/"
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("isolation: %v\n%s", err, out)
	}
	for _, want := range []string{"parent handshake: ok", "sibling environ: refused", "sibling handshake: refused", "program name: probe\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("isolation does not say %q:\n%s", want, out)
		}
	}
	if !strings.Contains(string(out), "refused a connection from process") {
		t.Errorf("the program did not say on stderr that it refused the sibling:\n%s", out)
	}
}
