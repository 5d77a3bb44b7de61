//go:build unix

package external_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/plugins/external"
)

// TestStrictModes: a program that someone other than root or the broker's
// user may change is refused before it runs, each case with its reason:
// the file or its directory writable by the group or others, or the file
// owned by another user.
func TestStrictModes(t *testing.T) {
	src, sum := program(t, "probe")
	tests := map[string]struct {
		fix  func(t *testing.T, dir, path string)
		want string
		root bool // needs root, to give the file away
	}{
		"FileGroupWritable": {
			fix:  func(t *testing.T, _, path string) { chmod(t, path, 0o775) },
			want: "the program is writable by its group or others (mode 0775)",
		},
		"FileWorldWritable": {
			fix:  func(t *testing.T, _, path string) { chmod(t, path, 0o757) },
			want: "the program is writable by its group or others (mode 0757)",
		},
		"DirectoryWorldWritable": {
			fix:  func(t *testing.T, dir, _ string) { chmod(t, dir, 0o777) },
			want: "the program's directory is writable by its group or others (mode 0777)",
		},
		"OtherOwner": {
			fix: func(t *testing.T, _, path string) {
				if err := os.Chown(path, 65534, 65534); err != nil {
					t.Fatal(err)
				}
			},
			want: "the program is owned by uid 65534, neither root nor the broker's user",
			root: true,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if tt.root && os.Getuid() != 0 {
				t.Skip("giving a file to another user needs root")
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "probe")
			copyFile(t, src, path)
			tt.fix(t, dir, path)
			pr := setup(t, func(c *external.Config) { c.Command[0], c.SHA256 = path, sum })
			err := pr.d.Handshake(t.Context())
			var ue *external.UnsafeProgramError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Handshake = %v, want an *UnsafeProgramError saying %q", err, tt.want)
			}
		})
	}
	t.Run("SafeStarts", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "probe")
		copyFile(t, src, path)
		chmod(t, path, 0o755)
		chmod(t, dir, 0o755)
		pr := setup(t, func(c *external.Config) { c.Command[0], c.SHA256 = path, sum })
		if err := pr.d.Handshake(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
