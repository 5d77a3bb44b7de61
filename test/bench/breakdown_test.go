package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/credbroker/credbroker/authn"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/postgres"
	"github.com/credbroker/credbroker/secret"
	"github.com/credbroker/credbroker/test/harness"
)

// The breakdown calls, in this process, the same packages the broker's
// IssueCredential, RevokeLease and RenewLease handlers call (broker/service.go),
// one step at a time, and times each step: where does an issue spend its
// time? It is a profile hint, not the product path: the HTTP layer, the
// Connect interceptors, policy and logging are left out, and show up as the
// difference to the end-to-end figures.

// Steps, in the order they are printed.
const (
	stVerify      = "issue   verify token (authn, ES256)"
	stPending     = "issue   lease store: INSERT lease PENDING"
	stCreate      = "issue   plugin Create (tx: CREATE ROLE, 2× GRANT)"
	stSCRAM       = "issue     of which SCRAM verifier (CPU, timed alone)"
	stActivate    = "issue   lease store: activate + `issued` event"
	stIssueTotal  = "issue   total in-process"
	stIssueE2E    = "issue   end-to-end through the broker (HTTP, same rounds)"
	stRevGet      = "revoke  lease store: get (ownership check)"
	stRevStore    = "revoke  lease store: claim + `revoked` event"
	stRevPlugin   = "revoke  plugin Revoke (lookup, NOLOGIN, terminate, DROP ROLE…)"
	stRevTotal    = "revoke  total in-process"
	stRevE2E      = "revoke  end-to-end through the broker (HTTP, same rounds)"
	stRenewGet    = "renew   lease store: get"
	stRenewStore  = "renew   lease store: lock row, update, `renewed` event"
	stRenewPlugin = "renew   plugin Renew (ALTER ROLE VALID UNTIL), inside the tx"
	stRenewTotal  = "renew   total in-process"
	stRenewE2E    = "renew   end-to-end through the broker (HTTP, same rounds)"
)

var breakdownOrder = []string{
	stVerify, stPending, stCreate, stSCRAM, stActivate, stIssueTotal, stIssueE2E,
	stRevGet, stRevStore, stRevPlugin, stRevTotal, stRevE2E,
	stRenewGet, stRenewStore, stRenewPlugin, stRenewTotal, stRenewE2E,
}

type stepStats struct{ p50, mean time.Duration }

type breakdownRow struct {
	step string
	by   map[int]stepStats // by concurrency
}

// stepTimes collects durations by step.
type stepTimes struct {
	mu sync.Mutex
	d  map[string][]time.Duration
}

func (s *stepTimes) add(step string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d[step] = append(s.d[step], d)
}

func (s *stepTimes) stats(step string) (stepStats, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ds := slices.Clone(s.d[step])
	if len(ds) == 0 {
		return stepStats{}, false
	}
	slices.Sort(ds)
	r := result{lat: ds}
	return stepStats{p50: r.pct(0.5), mean: r.mean()}, true
}

type pluginDurKey struct{}

// timedPlugin times Revoke into the *time.Duration its context carries.
type timedPlugin struct{ plugins.Plugin }

func (p timedPlugin) Revoke(ctx context.Context, req plugins.RevokeRequest) (plugins.RevokeResponse, error) {
	t0 := time.Now()
	resp, err := p.Plugin.Revoke(ctx, req)
	if d, ok := ctx.Value(pluginDurKey{}).(*time.Duration); ok {
		*d = time.Since(t0)
	}
	return resp, err
}

// inproc is the broker's machinery opened in this process on a scenario's
// store and backend databases.
type inproc struct {
	verifier *authn.Verifier
	store    *leases.Store
	plugin   plugins.Plugin
	role     any
	reaper   *leases.Reaper
	token    string
	limit    int
}

