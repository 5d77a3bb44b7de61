package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkCredbroker runs every scenario once (whatever b.N is) and prints
// the report. Each scenario is a sub-benchmark with fresh databases, cleaned
// up (broker stopped, databases and roles dropped) before the next starts.
func BenchmarkCredbroker(b *testing.B) {
	rep := newReport()
	if !*flagSkipMember {
		b.Run("member_of", func(b *testing.B) { once(b, func() { benchMemberOf(b, rep) }) })
	}
	if !*flagSkipGrants {
		b.Run("grants", func(b *testing.B) { once(b, func() { benchGrants(b, rep) }) })
	}
	if !*flagSkipRedis {
		b.Run("redis", func(b *testing.B) { once(b, func() { benchRedis(b, rep) }) })
	}
	if !*flagSkipRabbit {
		b.Run("rabbitmq", func(b *testing.B) { once(b, func() { benchRabbitMQ(b, rep) }) })
	}
	if !*flagSkipMySQL {
		b.Run("mysql", func(b *testing.B) { once(b, func() { benchMySQL(b, rep) }) })
	}
	if !*flagSkipMQTT {
		b.Run("mqtt", func(b *testing.B) { once(b, func() { benchMQTT(b, rep) }) })
	}
	if !*flagSkipExternal {
		b.Run("external", func(b *testing.B) { once(b, func() { benchExternal(b, rep) }) })
	}
	if !*flagSkipExpiry {
		b.Run("expiry", func(b *testing.B) { once(b, func() { benchExpiry(b, rep) }) })
	}
	if !*flagSkipMemory {
		b.Run("memory", func(b *testing.B) { once(b, func() { benchMemory(b, rep) }) })
	}
	if !*flagSkipDrain {
		b.Run("drain", func(b *testing.B) { once(b, func() { benchDrain(b, rep) }) })
	}
	rep.print(os.Stdout)
}

// once runs f the first time a sub-benchmark is called: the scenarios take
// minutes, their op counts come from the flags, not from b.N.
func once(b *testing.B, f func()) {
	if b.N > 1 {
		b.Skip("runs once; use -benchtime 1x")
	}
	f()
}

// cycle issues n leases at conc, optionally renews each once at conc, then
// revokes them at conc, recording issue, renew and revoke under key.
type sideOps struct {
	issue  func(ctx context.Context) (leaseRef, error)
	renew  func(ctx context.Context, l leaseRef) error
	revoke func(ctx context.Context, l leaseRef) error
}

func (e *env) rawSide() sideOps {
	return sideOps{
		issue: func(ctx context.Context) (leaseRef, error) {
			u, err := e.raw.issue(ctx, roleTTL)
			return leaseRef{username: u}, err
		},
		renew:  func(ctx context.Context, l leaseRef) error { return e.raw.renew(ctx, l.username, roleTTL) },
		revoke: func(ctx context.Context, l leaseRef) error { return e.raw.revoke(ctx, l.username) },
	}
}

// cycle issues n leases at conc, optionally renews each once at conc, then
// revokes them at conc. It returns issue, renew and revoke.
func cycle(s sideOps, n, conc int, renew bool) (issue, ren, revoke result) {
	refs := make([]leaseRef, n)
	ok := make([]bool, n)
	issue = run(n, conc, func(ctx context.Context, i int) error {
		l, err := s.issue(ctx)
		refs[i], ok[i] = l, err == nil
		return err
	})
	if renew {
		ren = run(n, conc, func(ctx context.Context, i int) error {
			if !ok[i] {
				return errSkipped
			}
			return s.renew(ctx, refs[i])
		})
	}
	revoke = run(n, conc, func(ctx context.Context, i int) error {
		if !ok[i] {
			return errSkipped
		}
		return s.revoke(ctx, refs[i])
	})
	return issue, ren, revoke
}

// rounds is how many slices a measurement of the broker and the raw baseline
// is cut into, taken alternately (raw, broker, broker, raw, …), so that load
// from elsewhere on the machine or a slow drift hits both sides alike.
const rounds = 4

// side is one way of doing the operations, measured against the others.
type side struct {
	name string
	ops  sideOps
}

// compare measures the sides against each other: n operations each, at
// conc, in interleaved rounds (order reversed every other round), and
// records issue, renew (if renew) and revoke of each.
func (rep *report) compare(b *testing.B, scn, phase string, sides []side, n, conc int, renew bool) {
	b.Helper()
	load := load1()
	acc := map[key]result{}
	for r := range rounds {
		per := n / rounds
		if r < n%rounds {
			per++
		}
		order := slices.Clone(sides)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, sd := range order {
			is, rn, rv := cycle(sd.ops, per, conc, renew)
			for op, res := range map[string]result{"issue": is, "renew": rn, "revoke": rv} {
				if op == "renew" && !renew {
					continue
				}
				k := key{scn, phase, sd.name, op, conc}
				acc[k] = merge(acc[k], res)
			}
		}
	}
	for _, sd := range sides {
		for _, op := range []string{"issue", "renew", "revoke"} {
			if k := (key{scn, phase, sd.name, op, conc}); acc[k].conc != 0 {
				res := acc[k]
				res.load = load
				rep.put(b, k, res)
			}
		}
	}
}

