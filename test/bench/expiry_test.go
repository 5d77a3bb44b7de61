package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The expiry section: how long after its expiry the reaper revokes a lease,
// when many expire at once. One broker on the default reaper settings
// (reaper.interval 5s as the safety net; the reaper sleeps until the next
// lease is due and a lease it writes that is due sooner wakes it), a fresh
// lease store, Redis leases (issued at about a thousand a second, where
// PostgreSQL roles take several times as long, and the reaper's own work,
// not the backend's, is what is measured here). The leases are issued with
// TTLs that put every expiry into one second a few seconds ahead; then the
// bench waits until the store shows them all REVOKED and reads
// revoked_at − expires_at of each from the store.

var (
	flagExpiryLeases = flag.Int("cb.expiry-leases", 1000, "leases of the expiry-lag section, all expiring within one second")
	flagExpiryLead   = flag.Duration("cb.expiry-lead", 0, "how far ahead the expiry second of the expiry-lag and drain sections lies when issuing starts; 0: 3s + 2.5ms per lease")
	flagSkipExpiry   = flag.Bool("cb.skip-expiry", false, "skip the expiry-lag section")
)

// Targets of issue 9 for expiry.
const (
	goalExpiryP50 = 500 * time.Millisecond
	goalExpiryMax = 2 * time.Second
)

// minIssueTTL is the shortest TTL the sections ask for: the broker refuses
// less than a second.
const minIssueTTL = 1100 * time.Millisecond

// errLeadTooShort fails an issue that would expire too soon: issuing took
// longer than the lead.
var errLeadTooShort = errors.New("issuing took longer than the lead: raise -cb.expiry-lead")

// expiryWindow returns the start of the whole second in which n leases,
// issued from now on, are to expire.
func expiryWindow(n int) time.Time {
	lead := *flagExpiryLead
	if lead <= 0 {
		lead = 3*time.Second + time.Duration(n)*2500*time.Microsecond
	}
	return time.Now().Add(lead).Truncate(time.Second).Add(time.Second)
}

// expireAt spreads lease i of n over the 900 ms after second.
func expireAt(second time.Time, i, n int) time.Time {
	return second.Add(time.Duration(i) * 900 * time.Millisecond / time.Duration(max(n, 1)))
}

// issueExpiring issues n leases of role through clients in turn, at
// concurrency conns, lease i with a TTL that ends it at at(i). It stops at
// the first failure. It returns the ids of the leases issued, and fails b
// when their usernames do not start with userPrefix+short+"_", the prefix
// the section counts left-over users by.
func issueExpiring(b *testing.B, clients []brokerClient, role, short string, n int, at func(i int) time.Time) ([]string, result) {
	b.Helper()
	refs := make([]leaseRef, n)
	r := runWith(n, conns, runOpts{stopOnError: true}, func(ctx context.Context, i int) error {
		ttl := time.Until(at(i))
		if ttl < minIssueTTL {
			return errLeadTooShort
		}
		var err error
		refs[i], err = clients[i%len(clients)].issue(ctx, role, ttl)
		return err
	})
	var ids []string
	for _, l := range refs {
		if l.id == "" {
			continue
		}
		ids = append(ids, l.id)
		checkUsername(b, l.username, short)
	}
	return ids, r
}

// checkUsername fails b when username does not start with the prefix of
// the users of the role svcRole(short), which is what the sections count.
func checkUsername(b *testing.B, username, short string) {
	b.Helper()
	if !strings.HasPrefix(username, userPrefix+short+"_") {
		b.Fatalf("username %q does not start with %q: the count of left-over users would miss it", username, userPrefix+short+"_")
	}
}

// expiryStats is what the store says of a set of leases that expired.
type expiryStats struct {
	leases      int
	lags        []time.Duration // revoked_at − expires_at, sorted
	firstExpiry time.Time
	lastExpiry  time.Time
	lastRevoked time.Time
	// By lease, how many `revoked` events the store holds: none, and more
	// than one (each must be exactly one).
	noEvent, manyEvents int
	// revokeFailed counts `revoke_failed` events: attempts that were retried.
	revokeFailed int
}

func (s expiryStats) lag(p float64) time.Duration { return result{lat: s.lags}.pct(p) }

// drainTime is from the first expiry to the last revoke.
func (s expiryStats) drainTime() time.Duration { return s.lastRevoked.Sub(s.firstExpiry) }