func newInproc(b *testing.B, e *env) *inproc {
	ctx := context.Background()
	ip := &inproc{token: e.token}
	var err error
	ip.verifier, err = authn.NewVerifier(ctx, authn.Config{Issuers: []authn.IssuerConfig{{
		Name: e.issuer.Name, Issuer: e.issuer.URL, Audiences: []string{harness.Audience},
		JWKSFile: e.issuer.JWKSPath, Algorithms: []string{"ES256"},
	}}})
	if err != nil {
		b.Fatalf("verifier: %v", err)
	}
	b.Cleanup(ip.verifier.Close)
	// The broker's own store and backend databases, as a second replica
	// would use them.
	ip.store, err = leases.Open(ctx, leases.Config{DSN: e.storeURL})
	if err != nil {
		b.Fatalf("store: %v", err)
	}
	b.Cleanup(ip.store.Close)
	b.Setenv("CB_BENCH_INPROC_DSN", e.backendURL)
	drv := postgres.New()
	ip.limit = drv.UsernameLimit()
	conn, err := drv.ParseConnection(func(v any) error {
		c := v.(*postgres.Connection)
		c.DSN, c.MaxConns = secret.EnvRef("CB_BENCH_INPROC_DSN"), conns
		return nil
	})
	if err != nil {
		b.Fatalf("connection: %v", err)
	}
	ip.plugin, err = plugins.Open(ctx, drv, conn) // as the broker opens it
	if err != nil {
		b.Fatalf("open plugin: %v", err)
	}
	b.Cleanup(func() { _ = ip.plugin.Close() })
	ip.role, _, err = drv.ParseRole(func(v any) error {
		*v.(*postgres.Role) = postgres.Role{MemberOf: []string{e.group}}
		return nil
	})
	if err != nil {
		b.Fatalf("role: %v", err)
	}
	ip.reaper, err = leases.NewReaper(leases.ReaperConfig{
		Store:  ip.store,
		Plugin: func(string, string) (plugins.Plugin, any, bool) { return timedPlugin{ip.plugin}, ip.role, true },
	})
	if err != nil {
		b.Fatalf("reaper: %v", err)
	}
	return ip
}

// ops returns the in-process issue, renew and revoke, each timing its steps
// into st. They follow broker/service.go: IssueCredential (verify, insert
// PENDING, plugin Create, Activate), RenewLease (get, Renew around the
// plugin's), RevokeLease (get, Reaper.Revoke).
func (ip *inproc) ops(st *stepTimes) sideOps {
	issue := func(ctx context.Context) (leaseRef, error) {
		t0 := time.Now()
		id, err := ip.verifier.Verify(ctx, ip.token)
		if err != nil {
			return leaseRef{}, err
		}
		t1 := time.Now()
		l, err := ip.store.CreatePending(ctx, leases.Lease{
			ID: leases.NewID(), Role: roleMember, Backend: "bench-pg", Plugin: "postgres",
			Username: plugins.NewUsername(roleMember, ip.limit),
			Subject:  id.Subject, Issuer: id.Issuer, Renewable: true,
			ExpiresAt: t1.Add(roleTTL), MaxExpiresAt: t1.Add(2 * roleTTL),
		})
		if err != nil {
			return leaseRef{}, err
		}
		t2 := time.Now()
		created, err := ip.plugin.Create(ctx, plugins.CreateRequest{
			Username: l.Username, Password: plugins.NewPassword(), ExpiresAt: l.ExpiresAt, Role: roleMember, Spec: ip.role,
		})
		if err != nil {
			return leaseRef{}, err
		}
		t3 := time.Now()
		actor := id.Issuer + ":" + id.Subject
		if _, err := ip.store.Activate(ctx, l, actor, created.State, map[string]string{"role": roleMember, "ttl": roleTTL.String()}); err != nil {
			return leaseRef{}, err
		}
		t4 := time.Now()
		st.add(stVerify, t1.Sub(t0))
		st.add(stPending, t2.Sub(t1))
		st.add(stCreate, t3.Sub(t2))
		st.add(stActivate, t4.Sub(t3))
		st.add(stIssueTotal, t4.Sub(t0))
		return leaseRef{id: l.ID, username: l.Username}, nil
	}
	renew := func(ctx context.Context, ref leaseRef) error {
		t0 := time.Now()
		l, err := ip.store.Get(ctx, ref.id)
		if err != nil {
			return err
		}
		t1 := time.Now()
		var pd time.Duration
		_, err = ip.store.Renew(ctx, l.ID, "bench", func(cur leases.Lease) (leases.Renewal, error) {
			next := time.Now().Add(roleTTL)
			p0 := time.Now()
			resp, err := ip.plugin.Renew(ctx, plugins.RenewRequest{
				Username: cur.Username, Role: cur.Role, Spec: ip.role, State: cur.StateForPlugin(), ExpiresAt: next,
			})
			pd = time.Since(p0)
			return leases.Renewal{ExpiresAt: next, PluginState: resp.State}, err
		})
		if err != nil {
			return err
		}
		t2 := time.Now()
		st.add(stRenewGet, t1.Sub(t0))
		st.add(stRenewPlugin, pd)
		st.add(stRenewStore, t2.Sub(t1)-pd)
		st.add(stRenewTotal, t2.Sub(t0))
		return nil
	}
	revoke := func(ctx context.Context, ref leaseRef) error {
		t0 := time.Now()
		l, err := ip.store.Get(ctx, ref.id)
		if err != nil {
			return err
		}
		t1 := time.Now()
		var pd time.Duration
		out, err := ip.reaper.Revoke(context.WithValue(ctx, pluginDurKey{}, &pd), l.ID, "revoked by holder", "bench")
		if err != nil {
			return err
		}
		if out.State != leases.StateRevoked {
			return fmt.Errorf("lease %s is %s after revoke: %s", l.ID, out.State, out.LastError)
		}
		t2 := time.Now()
		st.add(stRevGet, t1.Sub(t0))
		st.add(stRevPlugin, pd)
		st.add(stRevStore, t2.Sub(t1)-pd)
		st.add(stRevTotal, t2.Sub(t0))
		return nil
	}
	return sideOps{issue: issue, renew: renew, revoke: revoke}
}

