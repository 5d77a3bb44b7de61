package e2e_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/test/harness"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/output/ with what the CLI prints now")

// outputPolicies adds the auditor (an admin) to the standard roles.
const outputPolicies = `  - name: auditors
    issuer: test
    subject: "` + auditorSubject + `"
    admin: true
`

// TestOutputTables: the table, wide and yaml forms of roles, creds, lease
// get/revoke/list and admin inventory, printed by the binary for a real
// broker, match the golden files in testdata/output/ once the values that
// change from run to run (ids, usernames, passwords, times, addresses) are
// replaced by placeholders. Run with -update to rewrite the goldens.
func TestOutputTables(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "15m", "1h", outputPolicies)
	other := d.Issuer.Token(t, otherSubject, nil, time.Hour)
	auditor := d.Issuer.Token(t, auditorSubject, nil, time.Hour)
	n := newNormalizer(t, d)

	run := func(token string, args ...string) (string, string) {
		t.Helper()
		stdout, stderr, code := b.CLI(t, token, args...)
		if code != 0 {
			t.Fatalf("credbroker %v: exit %d\n%s%s", args, code, stdout, stderr)
		}
		return stdout, stderr
	}

	// creds for a person: the block, and the warning on stderr.
	for i, format := range []string{"table", "wide"} {
		stdout, stderr := run(other, "creds", "readonly", "-o", format)
		block := blockValues(stdout)
		password := block["password"]
		if password == "" || len(password) < 16 {
			t.Fatalf("creds -o %s shows no password:\n%s", format, stdout)
		}
		b.Track(password)
		n.add(block["lease"], fmt.Sprintf("<lease-%d>", i+1))
		n.add(block["username"], fmt.Sprintf("<user-%d>", i+1))
		n.add(password, fmt.Sprintf("<password-%d>", i+1))
		if !strings.Contains(stderr, "warning: the password is shown") {
			t.Errorf("creds -o %s: no warning on stderr that the password is shown: %q", format, stderr)
		}
		if strings.Contains(stderr, password) {
			t.Errorf("creds -o %s: the password is on stderr", format)
		}
		if strings.Count(stdout, password) != 2 { // the uri and the password line
			t.Errorf("creds -o %s: the password is shown %d times, want in the uri and on its line:\n%s", format, strings.Count(stdout, password), stdout)
		}
		conn, err := connectPG(t.Context(), block["uri"])
		if err != nil {
			t.Fatalf("the uri creds -o %s shows does not connect: %v", format, err)
		}
		_ = conn.Close(t.Context())
		n.golden(t, "creds."+format, stdout)
	}
	third := issue(t, b, other, map[string]any{"role": "reports"})
	n.add(third.LeaseID, "<lease-3>")
	n.add(third.Username, "<user-3>")
	lease1, lease2 := n.original("<lease-1>"), n.original("<lease-2>")

	revoked, _ := run(other, "lease", "revoke", lease2, "-o", "table")
	n.golden(t, "lease-revoke.table", revoked)

	for _, format := range []string{"table", "wide", "yaml"} {
		out, _ := run(other, "roles", "-o", format)
		n.golden(t, "roles."+format, out)
		out, _ = run(other, "lease", "list", "-o", format)
		n.golden(t, "lease-list."+format, out)
		out, _ = run(other, "lease", "get", lease1, "-o", format)
		n.golden(t, "lease-get."+format, out)
		out, _ = run(auditor, "admin", "inventory", "-o", format)
		n.golden(t, "inventory."+format, out)
	}
	out, _ := run(other, "whoami", "-o", "table")
	n.golden(t, "whoami.table", out)

	// --state filters the table as it does the JSON.
	out, _ = run(other, "lease", "list", "--state", "revoked", "-o", "table")
	if rows := strings.Split(strings.TrimSpace(out), "\n"); len(rows) != 2 || !strings.Contains(rows[1], lease2) || !strings.Contains(rows[1], "revoked") {
		t.Errorf("lease list --state revoked -o table:\n%s", out)
	}
	out, _ = run(auditor, "admin", "revoke", "--role", "readonly", "-o", "table")
	if out != "revoked 1 lease\n" {
		t.Errorf("admin revoke -o table = %q, want %q", out, "revoked 1 lease\n")
	}
	// Usage errors name the formats.
	_, stderr, code := b.CLI(t, other, "roles", "-o", "env")
	if code != 2 || !strings.Contains(stderr, "table, wide, json or yaml") {
		t.Errorf("roles -o env: exit %d: %s", code, stderr)
	}
}

