package bench

import (
	"flag"
	"fmt"
	"io"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/credbroker/credbroker/plugins/plugintest"
)

// The drain section: replicas sharing one lease store share the reaper's
// work through row locks (FOR UPDATE SKIP LOCKED claims). One broker, then
// -cb.drain-brokers brokers on one fresh store (distinct ports, default
// reaper settings), are given -cb.drain-leases short Redis leases, issued
// through them in turn with TTLs that end them all at the same instant; the
// bench waits until the store shows them all REVOKED and reads, from the
// store, the drain time (first expiry to last revoke), the rate, and the
// lag of each lease. It fails if any lease has no `revoked` event or more
// than one: each expiry must be revoked exactly once, whichever replica
// claims it.

var (
	flagDrainLeases  = flag.Int("cb.drain-leases", 10000, "leases the drain section lets expire at once, through one broker and through several")
	flagDrainBrokers = flag.Int("cb.drain-brokers", 3, "brokers on one store in the drain section")
	flagSkipDrain    = flag.Bool("cb.skip-drain", false, "skip the drain section (one broker vs several draining expirations)")
)

// drainRun is one drain: the brokers, the issue, what the store says.
type drainRun struct {
	brokers int
	issue   result
	stats   expiryStats
	load    string
}

// rate is revokes per second of the drain time.
func (d drainRun) rate() float64 {
	if t := d.stats.drainTime(); t > 0 {
		return float64(d.stats.leases) / t.Seconds()
	}
	return 0
}

// drainResult is the drain section's figures for the report.
type drainResult struct {
	runs []drainRun
	note string
}

func benchDrain(b *testing.B, rep *report) {
	const scn = "drain"
	res := &drainResult{}
	rep.drain = res
	defer func() { res.note = rep.sectionNote(b, scn) }()
	rs := openRedis(b, rep, scn)
	for i, k := range []int{1, *flagDrainBrokers} {
		d, ok := drainOnce(b, rep, rs, fmt.Sprintf("d%d", i), k)
		res.runs = append(res.runs, d)
		if !ok {
			return
		}
	}
}

// drainOnce lets n leases expire on k brokers sharing a fresh store, role
// cbbench-<run>-<short>. It reports false when it could not measure.
func drainOnce(b *testing.B, rep *report, rs *redisServer, short string, k int) (drainRun, bool) {
	b.Helper()
	n := *flagDrainLeases
	role := svcRole(short)
	store := plugintest.NewTestDatabase(b, plugintest.PostgresURL(b))
	var handles []*svcHandle
	var clients []brokerClient
	for range k {
		s := rs.broker(role, redisRules(short))
		s.storeURL = store
		h := startSvcBroker(b, s)
		handles = append(handles, h)
		clients = append(clients, volumeClient(h.broker, h.token))
	}
	// The brokers stop once measured, so the next run has the machine.
	defer func() {
		for _, h := range handles {
			if err := h.broker.Stop(); err != nil {
				rep.fail(b, "drain: stop a broker: %v", err)
			}
		}
	}()
	d := drainRun{brokers: k, load: load1()}
	second := expiryWindow(n)
	// Every lease ends at the same instant: a backlog of n due at once.
	ids, r := issueExpiring(b, clients, role, short, n, func(int) time.Time { return second })
	d.issue = r
	if r.errs > 0 {
		rep.fail(b, "drain, %d brokers: %d of %d issues failed; first: %v", k, r.errs, n, r.firstErr)
		return d, false
	}
	b.Logf("drain, %d brokers: %d Redis leases issued in %s, to expire from %s on", k, len(ids), r.wall.Round(time.Millisecond), second.Format("15:04:05.000"))
	st, err := awaitRevoked(b, store, ids, second.Add(max(2*time.Minute, time.Duration(n)*20*time.Millisecond)))
	if err != nil {
		rep.fail(b, "drain, %d brokers: %v", k, err)
		return d, false
	}
	d.stats = st
	b.Logf("drain, %d brokers: drained in %s (%.0f/s), lag p50 %s, max %s", k, dur(st.drainTime()), d.rate(), dur(st.lag(.5)), dur(st.lag(1)))
	if st.noEvent > 0 || st.manyEvents > 0 {
		rep.fail(b, "drain, %d brokers: %d of %d leases have no `revoked` event and %d more than one; each must be revoked exactly once",
			k, st.noEvent, n, st.manyEvents)
	}
	if left := rs.count(b, userPrefix+short+"_"); left != 0 {
		rep.fail(b, "drain, %d brokers: %d of the Redis users are left after every lease was revoked", k, left)
	}
	return d, true
}

// printDrain prints section 10.
func (rep *report) printDrain(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("\n10. Drain: %d leases expiring at the same instant, revoked by one broker and by %d brokers on one store\n\n", *flagDrainLeases, *flagDrainBrokers)
	res := rep.drain
	switch {
	case *flagSkipDrain:
		p("   not run (-cb.skip-drain)\n")
		return
	case res == nil:
		p("   did not run\n")
		return
	}
	if res.note != "" {
		p("   %s\n", res.note)
	}
	if len(res.runs) == 0 {
		return
	}
	p("   Each run: fresh lease store, Redis leases issued through the brokers in turn (c=%d), default reaper\n", conns)
	p("   settings; from the store: drain = first expires_at to last revoked_at, lag = revoked_at − expires_at.\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "brokers\tleases\tissued in\tdrain\trevokes/s\tlag p50\tp99\tmax\tno `revoked`\ttwo or more\tretried\tload\t")
	for _, d := range res.runs {
		st := d.stats
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%.0f\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t\n", d.brokers, st.leases, d.issue.wall.Round(100*time.Millisecond),
			dur(st.drainTime()), d.rate(), dur(st.lag(.5)), dur(st.lag(.99)), dur(st.lag(1)), st.noEvent, st.manyEvents, st.revokeFailed, d.load)
	}
	tw.Flush()
	p("(no `revoked`, two or more: leases with no `revoked` event, or more than one, in the store — each must have\n")
	p(" exactly one; retried: `revoke_failed` events. Rate = leases ÷ drain time.)\n")
}
