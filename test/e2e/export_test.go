package e2e_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/test/harness"
)

// updateExport rewrites the golden file of the export tests. Named for
// them: other tests of the package may have an -update of their own.
var updateExport = flag.Bool("update-export", false, "rewrite testdata/export.csv.golden from this run")

// exportHeader is the header a CSV export must have, to the letter.
var exportHeader = []string{"seq", "time", "kind", "lease_id", "role", "backend", "username", "subject", "issuer",
	"actor", "reason", "break_glass", "details", "hash", "prev_hash", "chain"}

// exportSetup starts a broker with an auditor (an admin policy) and puts a
// small history on the record: two leases issued, one renewed and then
// revoked, then one request denied. It returns the broker, the auditor's
// token and the leases.
func exportSetup(t *testing.T) (*harness.Deployment, *harness.Broker, string, []issued) {
	t.Helper()
	d, b := setup(t, "5m", "10m", `  - name: auditors
    issuer: test
    subject: "`+auditorSubject+`"
    admin: true
`)
	app := d.Issuer.Token(t, appSubject, nil, time.Hour)
	other := d.Issuer.Token(t, otherSubject, nil, time.Hour)
	first := issue(t, b, app, map[string]any{"role": "readonly", "ttl": "60s"})
	second := issue(t, b, other, map[string]any{"role": "reports", "ttl": "120s"})
	if status, r := b.Call(t, app, "RenewLease", map[string]any{"leaseId": first.LeaseID, "increment": "240s"}); status != http.StatusOK {
		t.Fatalf("RenewLease: HTTP %d %v", status, r)
	}
	if status, r := b.Call(t, app, "RevokeLease", map[string]any{"leaseId": first.LeaseID}); status != http.StatusOK {
		t.Fatalf("RevokeLease: HTTP %d %v", status, r)
	}
	// Last: denials are written a while after they happen, and this one
	// must come after the revoke whenever it is written.
	b.Call(t, app, "IssueCredential", map[string]any{"role": "reports"})
	return d, b, d.Issuer.Token(t, auditorSubject, nil, time.Hour), []issued{first, second}
}

// TestExportCSVGolden: the CSV export of a real broker's history parses as
// RFC 4180, has exactly the header the issue lists (and chain), one row an
// event, no password, and, once what differs from run to run is replaced,
// matches testdata/export.csv.golden (-update-export rewrites it).
func TestExportCSVGolden(t *testing.T) {
	t.Parallel()
	_, b, auditor, leases := exportSetup(t)
	out, stderr, code := b.CLI(t, auditor, "export", "--format", "csv", "--verify")
	if code != 0 {
		t.Fatalf("export --format csv --verify: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "verified: ") || !regexp.MustCompile(`anchor: \d+:[0-9a-f]{64}`).MatchString(stderr) {
		t.Errorf("export --verify printed no count or anchor:\n%s", stderr)
	}
	for _, l := range leases {
		if strings.Contains(out, l.Password) {
			t.Fatal("the CSV export holds an issued password")
		}
	}
	r := csv.NewReader(strings.NewReader(out))
	r.FieldsPerRecord = len(exportHeader)
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatalf("the export is not RFC 4180 CSV of %d columns: %v\n%s", len(exportHeader), err, out)
	}
	if !slices.Equal(recs[0], exportHeader) {
		t.Fatalf("header = %q,\nwant %q", recs[0], exportHeader)
	}
	jsonl, stderr, code := b.CLI(t, auditor, "export", "--until", recs[len(recs)-1][1])
	if code != 0 {
		t.Fatalf("export --until: exit %d: %s", code, stderr)
	}
	// The JSON lines export before the CSV one's own exported event.
	if got, want := len(recs)-1, strings.Count(jsonl, "\n")+1; got != want {
		t.Errorf("the CSV export has %d rows of events, the JSON lines export of the same range %d lines", got, want)
	}

	got := normalizeExport(t, recs)
	golden := filepath.Join("testdata", "export.csv.golden")
	if *updateExport {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update-export to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the CSV export (normalized) differs from %s (-update-export rewrites it):\n--- got\n%s--- want\n%s", golden, got, want)
	}
}

