package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// waitSampler samples pg_stat_activity while a measurement runs: what the
// active sessions of the store and backend databases are waiting on (Lock
// advisory: the lease_events chain or the grant lock; IO WALSync: commits;
// none: on CPU). A PostgreSQL-side profile of the broker's work.
type waitSampler struct {
	label   string
	dbs     map[string]string // database name → "store" / "backend"
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	counts  map[string]int // "store Lock:advisory" → samples
	samples int
	active  map[string]int // "store" → active-session samples
}

const sampleEvery = 10 * time.Millisecond

func startSampler(tb testing.TB, label, adminURL string, dbs map[string]string) *waitSampler {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		cancel()
		tb.Fatalf("sampler: %v", err)
	}
	s := &waitSampler{label: label, dbs: dbs, cancel: cancel, done: make(chan struct{}),
		counts: map[string]int{}, active: map[string]int{}}
	names := slices.Collect(maps.Keys(dbs))
	go func() {
		defer close(s.done)
		defer conn.Close(context.Background())
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			rows, err := conn.Query(ctx, `
				SELECT datname, coalesce(wait_event_type, 'CPU'), coalesce(wait_event, 'running')
				FROM pg_stat_activity
				WHERE state = 'active' AND datname = ANY($1) AND pid <> pg_backend_pid()`, names)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.samples++
			for rows.Next() {
				var db, typ, ev string
				if rows.Scan(&db, &typ, &ev) == nil {
					s.counts[dbs[db]+"\t"+typ+":"+ev]++
					s.active[dbs[db]]++
				}
			}
			s.mu.Unlock()
			rows.Close()
		}
	}()
	return s
}

func (s *waitSampler) stop() {
	s.cancel()
	<-s.done
}

// print writes, per database, the share of active-session samples by wait
// event, largest first, and the mean number of active sessions.
func (s *waitSampler) print(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.samples == 0 {
		return
	}
	fmt.Fprintf(w, "\nduring %s: %d samples of pg_stat_activity, every %s (CPU:running = on CPU, not waiting)\n\n",
		s.label, s.samples, sampleEvery)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "database\tavg active sessions\twait event\tshare of active\t")
	for _, db := range []string{"store", "backend"} {
		type kv struct {
			k string
			v int
		}
		var list []kv
		for k, v := range s.counts {
			if strings.HasPrefix(k, db+"\t") {
				list = append(list, kv{strings.TrimPrefix(k, db+"\t"), v})
			}
		}
		slices.SortFunc(list, func(a, b kv) int { return cmp.Or(b.v-a.v, strings.Compare(a.k, b.k)) })
		first := true
		for i, e := range list {
			if i == 6 {
				break
			}
			name, avg := "", ""
			if first {
				name, avg = db, fmt.Sprintf("%.1f", float64(s.active[db])/float64(s.samples))
				first = false
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f%%\t\n", name, avg, e.k, 100*float64(e.v)/float64(s.active[db]))
		}
	}
	tw.Flush()
}
