package e2e_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/test/harness"
)

// The example configs of the repository, and which of them
// TestExampleConfigs checks with `credbroker config check --strict`:
//
//   - every file examples/*.yaml (none yet): a complete config;
//   - every ```yaml block of README.md and docs/**/*.md that names backends:
//     or roles: (blocks of issuers: and policies: alone are identity
//     snippets, not configs). A block with a store: key is a complete
//     config and is checked as it is. Any other is a fragment: it is
//     completed with what it leaves out (a store, a test issuer, and a
//     policy granting its roles when it has no policies) and then checked,
//     so its backends and roles must be valid, with owner and environment;
//   - a block whose fence is preceded by the line
//     `<!-- config-check: skip: REASON -->` is skipped, for a reason a
//     reader of the Markdown source can judge (the comment does not render).
var skipMarker = regexp.MustCompile(`^<!-- config-check: skip: (.+) -->$`)

// configKey finds the top-level keys that make a block a config.
var configKey = regexp.MustCompile(`(?m)^(backends|roles|store):`)

// example is one example config found in the repository.
type example struct {
	where    string // file:line of the block or file
	yaml     string
	complete bool
	skip     string // why it is not checked
}

func TestExampleConfigs(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	docs = append(docs, filepath.Join(root, "README.md"))
	err = filepath.WalkDir(filepath.Join(root, "docs"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".md") {
			docs = append(docs, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var examples []example
	for _, path := range docs {
		examples = append(examples, markdownExamples(t, root, path)...)
	}
	files, _ := filepath.Glob(filepath.Join(root, "examples", "*.yaml"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		examples = append(examples, example{where: rel, yaml: string(data), complete: true})
	}
	// The README's Configuration section is a complete config; a test that
	// found none would pass for the wrong reason.
	if !slices.ContainsFunc(examples, func(e example) bool { return e.complete && strings.HasPrefix(e.where, "README.md:") }) {
		t.Fatalf("found no complete config in README.md (a ```yaml block with store:): %d examples", len(examples))
	}

	iss := harness.NewIssuer(t, "example-test")
	dir := t.TempDir()
	for i, ex := range examples {
		t.Run(strings.NewReplacer("/", "_", ":", "_").Replace(ex.where), func(t *testing.T) {
			if ex.skip != "" {
				t.Skipf("%s: marked config-check: skip: %s", ex.where, ex.skip)
			}
			config := ex.yaml
			if !ex.complete {
				config = completeFragment(t, ex, iss)
			}
			path := filepath.Join(dir, fmt.Sprintf("example-%d.yaml", i))
			if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := harness.RunCLI(t, nil, "config", "check", "--strict", path)
			if code != 0 {
				t.Errorf("%s: config check --strict: exit %d\n%s%s\nthe config checked:\n%s", ex.where, code, stdout, stderr, config)
			}
		})
	}
}

// markdownExamples returns the ```yaml blocks of a Markdown file that name
// backends: or roles:.
func markdownExamples(t *testing.T, root, path string) []example {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rel, _ := filepath.Rel(root, path)
	var (
		out      []example
		prev     string
		block    *strings.Builder
		start    int
		skip     string
		lineNo   int
		inOther  bool // inside a fence of another language
		scanner  = bufio.NewScanner(f)
		yamlOpen = regexp.MustCompile("^```ya?ml\\s*$")
	)
	for scanner.Scan() {
		line := scanner.Text()
		lineNo++
		switch {
		case block != nil && strings.HasPrefix(line, "```"):
			text := block.String()
			// A block that is no mapping (a list, a manifest) is no config,
			// unless it looks like one.
			var top map[string]any
			if err := yaml.Unmarshal([]byte(text), &top); err != nil && configKey.MatchString(text) {
				t.Errorf("%s:%d: a ```yaml block that names backends: or roles: but does not parse as a config: %v", rel, start, err)
			}
			_, hasBackends := top["backends"]
			_, hasRoles := top["roles"]
			_, hasStore := top["store"]
			if hasBackends || hasRoles || hasStore {
				out = append(out, example{where: fmt.Sprintf("%s:%d", rel, start), yaml: text, complete: hasStore, skip: skip})
			}
			block = nil
		case block != nil:
			block.WriteString(line + "\n")
		case inOther && strings.HasPrefix(line, "```"):
			inOther = false
		case inOther:
		case yamlOpen.MatchString(line):
			block, start, skip = &strings.Builder{}, lineNo, ""
			if m := skipMarker.FindStringSubmatch(strings.TrimSpace(prev)); m != nil {
				skip = m[1]
			}
		case strings.HasPrefix(line, "```"):
			inOther = true
		}
		prev = line
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// completeFragment adds to a fragment what a config needs around it: a
// store, the test issuer, and a policy that grants its roles.
func completeFragment(t *testing.T, ex example, iss *harness.Issuer) string {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(ex.yaml), &cfg); err != nil {
		t.Fatalf("%s: %v", ex.where, err)
	}
	if _, ok := cfg["store"]; !ok {
		cfg["store"] = map[string]any{"dsn": "env:CREDBROKER_DATABASE_URL"}
	}
	var issuers []any
	if err := yaml.Unmarshal([]byte(iss.YAML()), &issuers); err != nil {
		t.Fatal(err)
	}
	if list, ok := cfg["issuers"].([]any); ok {
		issuers = append(list, issuers...)
	}
	cfg["issuers"] = issuers
	if _, ok := cfg["policies"]; !ok {
		var roles []string
		list, _ := cfg["roles"].([]any)
		for _, r := range list {
			if m, ok := r.(map[string]any); ok {
				if name, ok := m["name"].(string); ok {
					roles = append(roles, name)
				}
			}
		}
		if len(roles) > 0 {
			cfg["policies"] = []any{map[string]any{"name": "example-test", "issuer": iss.Name, "subject": "example-test", "roles": roles}}
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