// benchBreakdown measures the in-process steps against the end-to-end calls
// through the running broker of e, in alternating rounds, at c=1 and c=8.
func benchBreakdown(b *testing.B, rep *report, e *env) {
	n := *flagBreakdown
	ip := newInproc(b, e)
	all := map[string]*breakdownRow{}
	set := func(step string, conc int, s stepStats) {
		row := all[step]
		if row == nil {
			row = &breakdownRow{step: step, by: map[int]stepStats{}}
			all[step] = row
		}
		row.by[conc] = s
	}
	for _, c := range []int{1, conns} {
		st := &stepTimes{d: map[string][]time.Duration{}}
		rep.compare(b, "breakdown", "empty", []side{{"inproc", ip.ops(st)}, {"e2e", e.cli.side(roleMember)}}, n, c, true)
		r := run(n, c, func(context.Context, int) error {
			pw := plugins.NewPassword()
			t0 := time.Now()
			_ = postgres.SCRAMVerifier(pw.Reveal())
			st.add(stSCRAM, time.Since(t0))
			return nil
		})
		rep.put(b, key{"breakdown", "empty", "inproc", "scram", c}, r)
		for _, step := range breakdownOrder {
			if s, ok := st.stats(step); ok {
				set(step, c, s)
			}
		}
		for step, op := range map[string]string{stIssueE2E: "issue", stRevE2E: "revoke", stRenewE2E: "renew"} {
			if r, ok := rep.get("breakdown", "empty", "e2e", op, c); ok {
				set(step, c, stepStats{p50: r.pct(0.5), mean: r.mean()})
			}
		}
	}
	for _, step := range breakdownOrder {
		if row, ok := all[step]; ok {
			rep.breakdown = append(rep.breakdown, *row)
		}
	}
}

func (rep *report) printBreakdown(w io.Writer) {
	fmt.Fprintf(w, "\n4. Where the time goes (profile hint): the broker's packages (authn, leases, plugins/postgres) called\n")
	fmt.Fprintf(w, "   step by step in this process, as broker/service.go calls them, on the member_of scenario's store and\n")
	fmt.Fprintf(w, "   backend databases, in rounds alternating with the same calls through the running broker; %d ops each\n", *flagBreakdown)
	fmt.Fprintf(w, "   at c=1 and c=%d. share = step mean / in-process total mean; the end-to-end row's share shows what HTTP,\n", conns)
	fmt.Fprintf(w, "   Connect, the auth interceptor, policy, rate limiting and logging add on top.\n\n")
	totals := map[string]map[int]time.Duration{}
	for _, row := range rep.breakdown {
		if strings.Contains(row.step, "total in-process") {
			op := strings.Fields(row.step)[0]
			totals[op] = map[int]time.Duration{}
			for c, s := range row.by {
				totals[op][c] = s.mean
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "step\tc=1 p50\tmean\tshare\tc=%d p50\tmean\tshare\t\n", conns)
	for _, row := range rep.breakdown {
		op := strings.Fields(row.step)[0]
		fmt.Fprintf(tw, "%s", row.step)
		for _, c := range []int{1, conns} {
			s, ok := row.by[c]
			if !ok {
				fmt.Fprintf(tw, "\t-\t-\t-")
				continue
			}
			share := "-"
			if t := totals[op][c]; t > 0 {
				share = fmt.Sprintf("%.0f%%", 100*float64(s.mean)/float64(t))
			}
			fmt.Fprintf(tw, "\t%s\t%s\t%s", ms(s.p50), ms(s.mean), share)
		}
		fmt.Fprintf(tw, "\t\n")
	}
	tw.Flush()
}
