package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/test/harness"
)

// The out-of-process scenario: one in-tree backend, Redis, run both ways
// against the same server with the same role: in the broker's process
// (plugin: redis) and as the program test/plugins/redis, which is
// sdk.Serve(redis.New()) (plugin: external, pinned by its sha256). Two
// brokers, each on a fresh lease store, measured in the same alternating
// rounds; the difference of their medians is what the plugin protocol (a
// gRPC call over the unix socket, both ways, per plugin call) adds.

// externalScn is the scenario's key in the report.
const externalScn = "redis-external"

// externalTarget is the most the transport may add to an issue's or a
// revoke's median (docs/plugins.md).
const externalTarget = 500 * time.Microsecond

var (
	flagExternalOps  = flag.Int("cb.external-ops", 1000, "operations per measurement of the out-of-process comparison (Redis in process vs as a program)")
	flagSkipExternal = flag.Bool("cb.skip-external", false, "skip the out-of-process comparison")
)

func benchExternal(b *testing.B, rep *report) {
	defer func() {
		if b.Skipped() || b.Failed() {
			rep.extNote = "did not run to the end (see the log above)"
		}
	}()
	u, opt, err := redisURL()
	if err != nil {
		b.Fatalf("redis: parse %s: %v", plugintest.RedisURLEnv, plugins.Sanitize(err))
	}
	if opt.TLSConfig != nil || opt.Username != "" || opt.Password != "" {
		rep.extNote = "skipped: " + plugintest.RedisURLEnv + " names a user, a password or TLS"
		b.Skip(rep.extNote)
	}
	goredis.SetLogger(&logging.VoidLogger{})
	needService(b, rep, externalScn, u, func(ctx context.Context) error {
		c := goredis.NewClient(redisOptions(opt))
		defer c.Close()
		return c.Ping(ctx).Err()
	})
	admin := goredis.NewClient(redisOptions(opt))
	b.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
		defer cancel()
		left, err := redisUsers(ctx, admin)
		if err != nil {
			b.Errorf("%s cleanup: %v", externalScn, plugins.Sanitize(err))
			return
		}
		for _, name := range left {
			_ = admin.ACLDelUser(ctx, name).Err()
		}
	})
	prog, sum := harness.Program(b, "github.com/credbroker/credbroker/test/plugins/redis")

	pat := "cbbench:" + runID + ":ext"
	section := fmt.Sprintf("rules: [%q, %q, %q, %q]", "~"+pat+":*", "+@read", "+@write", "-@dangerous")
	conn := fmt.Sprintf("addr: %q", opt.Addr)
	inproc := startSvcBroker(b, svcBroker{plugin: "redis", backend: "bench-redis-inproc", role: svcRole("ri"), connection: conn, section: section})
	external := startSvcBroker(b, svcBroker{
		plugin: "redis", backend: "bench-redis-program", role: svcRole("rx"), connection: conn, section: section,
		external: fmt.Sprintf("command: [%q]\nsha256: %s", prog, sum),
	})
	rep.extInfo = fmt.Sprintf("Redis at %s; in process (plugin: redis) vs the program test/plugins/redis (plugin: external, sdk.Serve(redis.New()))", opt.Addr)

	count := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
		defer cancel()
		users, err := redisUsers(ctx, admin)
		if err != nil {
			b.Fatalf("%s: ACL USERS: %v", externalScn, plugins.Sanitize(err))
		}
		return len(users)
	}
	sides := []side{{"inproc", inproc.proto.side(inproc.role)}, {"external", external.proto.side(external.role)}}
	rep.compare(b, externalScn, "warmup", sides, svcWarmup, conns, false)
	for _, c := range []int{1, conns} {
		rep.compare(b, externalScn, "svc", sides, *flagExternalOps, c, false)
		if got := count(); got != 0 {
			b.Errorf("%s c=%d: %d users of this run exist, want 0", externalScn, c, got)
		}
	}
	rep.extOps = *flagExternalOps
}

// printExternal prints section 7: what running a backend as a separate
// program adds per call.
func (rep *report) printExternal(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("\n7. Out of process: one in-tree backend run both ways (target: at most %s added to the p50 of a call)\n\n", ms(externalTarget))
	switch {
	case *flagSkipExternal:
		p("   not run (-cb.skip-external)\n")
		return
	case rep.extInfo == "":
		p("   %s\n", cmpOr(rep.extNote, "did not get as far as measuring (see the errors below)"))
		return
	}
	p("   %s\n", rep.extInfo)
	p("   Two brokers (fresh lease stores, sweep: false, the same rules), in the same %d alternating rounds; %d ops per measurement.\n\n", rounds, rep.extOps)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "op\tconc\tin-process ops/s\tp50\tp99\tprogram ops/s\tp50\tp99\tprogram/in-process\tp50 added\tverdict\tload\t")
	for _, row := range []struct {
		op   string
		conc int
	}{{"issue", 1}, {"revoke", 1}, {"issue", conns}, {"revoke", conns}} {
		in, iok := rep.get(externalScn, "svc", "inproc", row.op, row.conc)
		ex, eok := rep.get(externalScn, "svc", "external", row.op, row.conc)
		if !iok && !eok {
			continue
		}
		_, shown := ratio(ex, in, eok, iok)
		added, verdictText := "-", "-"
		if iok && eok {
			d := ex.pct(.5) - in.pct(.5)
			added = fmt.Sprintf("%+.2fms", float64(d)/float64(time.Millisecond))
			verdictText = "ok"
			if d > externalTarget {
				verdictText = "ABOVE TARGET"
			}
			if row.conc != 1 {
				verdictText += " (c>1: queueing)"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", row.op, row.conc,
			opsps(in, iok), ms(in.pct(.5)), ms(in.pct(.99)), opsps(ex, eok), ms(ex.pct(.5)), ms(ex.pct(.99)), shown, added, verdictText, ex.load)
	}
	tw.Flush()
	p("(p50 added: the program's median minus the in-process median, i.e. what the plugin protocol costs per call:\n")
	p(" an issue makes one Create call to the program, a revoke one Revoke call. The target applies at c=1; at c=%d both\n", conns)
	p(" brokers, Redis, the program and this process share %d CPUs, so the difference there includes queueing.)\n", runtime.NumCPU())
}

func cmpOr(a, b string) string {
	if strings.TrimSpace(a) != "" {
		return a
	}
	return b
}
