package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/plugins/plugintest"
)

// Goals of the benchmark (reported, never failed on).
const (
	goalIssueVsRaw  = 0.80 // broker issue throughput / raw, at concurrency 8 (issue 9)
	goalLiveVsEmpty = 0.80 // member_of issue throughput at scale / empty
)

type key struct {
	scn, phase, side, op string
	conc                 int
}

type fillResult struct {
	target int
	live   int // users that exist after the fill
	budget time.Duration
	res    result
	steps  []fillStep
	// stopErr is the first failed issue's error, when one failed.
	stopErr string
	// rawProbe is what a raw issue said right after the fill stopped.
	rawProbe string
	// madeRoom is how many of the filled leases were revoked again to make
	// room for the measurement.
	madeRoom int
}

// fillStep is the issue rate while the live count went from from to to.
type fillStep struct {
	from, to int
	rate     float64
}

type report struct {
	start     time.Time
	mu        sync.Mutex
	m         map[key]result
	fills     map[string]fillResult
	live      map[string]int
	breakdown []breakdownRow
	samplers  []*waitSampler
	errors    []string
	svc       svcReport // the Redis, RabbitMQ, MySQL and MQTT scenarios
	// The out-of-process comparison (svc_external_test.go): the servers
	// measured, why it did not run, and its operations per measurement.
	extInfo, extNote string
	extOps           int
	pgVersion        string
	loadStart        string
	// The sections that are not broker-vs-raw comparisons.
	stmts  *stmtProfile
	expiry *expiryResult
	memory *memoryResult
	drain  *drainResult
}

func newReport() *report {
	return &report{start: time.Now(), loadStart: loadAvg(), m: map[key]result{}, fills: map[string]fillResult{}, live: map[string]int{}}
}

func (rep *report) put(b *testing.B, k key, r result) {
	b.Helper()
	rep.mu.Lock()
	defer rep.mu.Unlock()
	rep.m[k] = r
	if r.errs > 0 {
		msg := fmt.Sprintf("%s %s %s %s c=%d: %d of %d operations failed; first: %v", k.scn, k.phase, k.side, k.op, k.conc, r.errs, r.ops, r.firstErr)
		rep.errors = append(rep.errors, msg)
		b.Error(msg)
	}
	if k.phase != "warmup" {
		b.Logf("%-9s %-6s %-6s %-6s c=%d: %4d ops in %8s: %7.1f ops/s, p50 %s, p99 %s",
			k.scn, k.phase, k.side, k.op, k.conc, len(r.lat), r.wall.Round(time.Millisecond), r.throughput(), ms(r.pct(0.5)), ms(r.pct(0.99)))
	}
}

// fail records a failed check among the report's errors and fails b.
func (rep *report) fail(b *testing.B, format string, a ...any) {
	b.Helper()
	msg := fmt.Sprintf(format, a...)
	rep.mu.Lock()
	rep.errors = append(rep.errors, msg)
	rep.mu.Unlock()
	b.Error(msg)
}

// fatal is fail, then ends b's scenario.
func (rep *report) fatal(b *testing.B, format string, a ...any) {
	b.Helper()
	rep.fail(b, format, a...)
	b.FailNow()
}

// sectionNote says why a section's figures are missing or incomplete:
// it was skipped, or it failed. Deferred at the start of the section.
func (rep *report) sectionNote(b *testing.B, scn string) string {
	switch {
	case b.Skipped():
		return cmpOr(rep.svcNoteFor(scn), "skipped (the reason is in the log above)")
	case b.Failed():
		return cmpOr(rep.svcNoteFor(scn), "FAILED: see the errors at the end and the log above")
	}
	return ""
}

func (rep *report) get(scn, phase, side, op string, conc int) (result, bool) {
	r, ok := rep.m[key{scn, phase, side, op, conc}]
	return r, ok && len(r.lat) > 0
}

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond && d > -time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

