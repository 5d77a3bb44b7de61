package bench

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The summary: one line per target of issue 9, from the figures the
// sections above measured in this run, with what falls short marked SHORT.
// A target whose section did not run says so instead of a verdict.

// Targets of issue 9 not declared beside their sections.
const (
	goalIssueVsRawOther = 0.70                 // MySQL/MariaDB and RabbitMQ issue at c=8 vs their raw job
	goalRedisIssueRate  = 2000.0               // Redis issues per second through the broker at c=8
	goalAddedP50        = time.Millisecond     // broker p50 minus raw p50 at c=1
	goalAddedP99        = 3 * time.Millisecond // broker p99 minus raw p99 at c=1
	goalRevokeVsRaw     = 0.25                 // PostgreSQL revoke at c=8 vs DROP ROLE
	goalRenewVsRaw      = 0.50                 // renew at c=8 vs ALTER ROLE … VALID UNTIL
	goalDrainVsOne      = 1.00                 // several brokers' drain rate vs one broker's
)

// Verdicts, and the figure of a target whose section did not run.
const (
	okMark            = "ok"
	shortMark         = "SHORT"
	notMeasured       = "not measured"
	notMeasuredFigure = "- (section not run)"
)

type summaryRow struct{ target, raw, broker, figure, goal, verdict string }

func mark(met bool) string {
	if met {
		return okMark
	}
	return shortMark
}

// summary collects the rows.
type summary struct{ rows []summaryRow }

func (s *summary) add(r summaryRow) { s.rows = append(s.rows, r) }

func (s *summary) missing(target, goal string) {
	s.add(summaryRow{target: target, raw: "-", broker: "-", figure: notMeasuredFigure, goal: goal, verdict: notMeasured})
}

// ratioRow compares the throughput of a broker side with the raw side's.
func (rep *report) ratioRow(s *summary, target, scn, phase, side, op string, conc int, goal float64) {
	goalText := fmt.Sprintf("≥ %.2f× raw", goal)
	br, bok := rep.get(scn, phase, side, op, conc)
	rr, rok := rep.get(scn, phase, "raw", op, conc)
	if !bok || !rok {
		s.missing(target, goalText)
		return
	}
	v, shown := ratio(br, rr, bok, rok)
	s.add(summaryRow{target: target, raw: opsps(rr, rok) + "/s", broker: opsps(br, bok) + "/s", figure: shown + "×", goal: goalText, verdict: mark(v >= goal)})
}