// normalizeExport replaces what changes from run to run in a CSV export:
// seqs are numbered from 1, times are TIME, lease ids and hashes are
// numbered by first appearance, random username suffixes are xxxxxxxxxx.
// Which of the 16 chains an event goes to follows from its random lease id,
// so two leases, or a lease and an actor, share a chain by chance: chain is
// *, and so is a prev_hash, except the one of a lease's event that names
// the hash of the lease's previous event, which the golden file shows.
// Checkpoints, which the reaper writes when its pass happens to come, are
// left out.
func normalizeExport(t *testing.T, recs [][]string) []byte {
	t.Helper()
	col := func(name string) int { return slices.Index(exportHeader, name) }
	numbered := func(prefix string) func(string) string {
		seen := map[string]string{}
		return func(s string) string {
			if s == "" {
				return ""
			}
			if _, ok := seen[s]; !ok {
				seen[s] = prefix + strconv.Itoa(len(seen)+1)
			}
			return seen[s]
		}
	}
	lease, hash := numbered("L"), numbered("H")
	leaseHead := map[string]string{} // a lease's newest hash
	timeRE := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	leaseRE := regexp.MustCompile(`lease_[a-z0-9]{26}`)
	userRE := regexp.MustCompile(`(cb_[a-z]+_)[a-z0-9]{10}`)
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write(recs[0])
	n := 0
	for _, rec := range recs[1:] {
		if rec[col("kind")] == "checkpoint" {
			continue
		}
		n++
		out := slices.Clone(rec)
		for i, c := range out {
			c = timeRE.ReplaceAllString(c, "TIME")
			c = leaseRE.ReplaceAllStringFunc(c, lease)
			out[i] = userRE.ReplaceAllString(c, "${1}xxxxxxxxxx")
		}
		out[col("seq")] = strconv.Itoa(n)
		id, prev := rec[col("lease_id")], rec[col("prev_hash")]
		out[col("hash")] = hash(rec[col("hash")])
		out[col("prev_hash")] = "*"
		if id != "" && prev != "" && leaseHead[id] == prev {
			out[col("prev_hash")] = hash(prev)
		}
		if id != "" {
			leaseHead[id] = rec[col("hash")]
		}
		out[col("chain")] = "*"
		w.Write(out)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestExportOutputFile: --output-file writes the whole export, mode 0600,
// and nothing to stdout; no temporary file is left, and an export that
// fails (not an admin, no such directory) leaves nothing at all.
func TestExportOutputFile(t *testing.T) {
	t.Parallel()
	d, b, auditor, _ := exportSetup(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.csv")
	out, stderr, code := b.CLI(t, auditor, "export", "--format", "csv", "--output-file", path, "--verify")
	if code != 0 || out != "" {
		t.Fatalf("export --output-file: exit %d, stdout %q: %s", code, out, stderr)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("the export file has mode %v, want 0600", st.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), strings.Join(exportHeader, ",")+"\n") || !strings.Contains(string(data), ",exported,") {
		t.Errorf("the export file is not the whole CSV export:\n%s", data)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"audit.csv"}) {
		t.Errorf("the directory holds %v, want only audit.csv", names)
	}

	// A second export replaces the file whole.
	if _, stderr, code := b.CLI(t, auditor, "export", "--output-file", path); code != 0 {
		t.Fatalf("export --output-file again: exit %d: %s", code, stderr)
	}
	if data, _ := os.ReadFile(path); !strings.HasPrefix(string(data), "{") {
		t.Errorf("the second export (jsonl) did not replace the file:\n%.200s", data)
	}

	failDir := t.TempDir()
	failed := filepath.Join(failDir, "denied.jsonl")
	_, stderr, code = b.CLI(t, d.Issuer.Token(t, appSubject, nil, time.Hour), "export", "--output-file", failed)
	if code != 1 || !strings.Contains(stderr, "permission_denied") {
		t.Errorf("export --output-file as a workload: exit %d: %s", code, stderr)
	}
	if names := dirNames(t, failDir); len(names) != 0 {
		t.Errorf("a failed export left %v behind", names)
	}
	_, stderr, code = b.CLI(t, auditor, "export", "--output-file", filepath.Join(failDir, "no", "such", "dir.csv"))
	if code != 1 || !strings.Contains(stderr, "--output-file") {
		t.Errorf("export --output-file into a missing directory: exit %d: %s", code, stderr)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestExportTimeRange: --since and --until take a duration, an RFC 3339
// time or a date; a bad value is a usage error (exit 2) that says which
// forms are accepted, and so is giving --since with --from.
func TestExportTimeRange(t *testing.T) {
	t.Parallel()
	_, b, auditor, leases := exportSetup(t)
	kinds := func(args ...string) []string {
		t.Helper()
		out, stderr, code := b.CLI(t, auditor, append([]string{"export"}, args...)...)
		if code != 0 {
			t.Fatalf("export %v: exit %d: %s", args, code, stderr)
		}
		var ks []string
		for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
			var ev struct{ Kind, LeaseID string }
			if line == "" {
				continue
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("export %v: %q is not JSON", args, line)
			}
			if ev.Kind != "checkpoint" {
				ks = append(ks, ev.Kind)
			}
		}
		return ks
	}
	today := time.Now().Format("2006-01-02")
	tomorrow := time.Now().AddDate(0, 0, 1).Format("2006-01-02")
	for _, args := range [][]string{
		{"--since", "24h"},
		{"--since", today},
		{"--since", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)},
		{"--from", time.Now().Add(-time.Hour).Format(time.RFC3339)},
		{"--since", "1h", "--until", tomorrow},
	} {
		if got := kinds(args...); !slices.Contains(got, "issued") || !slices.Contains(got, "revoked") {
			t.Errorf("export %v: kinds %v, want the leases' events", args, got)
		}
	}
	for _, args := range [][]string{{"--until", "1h"}, {"--since", tomorrow}, {"--until", "2026-01-01"}} {
		if got := kinds(args...); slices.Contains(got, "issued") {
			t.Errorf("export %v: kinds %v, want none of the leases' events", args, got)
		}
	}
	if got := kinds("--lease", leases[1].LeaseID, "--since", today); !slices.Equal(got, []string{"issued"}) {
		t.Errorf("export --lease --since: kinds %v, want [issued]", got)
	}

	for _, args := range [][]string{
		{"--since", "yesterday"},
		{"--since", "-1h"},
		{"--until", "28/11/2026"},
		{"--since", "1h", "--from", "2026-11-28"},
		{"--until", "1h", "--to", "2026-11-28"},
		{"--format", "xlsx"},
		{"--since", "1h", "--until", "2h"},
	} {
		_, stderr, code := b.CLI(t, auditor, append([]string{"export"}, args...)...)
		if code != 2 {
			t.Errorf("export %v: exit %d, want 2: %s", args, code, stderr)
		}
		if args[0] == "--since" && args[1] == "yesterday" && (!strings.Contains(stderr, "RFC 3339") || !strings.Contains(stderr, "24h") || !strings.Contains(stderr, "2026-11-28")) {
			t.Errorf("export --since yesterday does not say the accepted forms: %s", stderr)
		}
	}
}

// TestExportVerifyOffline: `credbroker export verify FILE` checks a saved
// export, JSON lines or CSV, with no broker to ask; it prints the anchor,
// which --anchor checks later; one field edited, a line deleted or lines
// swapped make it exit 1 naming the line and seq.
func TestExportVerifyOffline(t *testing.T) {
	t.Parallel()
	_, b, auditor, leases := exportSetup(t)
	dir := t.TempDir()
	// No broker and no token: the verification is offline.
	offline := []string{"CREDBROKER_ADDR=http://127.0.0.1:1", "CREDBROKER_TOKEN=", "CREDBROKER_TOKEN_FILE=", "HOME=" + dir}
	verify := func(path string, args ...string) (string, string, int) {
		t.Helper()
		return harness.RunCLI(t, offline, append(append([]string{"export", "verify"}, args...), path)...)
	}
	for _, format := range []string{"jsonl", "csv"} {
		t.Run(format, func(t *testing.T) {
			path := filepath.Join(dir, "audit."+format)
			if _, stderr, code := b.CLI(t, auditor, "export", "--format", format, "--output-file", path); code != 0 {
				t.Fatalf("export: exit %d: %s", code, stderr)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.SplitAfter(string(data), "\n")
			lines = lines[:len(lines)-1] // after the last \n
			out, stderr, code := verify(path)
			if code != 0 || !strings.Contains(out, "verified: ") {
				t.Fatalf("export verify: exit %d: %s%s", code, out, stderr)
			}
			m := regexp.MustCompile(`anchor: (\d+):([0-9a-f]{64})`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("export verify printed no anchor:\n%s", out)
			}
			anchorSeq, _ := strconv.Atoi(m[1])
			if last := lastEvent(t, format, lines); last.seq != anchorSeq || last.hash != m[2] {
				t.Errorf("the anchor is %s:%s, the last event is %d:%s", m[1], m[2], last.seq, last.hash)
			}
			if out, stderr, code := verify(path, "--anchor", m[1]+":"+m[2]); code != 0 || !strings.Contains(out, "found unchanged") {
				t.Errorf("export verify --anchor: exit %d: %s%s", code, out, stderr)
			}
			// From stdin, the format told by the first line.
			cmd := exec.Command(harness.Binary(t), "export", "verify", "-")
			cmd.Env = append(os.Environ(), offline...)
			cmd.Stdin = bytes.NewReader(data)
			if stdinOut, err := cmd.Output(); err != nil || !strings.Contains(string(stdinOut), "anchor: "+m[1]+":"+m[2]) {
				t.Errorf("export verify - (stdin): %v: %s", err, stdinOut)
			}

			header := 0
			if format == "csv" {
				header = 1
			}
			line := func(kind, leaseID string) int {
				for i, l := range lines {
					if strings.Contains(l, kind) && strings.Contains(l, leaseID) {
						return i
					}
				}
				t.Fatalf("no %s line of %s in:\n%s", kind, leaseID, data)
				return 0
			}
			revoked := line(`revoked`, leases[0].LeaseID)
			renewed := line(`renewed`, leases[0].LeaseID)
			issuedFirst := line(`issued`, leases[0].LeaseID)
			issuedSecond := line(`issued`, leases[1].LeaseID)
			edit := func(name string, want []string, change func([]string) []string, args ...string) {
				t.Helper()
				edited := filepath.Join(dir, name+"."+format)
				if err := os.WriteFile(edited, []byte(strings.Join(change(slices.Clone(lines)), "")), 0o600); err != nil {
					t.Fatal(err)
				}
				out, stderr, code := verify(edited, args...)
				t.Logf("%s: exit %d: %s", name, code, strings.TrimSpace(stderr))
				if code != 1 {
					t.Errorf("%s: export verify: exit %d, want 1: %s%s", name, code, out, stderr)
				}
				// A want with "|" is met by any of its parts.
				for _, w := range want {
					if !slices.ContainsFunc(strings.Split(w, "|"), func(w string) bool { return strings.Contains(stderr, w) }) {
						t.Errorf("%s: export verify said %q, want it to say %q", name, stderr, w)
					}
				}
			}
			// Who revoked the lease, rewritten in the file.
			edit("actor", []string{fmt.Sprintf("line %d (seq ", revoked+1), "hash does not match"}, func(l []string) []string {
				l[revoked] = strings.Replace(l[revoked], "test:"+appSubject, "test:nobody", 1)
				return l
			})
			if format == "csv" {
				edit("role-cell", []string{fmt.Sprintf("line %d: seq ", issuedSecond+1), "column role"}, func(l []string) []string {
					l[issuedSecond] = strings.Replace(l[issuedSecond], ",reports,", ",readonly,", 1)
					return l
				})
			}
			// The renewal removed: the revoke no longer follows its
			// predecessor in the lease's chain.
			edit("deleted", []string{fmt.Sprintf("line %d (seq ", revoked), "prev_hash does not match"}, func(l []string) []string {
				return slices.Delete(l, renewed, renewed+1)
			})
			// Two issues swapped (a checkpoint the reaper wrote may stand
			// between them: seqs then still go down). Leases are spread
			// over chains by id, so the two may share a chain: then the
			// chain breaks before the order is looked at.
			edit("swapped", []string{"out of order|does not start the chain|prev_hash does not match"}, func(l []string) []string {
				l[issuedFirst], l[issuedSecond] = l[issuedSecond], l[issuedFirst]
				return l
			})
			// The first event cut off: fails, and says what to do if the
			// export was of a time range; with --partial it verifies.
			edit("cut", []string{"--partial"}, func(l []string) []string {
				return slices.Delete(l, header, header+1)
			})
			if out, stderr, code := verify(filepath.Join(dir, "cut."+format), "--partial"); code != 0 {
				t.Errorf("export verify --partial of an export cut at the start: exit %d: %s%s", code, out, stderr)
			}
			// The newest events removed since the anchor was kept.
			edit("truncated", []string{"anchor", "not in the export"}, func(l []string) []string {
				return l[:len(l)-1]
			}, "--anchor", m[1]+":"+m[2])
		})
	}
	if _, stderr, code := verify(filepath.Join(dir, "audit.csv"), "--anchor", "12"); code != 2 {
		t.Errorf("export verify --anchor 12: exit %d, want 2: %s", code, stderr)
	}
}

type eventRef struct {
	seq  int
	hash string
}

// lastEvent is the seq and hex hash of the last event of an export's lines.
func lastEvent(t *testing.T, format string, lines []string) eventRef {
	t.Helper()
	last := lines[len(lines)-1]
	if format == "csv" {
		rec, err := csv.NewReader(strings.NewReader(last)).Read()
		if err != nil {
			t.Fatal(err)
		}
		seq, _ := strconv.Atoi(rec[0])
		return eventRef{seq, rec[slices.Index(exportHeader, "hash")]}
	}
	var ev struct {
		Seq  string
		Hash []byte
	}
	if err := json.Unmarshal([]byte(last), &ev); err != nil {
		t.Fatal(err)
	}
	seq, _ := strconv.Atoi(ev.Seq)
	return eventRef{seq, fmt.Sprintf("%x", ev.Hash)}
}