// TestOutputPipedIsJSON: with stdout a pipe (not a terminal), the client
// commands print the API's JSON as before -o existed, so scripts that pipe to
// jq keep working; the deprecated --format still works and keeps stdout
// clean; lease list pages with --limit and --page-token.
func TestOutputPipedIsJSON(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "15m", "1h", "")
	app := d.Issuer.Token(t, appSubject, nil, time.Hour)

	jsonOf := func(args ...string) (map[string]any, string) {
		t.Helper()
		stdout, stderr, code := b.CLI(t, app, args...)
		if code != 0 {
			t.Fatalf("credbroker %v: exit %d: %s", args, code, stderr)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(stdout), &m); err != nil {
			t.Fatalf("credbroker %v piped is not JSON (%v):\n%s", args, err, stdout)
		}
		return m, stderr
	}

	creds, stderr := jsonOf("creds", "readonly")
	if str(creds, "credential", "password") == "" || str(creds, "lease", "state") != "LEASE_STATE_ACTIVE" {
		t.Errorf("creds piped: %v", creds)
	}
	if stderr != "" {
		t.Errorf("creds piped wrote to stderr: %q", stderr)
	}
	first := str(creds, "lease", "id")
	roles, _ := jsonOf("roles")
	if r, _ := roles["roles"].([]any); len(r) != 1 || dig(r[0].(map[string]any), "defaultTtl") != "900s" {
		t.Errorf("roles piped: %v", roles)
	}
	list, _ := jsonOf("lease", "list")
	if l, _ := list["leases"].([]any); len(l) != 1 || str(l[0].(map[string]any), "id") != first {
		t.Errorf("lease list piped: %v", list)
	}
	whoami, _ := jsonOf("whoami")
	if whoami["subject"] != appSubject {
		t.Errorf("whoami piped: %v", whoami)
	}

	// The deprecated --format: the notice goes to stderr, stdout stays what
	// eval reads.
	stdout, stderr, code := b.CLI(t, app, "creds", "readonly", "--format", "env")
	if code != 0 || !strings.HasPrefix(stdout, "export ") || strings.Contains(stdout, "deprecated") {
		t.Errorf("creds --format env: exit %d\n%s", code, stdout)
	}
	if !strings.Contains(stderr, "deprecated") || strings.Contains(stderr, "PGPASSWORD") {
		t.Errorf("creds --format env: stderr %q, want the deprecation notice and no credential", stderr)
	}
	stdout, _, code = b.CLI(t, app, "creds", "readonly", "-o", "uri")
	if u, err := url.Parse(strings.TrimSpace(stdout)); code != 0 || err != nil || u.Scheme != "postgres" {
		t.Errorf("creds -o uri: exit %d %q", code, stdout)
	}
	_, stderr, code = b.CLI(t, app, "creds", "readonly", "--format", "json", "-o", "yaml")
	if code != 2 || !strings.Contains(stderr, "not both") {
		t.Errorf("creds with --format and -o: exit %d: %s", code, stderr)
	}

	// Three leases now: pages of two.
	page1, _ := jsonOf("lease", "list", "--limit", "2")
	token, _ := page1["nextPageToken"].(string)
	if l, _ := page1["leases"].([]any); len(l) != 2 || token == "" {
		t.Fatalf("lease list --limit 2: %v", page1)
	}
	page2, _ := jsonOf("lease", "list", "--limit", "2", "--page-token", token)
	if l, _ := page2["leases"].([]any); len(l) != 1 || page2["nextPageToken"] != nil {
		t.Errorf("lease list --limit 2 --page-token: %v", page2)
	}
	out, stderr, code := b.CLI(t, app, "lease", "list", "--limit", "2", "-o", "table")
	if rows := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(rows) != 3 || !strings.Contains(stderr, "--page-token "+token) {
		t.Errorf("lease list --limit 2 -o table: exit %d\n%s\nstderr: %s", code, out, stderr)
	}
	var yml map[string]any
	out, _, _ = b.CLI(t, app, "lease", "list", "--limit", "2", "-o", "yaml")
	if err := yaml.Unmarshal([]byte(out), &yml); err != nil || yml["nextPageToken"] != token {
		t.Errorf("lease list --limit 2 -o yaml (%v):\n%s", err, out)
	}
	for _, limit := range []string{"0", "501"} {
		if _, stderr, code := b.CLI(t, app, "lease", "list", "--limit", limit); code != 2 || !strings.Contains(stderr, "between 1 and 500") {
			t.Errorf("lease list --limit %s: exit %d: %s", limit, code, stderr)
		}
	}
}