// addedRow is the latency the broker adds to the raw job at c=1.
func (rep *report) addedRow(s *summary, target, scn, phase string) {
	goalText := fmt.Sprintf("p50 ≤ +%s, p99 ≤ +%s", ms(goalAddedP50), ms(goalAddedP99))
	br, bok := rep.get(scn, phase, sideProto, "issue", 1)
	rr, rok := rep.get(scn, phase, "raw", "issue", 1)
	if !bok || !rok {
		s.missing(target, goalText)
		return
	}
	d50, d99 := br.pct(.5)-rr.pct(.5), br.pct(.99)-rr.pct(.99)
	var short []string
	if d50 > goalAddedP50 {
		short = append(short, "p50")
	}
	if d99 > goalAddedP99 {
		short = append(short, "p99")
	}
	verdict := verdictOf(short)
	s.add(summaryRow{target: target,
		raw:    fmt.Sprintf("p50 %s, p99 %s", ms(rr.pct(.5)), ms(rr.pct(.99))),
		broker: fmt.Sprintf("p50 %s, p99 %s", ms(br.pct(.5)), ms(br.pct(.99))),
		figure: fmt.Sprintf("%+.1fms, %+.1fms", msf(d50), msf(d99)),
		goal:   goalText, verdict: verdict})
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// printSummary prints the targets table.
func (rep *report) printSummary(w io.Writer) {
	var s summary
	for _, sd := range []string{sideProto, sideJSON} {
		rep.ratioRow(&s, "issue c=8, PostgreSQL member_of, "+codec(sd), "member_of", "empty", sd, "issue", conns, goalIssueVsRaw)
	}
	rep.ratioRow(&s, "issue c=8, MySQL/MariaDB", "mysql", "svc", sideProto, "issue", conns, goalIssueVsRawOther)
	rep.ratioRow(&s, "issue c=8, RabbitMQ", "rabbitmq", "svc", sideProto, "issue", conns, goalIssueVsRawOther)
	for _, sd := range []string{sideProto, sideJSON} {
		target, goalText := "issue c=8, Redis, "+codec(sd), fmt.Sprintf("≥ %.0f/s", goalRedisIssueRate)
		br, bok := rep.get("redis", "svc", sd, "issue", conns)
		rr, rok := rep.get("redis", "svc", "raw", "issue", conns)
		if !bok {
			s.missing(target, goalText)
			continue
		}
		s.add(summaryRow{target: target, raw: opsps(rr, rok) + "/s", broker: opsps(br, bok) + "/s",
			figure: opsps(br, bok) + "/s", goal: goalText, verdict: mark(br.throughput() >= goalRedisIssueRate)})
	}
	rep.addedRow(&s, "added latency c=1, issue, PostgreSQL", "member_of", "empty")
	for _, b := range []struct{ scn, name string }{{"redis", "Redis"}, {"mysql", "MySQL/MariaDB"}, {"rabbitmq", "RabbitMQ"}, {"mqtt", "MQTT"}} {
		rep.addedRow(&s, "added latency c=1, issue, "+b.name, b.scn, "svc")
	}
	rep.ratioRow(&s, "revoke c=8, PostgreSQL (vs DROP ROLE)", "member_of", "empty", sideProto, "revoke", conns, goalRevokeVsRaw)
	rep.ratioRow(&s, "renew c=8, PostgreSQL (vs ALTER ROLE)", "member_of", "empty", sideProto, "renew", conns, goalRenewVsRaw)
	rep.expirySummary(&s)
	rep.memorySummary(&s)
	rep.scaleSummary(&s)
	rep.drainSummary(&s)

	line := strings.Repeat("-", 110)
	fmt.Fprintf(w, "\n%s\nSummary: the targets of issue 9, from this run\n%s\n", line, line)
	fmt.Fprintf(w, "load average (1/5/15 min) at the start: %s, at the end: %s (%d CPUs shared with everything else)\n\n",
		rep.loadStart, loadAvg(), runtime.NumCPU())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\traw\tbroker\tratio/figure\tgoal\tverdict\t")
	short := 0
	for _, r := range s.rows {
		if strings.HasPrefix(r.verdict, shortMark) {
			short++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", r.target, r.raw, r.broker, r.figure, r.goal, r.verdict)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d of %d targets SHORT. Broker/raw ratios are throughputs measured in the same alternating rounds; added\n", short, len(s.rows))
	fmt.Fprintf(w, "latency is the broker's p50 (p99) minus the raw side's, proto client; memory in MiB (2^20 bytes) from /proc. The\n")
	fmt.Fprintf(w, "figures are as noisy as the load above: compare runs only at similar load.\n")
}

func (rep *report) expirySummary(s *summary) {
	target := fmt.Sprintf("expiry lag, %d leases in one second", *flagExpiryLeases)
	goalText := fmt.Sprintf("p50 ≤ %s, max ≤ %s", secs(goalExpiryP50), secs(goalExpiryMax))
	res := rep.expiry
	if res == nil || len(res.stats.lags) == 0 {
		s.missing(target, goalText)
		return
	}
	st := res.stats
	p50, worst := st.lag(.5), st.lag(1)
	var short []string
	if p50 > goalExpiryP50 {
		short = append(short, "p50")
	}
	if worst > goalExpiryMax {
		short = append(short, "max")
	}
	verdict := verdictOf(short)
	s.add(summaryRow{target: target, raw: "-", broker: "Redis, default reaper",
		figure: fmt.Sprintf("p50 %s, p99 %s, max %s", secs(p50), secs(st.lag(.99)), secs(worst)), goal: goalText, verdict: verdict})
}

func (rep *report) memorySummary(s *summary) {
	res := rep.memory
	ok := res != nil
	row := func(target string, kb, goal int64) {
		goalText := "≤ " + mib(goal)
		if !ok || kb == 0 {
			s.missing(target, goalText)
			return
		}
		s.add(summaryRow{target: target, raw: "-", broker: mib(kb), figure: mib(kb), goal: goalText, verdict: mark(kb <= goal)})
	}
	var idle, live int64
	if ok {
		idle, live = res.idleKB, res.liveKB
	}
	row("RSS idle, broker", idle, goalRSSIdleKB)
	row(fmt.Sprintf("RSS with %d live leases, broker", *flagMemoryLive), live, goalRSSLiveKB)
	if !ok || len(res.exports) == 0 {
		row(fmt.Sprintf("RSS during a %d-event export, broker peak", *flagExportEvents), 0, goalRSSExportKB)
		row(fmt.Sprintf("RSS during a %d-event export, CLI peak", *flagExportEvents), 0, goalRSSExportKB)
		return
	}
	for _, e := range res.exports {
		what := fmt.Sprintf("RSS during `credbroker %s` (%d lines)", strings.Join(e.args, " "), e.lines)
		row(what+", broker peak", e.brokerPeak, goalRSSExportKB)
		row(what+", CLI peak", e.cliHWM, goalRSSExportKB)
		if slices.Contains(e.args, "--verify") || slices.Contains(e.args, "verify") {
			// Not a target of its own, but what the store's changes must keep.
			figure := "chains intact"
			if e.err != "" {
				figure = "fails: see the errors below"
			}
			s.add(summaryRow{target: fmt.Sprintf("`credbroker %s` of %d events", strings.Join(e.args, " "), res.events), raw: "-", broker: "-",
				figure: figure, goal: "exit 0, chains intact", verdict: mark(e.err == "")})
		}
	}
}

func (rep *report) scaleSummary(s *summary) {
	target := fmt.Sprintf("issue c=8 at %d live vs empty, member_of", *flagLive)
	goalText := fmt.Sprintf("≥ %.2f× empty", goalLiveVsEmpty)
	er, eok := rep.get("member_of", "empty", sideProto, "issue", conns)
	lr, lok := rep.get("member_of", "live", sideProto, "issue", conns)
	if !eok || !lok {
		s.missing(target, goalText)
		return
	}
	v, shown := ratio(lr, er, lok, eok)
	figure := shown + "×"
	rl, rlok := rep.get("member_of", "live", "raw", "issue", conns)
	re, reok := rep.get("member_of", "empty", "raw", "issue", conns)
	rawText := "-"
	if rv, rshown := ratio(rl, re, rlok, reok); rshown != "-" && rv > 0 {
		rawText = "live/empty " + rshown + "×"
		figure += fmt.Sprintf(" (÷ raw's: %.2f×)", v/rv)
	}
	s.add(summaryRow{target: target, raw: rawText,
		broker: fmt.Sprintf("%s/s → %s/s at %d live", opsps(er, eok), opsps(lr, lok), rep.live["member_of"]),
		figure: figure, goal: goalText, verdict: mark(v >= goalLiveVsEmpty)})
}

func (rep *report) drainSummary(s *summary) {
	k := *flagDrainBrokers
	rateTarget := fmt.Sprintf("drain %d expired leases, %d brokers vs 1", *flagDrainLeases, k)
	onceTarget := fmt.Sprintf("drain, %d brokers: each lease revoked exactly once", k)
	rateGoal := fmt.Sprintf("≥ %.2f× one broker", goalDrainVsOne)
	onceGoal := "one `revoked` event each"
	res := rep.drain
	if res == nil || len(res.runs) < 2 || res.runs[1].stats.leases == 0 || res.runs[0].stats.leases == 0 {
		s.missing(rateTarget, rateGoal)
		s.missing(onceTarget, onceGoal)
		return
	}
	one, many := res.runs[0], res.runs[1]
	v := 0.0
	if one.rate() > 0 {
		v = many.rate() / one.rate()
	}
	s.add(summaryRow{target: rateTarget, raw: fmt.Sprintf("1 broker: %.0f/s", one.rate()), broker: fmt.Sprintf("%d brokers: %.0f/s", k, many.rate()),
		figure: fmt.Sprintf("%.2f×", v), goal: rateGoal, verdict: mark(v >= goalDrainVsOne)})
	st := many.stats
	s.add(summaryRow{target: onceTarget, raw: "-", broker: fmt.Sprintf("%d leases", st.leases),
		figure: fmt.Sprintf("%d without, %d with two or more", st.noEvent, st.manyEvents), goal: onceGoal,
		verdict: mark(st.noEvent == 0 && st.manyEvents == 0)})
}

// secs shows a duration in seconds with two decimals.
func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// verdictOf is okMark, or shortMark naming what falls short.
func verdictOf(short []string) string {
	if len(short) == 0 {
		return okMark
	}
	return shortMark + " (" + strings.Join(short, ", ") + ")"
}