func opsps(r result, ok bool) string {
	if !ok {
		return "-"
	}
	v := r.throughput()
	if v < 100 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func ratio(a, b result, aok, bok bool) (float64, string) {
	if !aok || !bok || b.throughput() == 0 {
		return 0, "-"
	}
	v := a.throughput() / b.throughput()
	return v, fmt.Sprintf("%.2f", v)
}

func verdict(v, goal float64, shown string) string {
	if shown == "-" {
		return "-"
	}
	if v >= goal {
		return fmt.Sprintf("PASS (goal ≥ %.2f)", goal)
	}
	return fmt.Sprintf("BELOW (goal ≥ %.2f)", goal)
}

func (rep *report) print(w io.Writer) {
	rep.pgVersion = serverVersion()
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	line := strings.Repeat("=", 110)
	p("\n%s\ncredbroker benchmark  %s\n%s\n", line, time.Now().Format(time.RFC3339), line)
	p("machine: %d CPUs, %s/%s, %s; %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), rep.pgVersion)
	p("load average (1/5/15 min) at the start: %s, at the end: %s — the broker, PostgreSQL and this process share\n", rep.loadStart, loadAvg())
	p("        the machine with whatever else runs on it; broker and raw are measured in alternating rounds (%d each).\n", rounds)
	bin := os.Getenv("CREDBROKER_TEST_BINARY")
	if bin == "" {
		bin = "built by the harness"
	}
	p("broker: `credbroker serve` (%s), log level info, limits {issue_rate, issue_burst, request_rate, request_burst: 100000},\n", bin)
	p("        default/max TTL 1h/2h, backend pool max_conns %d, store pool default (10), reaper default;\n", conns)
	p("        called over HTTP/1.1 with generated Connect clients, one ES256 token on every call, %d idle connections\n", idleConns())
	p("        kept per host, two codecs: %s = binary protobuf (connect-go's default, what client.New and\n", sideLabel(sideProto))
	p("        the CLI send), %s = JSON (connect.WithProtoJSON(), what curl sends).\n", sideLabel(sideJSON))
	p("raw:    what a DBA or operator would type for the same result, sent straight to the server, in the same run:\n")
	p("        PostgreSQL: a pgx pool of %d connections to the same backend database, one simple-protocol round trip each:\n", conns)
	p("        CREATE ROLE … LOGIN PASSWORD '<SCRAM verifier computed client-side>' VALID UNTIL … IN ROLE <group> (explicit\n")
	p("        grants: + GRANT USAGE, GRANT SELECT ON ALL TABLES); revoke: DROP ROLE (explicit grants: DROP OWNED BY, DROP\n")
	p("        ROLE); renew: ALTER ROLE VALID UNTIL. Not a replay of the plugin's SQL. The other backends: section 6.\n")
	p("ops per measurement: member_of %d, explicit grants %d; live leases for the scale figures: %d\n",
		*flagOps, *flagGrantsOps, *flagLive)
	p("        (explicit grants: until the first failed issue or %s, whichever comes first);\n", *flagGrantsFill)
	p("        Redis %d, RabbitMQ %d, MySQL/MariaDB %d, MQTT %d (section 6).\n", *flagRedisOps, *flagRabbitOps, *flagMySQLOps, *flagMQTTOps)
	p("Each scenario has fresh store and backend databases (backend: %d tables, a group role with SELECT on them).\n", benchTables)
	p("Throughput = successful ops / wall time; latency per op, nearest-rank percentiles.\n")

	if _, ok := rep.get("member_of", "empty", sideProto, "issue", 1); ok {
		p("\n1. member_of, empty database: broker vs raw\n\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "op\tconc\tclient\tops\tbroker ops/s\tp50\tp99\traw ops/s\tp50\tp99\tbroker/raw\tload\tgoal\t")
		for _, row := range []struct {
			op   string
			conc int
		}{{"issue", 1}, {"revoke", 1}, {"issue", conns}, {"renew", conns}, {"revoke", conns}} {
			rr, rok := rep.get("member_of", "empty", "raw", row.op, row.conc)
			for _, sd := range []string{sideProto, sideJSON} {
				br, bok := rep.get("member_of", "empty", sd, row.op, row.conc)
				if !bok && !rok {
					continue
				}
				v, shown := ratio(br, rr, bok, rok)
				goal := ""
				if row.op == "issue" && row.conc == conns {
					goal = verdict(v, goalIssueVsRaw, shown)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", row.op, row.conc, codec(sd), br.ops,
					opsps(br, bok), ms(br.pct(.5)), ms(br.pct(.99)), opsps(rr, rok), ms(rr.pct(.5)), ms(rr.pct(.99)), shown, br.load, goal)
			}
		}
		tw.Flush()
		p("(load: the machine's 1-minute load average when the measurement began; %d CPUs.)\n", runtime.NumCPU())
	}

	p("\n2. Scale: issue and revoke at concurrency %d with live leases vs an empty database\n\n", conns)
	for _, scn := range []string{"member_of", "grants"} {
		f, ok := rep.fills[scn]
		if !ok {
			continue
		}
		extra := ""
		switch {
		case f.stopErr != "" && f.rawProbe != "":
			extra = " — stopped at the first failed issue"
		case f.res.ops < f.target:
			extra = fmt.Sprintf(" — stopped by the %s budget before %d", f.budget, f.target)
		}
		p("fill %-9s: %d live leases issued through the broker at c=%d in %s (%.1f issues/s, p50 %s, p99 %s, %d errors)%s\n",
			scn, f.live, conns, f.res.wall.Round(100*time.Millisecond), f.res.throughput(), ms(f.res.pct(.5)), ms(f.res.pct(.99)), f.res.errs, extra)
		var steps []string
		for _, s := range f.steps {
			steps = append(steps, fmt.Sprintf("%d–%d: %.0f/s", s.from, s.to, s.rate))
		}
		if len(steps) > 0 {
			p("     issues/s as they piled up: %s\n", strings.Join(steps, ", "))
		}
		if f.rawProbe != "" {
			p("     the broker then answered: %s\n", f.stopErr)
			p("     a raw issue at that point: %s\n", f.rawProbe)
			p("     %d leases were revoked again to make room; the figures below are taken at %d live users.\n", f.madeRoom, rep.live[scn])
		}
	}
	p("\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "role\top\tside\tops\tempty ops/s\tp50\tp99\tload\tlive\tops/s\tp50\tp99\tload\tlive/empty\tcorrected\tbroker/raw\tgoal\t")
	for _, scn := range []string{"member_of", "grants"} {
		for _, op := range []string{"issue", "revoke", "renew"} {
			for _, side := range []string{sideProto, sideJSON, "raw"} {
				er, eok := rep.get(scn, "empty", side, op, conns)
				lr, lok := rep.get(scn, "live", side, op, conns)
				if !eok && !lok {
					continue
				}
				v, shown := ratio(lr, er, lok, eok)
				corrected, vsRaw, goal := "", "", ""
				if side != "raw" {
					// The raw baseline's own live/empty ratio, measured in the
					// same rounds, takes out what the machine's load and
					// PostgreSQL itself did between the two phases.
					rl, rlok := rep.get(scn, "live", "raw", op, conns)
					re, reok := rep.get(scn, "empty", "raw", op, conns)
					rv, rshown := ratio(rl, re, rlok, reok)
					cv := 0.0
					if shown != "-" && rshown != "-" && rv > 0 {
						cv = v / rv
						corrected = fmt.Sprintf("%.2f", cv)
					}
					_, vsRaw = ratio(lr, rl, lok, rlok)
					if scn == "member_of" && op == "issue" {
						goal = verdict(v, goalLiveVsEmpty, shown)
						if corrected != "" {
							goal += "; corrected " + strings.Fields(verdict(cv, goalLiveVsEmpty, corrected))[0]
						}
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", scn, op, sideLabel(side), lr.ops,
					opsps(er, eok), ms(er.pct(.5)), ms(er.pct(.99)), er.load, rep.live[scn],
					opsps(lr, lok), ms(lr.pct(.5)), ms(lr.pct(.99)), lr.load, shown, corrected, vsRaw, goal)
			}
		}
	}
	tw.Flush()
	p("(live/empty: throughput with live leases ÷ in the empty database. corrected: the broker's live/empty ÷ the raw\n")
	p(" baseline's, measured in the same rounds, which takes out machine load and PostgreSQL's own change; broker/raw:\n")
	p(" with live leases. Explicit grants have their own fresh database. Each measurement issues its ops in rounds of\n")
	p(" ops/%d and revokes them before the next round, so issue figures are taken with 0→ops/%d (live→live+ops/%d) users.)\n", rounds, rounds, rounds)

	if _, ok := rep.get("member_of", "empty", sideProto, "renew", conns); ok {
		p("\n3. Renew at concurrency %d (member_of; broker: RenewLease with increment 1h, raw: ALTER ROLE … VALID UNTIL)\n\n", conns)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "live\tclient\tbroker ops/s\tp50\tp99\traw ops/s\tp50\tp99\tbroker/raw\t")
		for _, phase := range []string{"empty", "live"} {
			live := 0
			if phase == "live" {
				live = rep.live["member_of"]
			}
			rr, rok := rep.get("member_of", phase, "raw", "renew", conns)
			for _, sd := range []string{sideProto, sideJSON} {
				br, bok := rep.get("member_of", phase, sd, "renew", conns)
				if !bok {
					continue
				}
				_, shown := ratio(br, rr, bok, rok)
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", live, codec(sd), opsps(br, bok), ms(br.pct(.5)), ms(br.pct(.99)),
					opsps(rr, rok), ms(rr.pct(.5)), ms(rr.pct(.99)), shown)
			}
		}
		tw.Flush()
	}

	if len(rep.breakdown) > 0 {
		rep.printBreakdown(w)
	}
	if len(rep.samplers) > 0 {
		p("\n5. PostgreSQL-side profile: what the active sessions of the store and backend databases waited on.\n")
		p("   In the store database the only advisory lock is the lease_events hash chain's (leases/events.go);\n")
		p("   in the backend database it is the plugin's grant lock (plugins/postgres/sql.go).\n")
	}
	for _, ws := range rep.samplers {
		ws.print(w)
	}
	if rep.stmts != nil {
		if len(rep.samplers) == 0 {
			p("\n5. PostgreSQL-side profile\n")
		}
		rep.stmts.print(w)
	}
	rep.printServices(w, map[string]bool{"redis": *flagSkipRedis, "rabbitmq": *flagSkipRabbit, "mysql": *flagSkipMySQL, "mqtt": *flagSkipMQTT})
	rep.printExternal(w)
	rep.printExpiry(w)
	rep.printMemory(w)
	rep.printDrain(w)
	rep.printSummary(w)

	p("\nerrors: ")
	if len(rep.errors) == 0 {
		p("none\n")
	} else {
		p("%d\n", len(rep.errors))
		for _, e := range rep.errors {
			p("  %s\n", e)
		}
	}
	p("total benchmark time: %s\n%s\n", time.Since(rep.start).Round(time.Second), line)
}

// codec names the client of a broker side.
func codec(side string) string {
	switch side {
	case sideProto:
		return "proto"
	case sideJSON:
		return "JSON"
	}
	return side
}

// goDefaultIdle is Go's http.DefaultMaxIdleConnsPerHost.
const goDefaultIdle = 2

func serverVersion() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := os.Getenv(plugintest.PostgresURLEnv)
	if url == "" {
		url = plugintest.DefaultPostgresURL
	}
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return "PostgreSQL (version unknown)"
	}
	defer c.Close(ctx)
	var v, fsync, sc string
	if err := c.QueryRow(ctx, `SELECT split_part(version(), ' on ', 1), current_setting('fsync'), current_setting('synchronous_commit')`).Scan(&v, &fsync, &sc); err != nil {
		return "PostgreSQL (version unknown)"
	}
	return fmt.Sprintf("%s (fsync %s, synchronous_commit %s)", v, fsync, sc)
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// load1 returns the 1-minute load average.
func load1() string {
	f := strings.Fields(loadAvg())
	return f[0]
}