// blockValues reads the "key:  value" lines of a block.
func blockValues(s string) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// normalizer replaces what changes from run to run in the CLI's output by
// placeholders, so the output can be compared with a golden file.
type normalizer struct {
	pairs []string // old, new, old, new … for strings.NewReplacer
	names map[string]string
}

func newNormalizer(t *testing.T, d *harness.Deployment) *normalizer {
	t.Helper()
	n := &normalizer{names: map[string]string{}}
	u, err := url.Parse(d.Backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	n.add(d.Backend.Database, "<database>")
	n.add(u.Host, "<host>:<port>")
	n.add(d.Issuer.URL, "<issuer-url>")
	return n
}

func (n *normalizer) add(old, placeholder string) {
	if old == "" {
		return
	}
	n.pairs = append(n.pairs, old, placeholder)
	n.names[placeholder] = old
}

func (n *normalizer) original(placeholder string) string { return n.names[placeholder] }

var (
	rfc3339Time  = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
	relativeIn   = regexp.MustCompile(`\bin \d+[smhd][0-9smhd]*`)
	relativeAgo  = regexp.MustCompile(`\b\d+[smhd][0-9smhd]* ago\b`)
	relativeNow  = regexp.MustCompile(`(  |^)now\b`)
	fieldLine    = regexp.MustCompile(`(?m)^(host|port):(\s+)\S+$`)
	uriQuery     = regexp.MustCompile(`(postgres://\S+?)\?\S+`)
	columnGutter = regexp.MustCompile(`\s{2,}`)
)

func (n *normalizer) normalize(s string) string {
	s = strings.NewReplacer(n.pairs...).Replace(s)
	s = rfc3339Time.ReplaceAllString(s, "<time>")
	s = relativeIn.ReplaceAllString(s, "in <rel>")
	s = relativeAgo.ReplaceAllString(s, "<rel> ago")
	s = relativeNow.ReplaceAllString(s, "${1}<rel> ago")
	s = fieldLine.ReplaceAllString(s, "$1:$2<$1>")
	s = uriQuery.ReplaceAllString(s, "$1?<query>")
	return s
}

// realign re-renders columns (cells two or more spaces apart) with widths
// of the normalized text, so the goldens do not depend on how wide ids,
// names and times were.
func realign(s string) string {
	var rows [][]string
	var widths []int
	for line := range strings.SplitSeq(strings.TrimRight(s, "\n"), "\n") {
		cells := columnGutter.Split(strings.TrimRight(line, " "), -1)
		for i, c := range cells {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(c))
		}
		rows = append(rows, cells)
	}
	var b strings.Builder
	for _, cells := range rows {
		for i, c := range cells {
			b.WriteString(c)
			if i < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-len(c)+2))
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// golden compares the normalized output with testdata/output/NAME, or
// rewrites that file with -update. Tables and blocks are realigned; YAML is
// compared as it is.
func (n *normalizer) golden(t *testing.T, name, got string) {
	t.Helper()
	got = n.normalize(got)
	if !strings.HasSuffix(name, ".yaml") {
		got = realign(got)
	}
	path := filepath.Join("testdata", "output", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (run with -update to rewrite it):\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}
