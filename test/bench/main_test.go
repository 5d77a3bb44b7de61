package bench

import (
	"flag"
	"testing"
	"time"

	"github.com/credbroker/credbroker/test/harness"
)

// Knobs. The defaults keep `make bench` at about a quarter of an hour on a
// 2-core machine; explicit grants at scale are the slow part (their cost
// grows with every live user, see README "member_of or explicit grants?"),
// then the memory section's 100 000 events.
var (
	flagOps         = flag.Int("cb.ops", 400, "operations per measurement (member_of)")
	flagLive        = flag.Int("cb.live", 10000, "live leases issued before the scale measurements")
	flagGrantsOps   = flag.Int("cb.grants-ops", 100, "operations per explicit-grants measurement")
	flagGrantsFill  = flag.Duration("cb.grants-fill-budget", 6*time.Minute, "longest time spent issuing the live explicit-grants leases; the scale figures are then taken at however many were issued")
	flagBreakdown   = flag.Int("cb.breakdown-ops", 200, "issues per in-process breakdown measurement")
	flagClientIdle  = flag.Int("cb.client-idle-conns", conns, "idle HTTP connections per host the client keeps (Go's default is 2, which makes 6 of 8 workers reconnect on every call)")
	flagSkipGrants  = flag.Bool("cb.skip-grants", false, "skip the explicit-grants scenario")
	flagSkipMember  = flag.Bool("cb.skip-member-of", false, "skip the member_of scenario")
	flagSkipProfile = flag.Bool("cb.skip-breakdown", false, "skip the in-process breakdown")
	flagSkipStmts   = flag.Bool("cb.skip-pg-stat-statements", false, "do not read pg_stat_statements around the member_of c=8 measurement")
)

func TestMain(m *testing.M) { harness.Main(m) }
