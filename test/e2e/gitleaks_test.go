package e2e_test

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"
)

// TestGitleaksBlocksLeaks proves that the secret scan of `make lint` fails
// on a planted secret, with the repository's .gitleaks.toml, and that its
// allowlists let through only the values they name, in the files they
// name. It runs the gitleaks `make tools` builds into .bin/ (pinned in the
// Makefile), as `make lint` does: in the directory scanned, on ".".
// Without it the test is skipped, unless CREDBROKER_REQUIRE_SERVICES is set
// (as in CI), where that is a failure.
func TestGitleaksBlocksLeaks(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^GITLEAKS_VERSION\s*:=\s*(\S+)$`).FindSubmatch(makefile)
	if m == nil {
		t.Fatal("the Makefile pins no GITLEAKS_VERSION")
	}
	bin := filepath.Join(root, ".bin", "gitleaks")
	if _, err := os.Stat(filepath.Join(root, ".bin", "gitleaks-"+string(m[1]))); err != nil {
		if os.Getenv("CREDBROKER_REQUIRE_SERVICES") == "" {
			t.Skipf("gitleaks %s is not built: run make tools (%v)", m[1], err)
		}
		t.Fatalf("gitleaks %s is not built: run make tools (%v)", m[1], err)
	}
	config := filepath.Join(root, ".gitleaks.toml")

	// The README tour's password, the one value its allowlist names.
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	tour := regexp.MustCompile(`(?m)^password:\s+(\S+)$`).FindSubmatch(readme)
	if tour == nil {
		t.Fatal("README.md's tour shows no password: line; update this test and .gitleaks.toml")
	}
	tourPassword := string(tour[1])

	// Fixed values, derived rather than written here (a literal would be
	// a leak in this file): random ones sometimes held one of gitleaks'
	// stopwords and were let through, failing the test by chance.
	sum := sha256.Sum256([]byte("credbroker gitleaks fixture"))
	fixture := base32.StdEncoding.EncodeToString(sum[:]) // [A-Z2-7]
	awsKey := "AKIA" + fixture[:16]                      // the shape of an access key id
	otherPassword := fixture[16:42]                      // 26 characters, as long as an issued password

	tests := map[string]struct {
		files map[string]string
		rules []string // the rules that must fire; none: the scan passes
	}{
		"Clean": {
			files: map[string]string{"config.yaml": "store: {dsn: env:CREDBROKER_DATABASE_URL}\n"},
		},
		"AWSKey": {
			files: map[string]string{"deploy/aws.env": "AWS_ACCESS_KEY_ID=" + awsKey + "\n"},
			rules: []string{"aws-access-token"},
		},
		"PasswordInReadme": {
			// The README's allowlist names one value, not the file.
			files: map[string]string{"README.md": "password:    " + otherPassword + "\n"},
			rules: []string{"generic-api-key"},
		},
		"TourPasswordElsewhere": {
			// The allowlisted value is a leak in any other file.
			files: map[string]string{"docs/tour.md": "password:    " + tourPassword + "\n"},
			rules: []string{"generic-api-key"},
		},
		"TourPasswordInReadme": {
			files: map[string]string{"README.md": "password:    " + tourPassword + "\n"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for name, content := range tc.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			report := filepath.Join(t.TempDir(), "report.json")
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "dir", "--no-banner", "--redact", "-c", config, "-f", "json", "-r", report, ".")
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			code := 0
			if exitErr, ok := errors.AsType[*exec.ExitError](err); ok {
				code = exitErr.ExitCode()
			} else if err != nil {
				t.Fatalf("run gitleaks: %v\n%s", err, out)
			}
			var findings []struct{ RuleID, File, Secret string }
			data, err := os.ReadFile(report)
			if err != nil {
				t.Fatalf("gitleaks wrote no report (exit %d): %v\n%s", code, err, out)
			}
			if err := json.Unmarshal(data, &findings); err != nil {
				t.Fatalf("gitleaks report: %v\n%s", err, data)
			}
			var rules []string
			for _, f := range findings {
				rules = append(rules, f.RuleID)
				if f.Secret != "REDACTED" {
					t.Errorf("the report holds an unredacted secret for %s in %s", f.RuleID, f.File)
				}
			}
			wantCode := 0
			if len(tc.rules) > 0 {
				wantCode = 1
			}
			if code != wantCode {
				t.Errorf("gitleaks exit %d, want %d; findings %q\n%s", code, wantCode, rules, out)
			}
			for _, r := range tc.rules {
				if !slices.Contains(rules, r) {
					t.Errorf("rule %s did not fire; findings %q", r, rules)
				}
			}
		})
	}
}