// fill issues up to n leases through the broker at concurrency 8 and leaves
// them live. It stops after budget (0: no limit) and, with stopOnError, at
// the first failed issue. It returns the leases issued.
func (rep *report) fill(b *testing.B, e *env, scn, role string, n int, budget time.Duration, stopOnError bool) []leaseRef {
	b.Helper()
	before := countRoles(b, e.admin)
	var (
		mu   sync.Mutex
		done []time.Time // completion times of successful issues, in order
		refs []leaseRef
	)
	ws := startSampler(b, fmt.Sprintf("the %s fill (broker issues only, c=%d)", scn, conns), e.admin, e.dbNames)
	start := time.Now()
	r := runWith(n, conns, runOpts{budget: budget, stopOnError: stopOnError}, func(ctx context.Context, i int) error {
		l, err := e.cli.issue(ctx, role, 0)
		if err == nil {
			mu.Lock()
			done = append(done, time.Now())
			refs = append(refs, l)
			mu.Unlock()
		}
		return err
	})
	ws.stop()
	rep.samplers = append(rep.samplers, ws)
	live := countRoles(b, e.admin) - before
	f := fillResult{target: n, res: r, live: live, budget: budget, steps: fillSteps(start, done, n)}
	if r.errs > 0 {
		f.stopErr = r.firstErr.Error()
		if !stopOnError {
			msg := fmt.Sprintf("%s fill: %d of %d issues failed; first: %v", scn, r.errs, r.ops, r.firstErr)
			rep.errors = append(rep.errors, msg)
			b.Error(msg)
		}
	}
	rep.fills[scn] = f
	b.Logf("%s: %d live leases issued through the broker at c=%d in %s (%d failed)", scn, live, conns, r.wall.Round(time.Millisecond), r.errs)
	return refs
}

// checkLeft fails the benchmark if a measurement left users behind (or
// removed some it should not have).
func checkLeft(b *testing.B, e *env, want int, when string) {
	b.Helper()
	if got := countRoles(b, e.admin); got != want {
		b.Errorf("%s: %d users of this run exist, want %d", when, got, want)
	}
}

func benchMemberOf(b *testing.B, rep *report) {
	const scn = "member_of"
	n := *flagOps
	e := newEnv(b, "mo")
	e.raw.memberOf = []string{e.group}
	sides := []side{{"raw", e.rawSide()}, {sideProto, e.cli.side(roleMember)}, {sideJSON, e.cliJSON.side(roleMember)}}

	// A short warm-up of every side (connections, caches).
	rep.compare(b, scn, "warmup", sides, 20, conns, false)
	rep.compare(b, scn, "empty", sides, n, 1, false)
	checkLeft(b, e, 0, "member_of empty c=1")
	// What PostgreSQL spends its time on during the c=8 measurement.
	var stmts *stmtWindow
	if !*flagSkipStmts {
		stmts = startStatements(b, e.admin, e.dbNames)
	}
	rep.compare(b, scn, "empty", sides, n, conns, true)
	if stmts != nil {
		rep.stmts = stmts.collect(b, fmt.Sprintf("the member_of measurement at c=%d in the empty database (%d issues, renews and revokes per side: raw, broker proto, broker JSON)", conns, n))
	}
	checkLeft(b, e, 0, fmt.Sprintf("member_of empty c=%d", conns))
	if !*flagSkipProfile {
		benchBreakdown(b, rep, e)
		checkLeft(b, e, 0, "breakdown")
	}

	live := *flagLive
	rep.fill(b, e, scn, roleMember, live, 0, false)
	liveNow := countRoles(b, e.admin)
	rep.compare(b, scn, "live", sides, n, conns, true)
	checkLeft(b, e, liveNow, "member_of at scale")
	rep.live[scn] = liveNow
}

func benchGrants(b *testing.B, rep *report) {
	const scn = "grants"
	n := *flagGrantsOps
	e := newEnv(b, "gr")
	e.raw.grants = true
	broker := e.cli.side(roleGrants)
	raw := e.rawSide()

	rep.compare(b, scn, "warmup", []side{{"raw", raw}, {sideProto, broker}}, 10, conns, false)
	rep.compare(b, scn, "empty", []side{{"raw", raw}, {sideProto, broker}}, n, conns, false)
	checkLeft(b, e, 0, "grants empty")

	// Explicit grants cannot reach 5 000 live users on PostgreSQL: every
	// user adds an aclitem to each table's relacl, pg_class has no TOAST
	// table, and once the compressed ACL no longer fits in a page every
	// GRANT fails ("row is too big"). Fill until that happens (or the
	// budget ends), then make room and measure just below it.
	refs := rep.fill(b, e, scn, roleGrants, *flagLive, *flagGrantsFill, true)
	f := rep.fills[scn]
	if f.res.errs > 0 {
		// The broker only says "unavailable … retry shortly"; ask PostgreSQL.
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		u, err := e.raw.issue(ctx, roleTTL)
		cancel()
		if err == nil {
			_ = e.raw.revoke(context.Background(), u)
			f.rawProbe = "succeeded"
		} else {
			f.rawProbe = err.Error()
		}
		room := min(n+rounds, len(refs))
		rr := run(room, conns, func(ctx context.Context, i int) error { return e.cli.revoke(ctx, refs[i]) })
		f.madeRoom = len(rr.lat)
		rep.fills[scn] = f
		if rr.errs > 0 {
			b.Errorf("grants: make room: %d revokes failed; first: %v", rr.errs, rr.firstErr)
		}
	}
	liveNow := countRoles(b, e.admin)
	rep.compare(b, scn, "live", []side{{"raw", raw}, {sideProto, broker}}, n, conns, false)
	checkLeft(b, e, liveNow, "grants at scale")
	rep.live[scn] = liveNow
}

// fillSteps splits a fill into ten slices of the target count and returns
// the issue rate within each: how issuing slows down as users pile up.
func fillSteps(start time.Time, done []time.Time, target int) []fillStep {
	size := max(1, target/10)
	var out []fillStep
	prev := start
	for from := 0; from < len(done); from += size {
		to := min(from+size, len(done))
		end := done[to-1]
		out = append(out, fillStep{from: from, to: to, rate: float64(to-from) / end.Sub(prev).Seconds()})
		prev = end
	}
	return out
}