// awaitRevoked polls the store until every lease of ids is REVOKED, or
// until deadline, and then reads what the store holds of them.
func awaitRevoked(tb testing.TB, storeURL string, ids []string, deadline time.Time) (expiryStats, error) {
	tb.Helper()
	var left int
	for {
		withConn(tb, storeURL, func(ctx context.Context, c *pgx.Conn) error {
			return c.QueryRow(ctx, `SELECT count(*) FROM leases WHERE id = ANY($1) AND state <> 'REVOKED'`, ids).Scan(&left)
		})
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return expiryStats{}, fmt.Errorf("%d of %d leases are not REVOKED by %s", left, len(ids), deadline.Format(time.TimeOnly))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return readExpiry(tb, storeURL, ids), nil
}

// readExpiry reads the expiry, the revoke and the events of each lease of
// ids from the store. (`revoked` is the event finishRevoked in leases/claim.go
// records once a revoke is done.)
func readExpiry(tb testing.TB, storeURL string, ids []string) expiryStats {
	tb.Helper()
	s := expiryStats{leases: len(ids)}
	withConn(tb, storeURL, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT expires_at, revoked_at FROM leases WHERE id = ANY($1) AND revoked_at IS NOT NULL`, ids)
		if err != nil {
			return err
		}
		var exp, rev time.Time
		if _, err := pgx.ForEachRow(rows, []any{&exp, &rev}, func() error {
			s.lags = append(s.lags, rev.Sub(exp))
			if s.firstExpiry.IsZero() || exp.Before(s.firstExpiry) {
				s.firstExpiry = exp
			}
			if exp.After(s.lastExpiry) {
				s.lastExpiry = exp
			}
			if rev.After(s.lastRevoked) {
				s.lastRevoked = rev
			}
			return nil
		}); err != nil {
			return err
		}
		slices.Sort(s.lags)
		return c.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE revoked = 0), count(*) FILTER (WHERE revoked > 1), coalesce(sum(failed), 0)
			FROM (
				SELECT count(e.seq) FILTER (WHERE e.kind = 'revoked') AS revoked,
				       count(e.seq) FILTER (WHERE e.kind = 'revoke_failed') AS failed
				FROM unnest($1::text[]) AS l(id)
				LEFT JOIN lease_events e ON e.lease_id = l.id
				GROUP BY l.id
			) per_lease`, ids).Scan(&s.noEvent, &s.manyEvents, &s.revokeFailed)
	})
	return s
}

// dur shows a duration in milliseconds below a second, else in seconds.
func dur(d time.Duration) string {
	if d < time.Second && d > -time.Second {
		return ms(d)
	}
	return secs(d)
}

// expiryResult is the expiry section's figures for the report.
type expiryResult struct {
	info  string
	issue result
	stats expiryStats
	load  string
	note  string // why there are no figures
}

func benchExpiry(b *testing.B, rep *report) {
	const scn = "expiry"
	res := &expiryResult{}
	rep.expiry = res
	defer func() { res.note = rep.sectionNote(b, scn) }()
	rs := openRedis(b, rep, scn)
	role := svcRole("ex")
	h := startSvcBroker(b, rs.broker(role, redisRules("ex")))
	n := *flagExpiryLeases
	res.load = load1()

	second := expiryWindow(n)
	ids, r := issueExpiring(b, []brokerClient{h.proto}, role, "ex", n, func(i int) time.Time { return expireAt(second, i, n) })
	res.issue = r
	if r.errs > 0 {
		rep.fatal(b, "expiry: %d of %d issues failed; first: %v", r.errs, n, r.firstErr)
	}
	b.Logf("expiry: %d Redis leases issued in %s, to expire from %s on", len(ids), r.wall.Round(time.Millisecond), second.Format("15:04:05.000"))
	st, err := awaitRevoked(b, h.storeURL, ids, second.Add(time.Minute))
	if err != nil {
		rep.fatal(b, "expiry: %v", err)
	}
	res.stats = st
	res.info = fmt.Sprintf("%d Redis leases issued through one broker (default reaper settings) at c=%d in %s, expiring between %s and %s",
		n, conns, r.wall.Round(time.Millisecond), st.firstExpiry.Format("15:04:05.000"), st.lastExpiry.Format("15:04:05.000"))
	b.Logf("expiry: lag p50 %s, p99 %s, max %s", dur(st.lag(.5)), dur(st.lag(.99)), dur(st.lag(1)))
	if st.noEvent > 0 || st.manyEvents > 0 {
		rep.fail(b, "expiry: %d leases have no `revoked` event and %d more than one", st.noEvent, st.manyEvents)
	}
	if left := rs.count(b, userPrefix+"ex_"); left != 0 {
		rep.fail(b, "expiry: %d of the section's Redis users are left after every lease was revoked", left)
	}
}

// printExpiry prints section 8.
func (rep *report) printExpiry(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("\n8. Expiry lag: how long after expires_at the reaper revokes a lease, when %d expire within one second\n\n", *flagExpiryLeases)
	res := rep.expiry
	switch {
	case *flagSkipExpiry:
		p("   not run (-cb.skip-expiry)\n")
		return
	case res == nil:
		p("   did not run\n")
		return
	}
	if res.note != "" {
		p("   %s\n", res.note)
	}
	if len(res.stats.lags) == 0 {
		return
	}
	st := res.stats
	p("   %s (load %s).\n", res.info, res.load)
	p("   From the lease store: revoked_at − expires_at of each lease.\n\n")
	p("   lag p50 %s, p99 %s, max %s (goals: p50 ≤ %s, max ≤ %s); last revoke %s after the first expiry;\n",
		dur(st.lag(.5)), dur(st.lag(.99)), dur(st.lag(1)), dur(goalExpiryP50), dur(goalExpiryMax), dur(st.drainTime()))
	p("   `revoked` events: %d leases without one, %d with more than one; %d revokes failed and were retried.\n",
		st.noEvent, st.manyEvents, st.revokeFailed)
}
