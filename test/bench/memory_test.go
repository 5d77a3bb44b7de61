package bench

import (
	"bytes"
	"cmp"
	"context"
	"debug/buildinfo"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/test/harness"
)

// The memory section: the broker's resident set (VmRSS of the `credbroker
// serve` process the bench started) idle after start and with
// -cb.memory-live live leases, and the peaks of the broker and of the CLI
// while `credbroker export` streams at least -cb.export-events events, as
// JSON lines and as CSV, to stdout and to a file (--output-file).
// Redis leases, which are cheap to issue at volume; one broker on a fresh
// lease store with an admin policy for the export. The events are real:
// the live leases are revoked again and more leases issued and revoked
// (two events each) until the store holds enough, so the hash chains are
// exactly what a deployment would export. The CLI's peak is its VmHWM (the
// high-water mark of its resident set), sampled every 5 ms while it runs.
// Not ru_maxrss: Go starts a child with vfork semantics, sharing the
// parent's memory until exec, and Linux keeps that memory's high-water mark
// in the child's ru_maxrss, so it reports the bench process's own peak.

var (
	flagMemoryLive   = flag.Int("cb.memory-live", 10000, "live leases of the memory section")
	flagExportEvents = flag.Int("cb.export-events", 100000, "events the memory section's export streams at least (each issued and revoked lease adds two)")
	flagSkipMemory   = flag.Bool("cb.skip-memory", false, "skip the memory section (RSS idle, with live leases, during an export)")
)

// Targets of issue 9 for memory, in kB.
const (
	goalRSSIdleKB   = 40 << 10
	goalRSSLiveKB   = 64 << 10
	goalRSSExportKB = 64 << 10
)

// settle is how long the broker is left alone before its idle resident set
// is read, and after a fill before the one with live leases is.
const settle = 2 * time.Second

// exportRun is one `credbroker export` while the broker is sampled.
type exportRun struct {
	args         []string
	lines        int64
	wall         time.Duration
	cliHWM       int64 // kB: the largest VmHWM sampled
	brokerBefore int64 // kB
	brokerPeak   int64 // kB: the largest VmRSS sampled
	err          string
}

// memoryResult is the memory section's figures for the report.
type memoryResult struct {
	binary     string // what the broker and the CLI are, when built with -race
	idleKB     int64
	live       int
	fill       result
	liveKB     int64
	livePeakKB int64
	revoke     result
	pairs      result // issued and revoked again, for events
	events     int64  // in the store before the export
	exports    []exportRun
	load       string
	note       string
}

func benchMemory(b *testing.B, rep *report) {
	const scn = "memory"
	res := &memoryResult{load: load1()}
	rep.memory = res
	defer func() { res.note = rep.sectionNote(b, scn) }()
	rs := openRedis(b, rep, scn)
	role := svcRole("me")
	s := rs.broker(role, redisRules("me"))
	s.admin = true
	h := startSvcBroker(b, s)
	pid := h.broker.Pid(b)
	res.binary = raceNote(harness.Binary(b))
	cli := volumeClient(h.broker, h.token)

	time.Sleep(settle)
	res.idleKB = mustStatus(b, pid, "VmRSS")
	b.Logf("memory: idle %s", mib(res.idleKB))

	n := *flagMemoryLive
	refs := make([]leaseRef, n)
	rss := sampleMemory(pid, "VmRSS", 50*time.Millisecond)
	res.fill = run(n, conns, func(ctx context.Context, i int) error {
		var err error
		refs[i], err = cli.issue(ctx, role, 0)
		return err
	})
	res.live = len(res.fill.lat)
	if res.live > 0 {
		checkUsername(b, refs[slices.IndexFunc(refs, func(l leaseRef) bool { return l.id != "" })].username, "me")
	}
	time.Sleep(settle)
	res.liveKB = mustStatus(b, pid, "VmRSS")
	res.livePeakKB, _ = rss.stop()
	if res.fill.errs > 0 {
		rep.fail(b, "memory: %d of %d issues failed; first: %v", res.fill.errs, n, res.fill.firstErr)
	}
	b.Logf("memory: %d live leases: %s (peak while issuing %s)", res.live, mib(res.liveKB), mib(res.livePeakKB))

	res.revoke = run(n, conns, func(ctx context.Context, i int) error {
		if refs[i].id == "" {
			return errSkipped
		}
		return cli.revoke(ctx, refs[i])
	})
	if res.revoke.errs > 0 {
		rep.fail(b, "memory: %d of %d revokes failed; first: %v", res.revoke.errs, n, res.revoke.firstErr)
	}
	if need := int64(*flagExportEvents) - countEvents(b, h.storeURL); need > 0 {
		pairs := int((need + 1) / 2)
		start := time.Now()
		res.pairs = run(pairs, conns, func(ctx context.Context, _ int) error {
			l, err := cli.issue(ctx, role, 0)
			if err != nil {
				return err
			}
			return cli.revoke(ctx, l)
		})
		b.Logf("memory: %d more leases issued and revoked for the export in %s", pairs, time.Since(start).Round(time.Second))
		if res.pairs.errs > 0 {
			rep.fail(b, "memory: %d of %d issue+revoke pairs failed; first: %v", res.pairs.errs, pairs, res.pairs.firstErr)
		}
	}
	res.events = countEvents(b, h.storeURL)
	// JSON lines and CSV, to stdout and (CSV) to a file through
	// --output-file, which `export verify` then checks offline; exportFile
	// in args stands for that file, whose lines are counted.
	file := filepath.Join(b.TempDir(), "export.csv")
	for _, args := range [][]string{
		{"export"}, {"export", "--verify"},
		{"export", "--format", "csv", "--verify"}, {"export", "--format", "csv", "--output-file", exportFile},
		{"export", "verify", exportFile},
	} {
		e := runExport(b, h, pid, args, file)
		res.exports = append(res.exports, e)
		if e.err != "" {
			rep.fail(b, "memory: credbroker %s: %s", strings.Join(args, " "), e.err)
		}
		b.Logf("memory: credbroker %s: %d lines in %s; CLI peak %s; broker %s → peak %s", strings.Join(args, " "), e.lines,
			e.wall.Round(time.Millisecond), mib(e.cliHWM), mib(e.brokerBefore), mib(e.brokerPeak))
	}
	if left := rs.count(b, userPrefix+"me_"); left != 0 {
		rep.fail(b, "memory: %d of the section's Redis users are left after every lease was revoked", left)
	}
}

// exportFile stands in the args of runExport for its file.
const exportFile = "FILE"

// runExport runs the CLI with args against h as its admin, its output
// counted and dropped, and samples the CLI's VmHWM and the broker's VmRSS
// meanwhile. exportFile in args is replaced by file, and the lines counted
// are then the file's (written by --output-file, or read by export verify).
func runExport(b *testing.B, h *svcHandle, brokerPid int, args []string, file string) exportRun {
	b.Helper()
	e := exportRun{args: args, brokerBefore: mustStatus(b, brokerPid, "VmRSS")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := slices.Clone(args)
	if i := slices.Index(run, exportFile); i >= 0 {
		run[i] = file
	} else {
		file = ""
	}
	cmd := exec.CommandContext(ctx, harness.Binary(b), run...)
	cmd.Env = append(os.Environ(), "CREDBROKER_ADDR="+h.broker.Addr, "CREDBROKER_TOKEN_FILE=", "CREDBROKER_TOKEN="+h.adminToken)
	lines := &lineCounter{}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = lines, &stderr
	brokerRSS := sampleMemory(brokerPid, "VmRSS", 20*time.Millisecond)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		brokerRSS.stop()
		e.err = err.Error()
		return e
	}
	cliHWM := sampleMemory(cmd.Process.Pid, "VmHWM", 5*time.Millisecond)
	err := cmd.Wait()
	e.wall = time.Since(start)
	e.cliHWM, _ = cliHWM.stop()
	e.brokerPeak, _ = brokerRSS.stop()
	e.lines = lines.n.Load()
	if err != nil {
		e.err = fmt.Sprintf("%v: %s", err, firstLine(stderr.String()))
	}
	if file != "" {
		f, ferr := os.Open(file)
		if ferr != nil {
			e.err = cmp.Or(e.err, ferr.Error())
			return e
		}
		defer f.Close()
		lines.n.Store(0)
		_, _ = io.Copy(lines, f)
		e.lines = lines.n.Load()
	}
	return e
}

// lineCounter counts the lines written to it.
type lineCounter struct{ n atomic.Int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n.Add(int64(bytes.Count(p, []byte{'\n'})))
	return len(p), nil
}

// mustStatus is procStatusKB, failing b on an error.
func mustStatus(b *testing.B, pid int, field string) int64 {
	b.Helper()
	kb, err := procStatusKB(pid, field)
	if err != nil {
		b.Fatalf("memory: %v", err)
	}
	return kb
}

// countEvents returns how many events the store holds.
func countEvents(tb testing.TB, storeURL string) int64 {
	tb.Helper()
	var n int64
	withConn(tb, storeURL, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT count(*) FROM lease_events`).Scan(&n)
	})
	return n
}

// raceNote says when the binary at path was built with -race, whose
// memory figures are several times a release build's; "" otherwise.
func raceNote(path string) string {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return "built with -race (" + path + "): resident sets are several times a release build's"
		}
	}
	return ""
}

// printMemory prints section 9.
func (rep *report) printMemory(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("\n9. Memory: the broker's resident set idle, with live leases, and the broker's and the CLI's while exporting\n\n")
	res := rep.memory
	switch {
	case *flagSkipMemory:
		p("   not run (-cb.skip-memory)\n")
		return
	case res == nil:
		p("   did not run\n")
		return
	}
	if res.note != "" {
		p("   %s\n", res.note)
	}
	if res.binary != "" {
		p("   The binary is %s.\n", res.binary)
	}
	p("   One broker, fresh lease store, Redis role; VmRSS/VmHWM from /proc/<pid>/status (load %s at the start).\n\n", res.load)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "what\tprocess\tresident\tpeak\tgoal\t")
	fmt.Fprintf(tw, "idle, %s after start\tbroker\t%s\t\t≤ %s\t\n", settle, mib(res.idleKB), mib(goalRSSIdleKB))
	if res.live > 0 {
		fmt.Fprintf(tw, "%d live leases (issued at c=%d in %s), %s later\tbroker\t%s\t%s\t≤ %s\t\n", res.live, conns,
			res.fill.wall.Round(100*time.Millisecond), settle, mib(res.liveKB), mib(res.livePeakKB), mib(goalRSSLiveKB))
	}
	for _, e := range res.exports {
		what := fmt.Sprintf("credbroker %s: %d lines in %s", strings.Join(e.args, " "), e.lines, e.wall.Round(100*time.Millisecond))
		fmt.Fprintf(tw, "%s\tbroker\t%s before\t%s\t≤ %s\t\n", what, mib(e.brokerBefore), mib(e.brokerPeak), mib(goalRSSExportKB))
		fmt.Fprintf(tw, "\tCLI\t\t%s (VmHWM)\t≤ %s\t\n", mib(e.cliHWM), mib(goalRSSExportKB))
	}
	tw.Flush()
	if len(res.exports) > 0 {
		p("(the store held %d events before the export: the live leases' and %d more leases issued and revoked, two each;\n", res.events, len(res.pairs.lat))
		p(" --verify recomputes the hash chains once every event is in. Broker peak: VmRSS sampled every 20 ms; CLI: its\n")
		p(" VmHWM, sampled every 5 ms, so growth in its last 5 ms would be missed.)\n")
	}
}
