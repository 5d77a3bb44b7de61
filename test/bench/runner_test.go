package bench

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// opTimeout bounds one operation (an explicit-grants issue with thousands of
// live users takes a good part of a second).
const opTimeout = 2 * time.Minute

// result is one measurement: n operations at some concurrency.
type result struct {
	ops      int // operations attempted
	conc     int
	errs     int
	firstErr error
	wall     time.Duration
	lat      []time.Duration // sorted, successful operations only
	load     string          // 1-minute load average when it started
}

// run performs n operations with conc workers; op(ctx, i) does operation i
// (each i in [0, n) exactly once).
func run(n, conc int, op func(ctx context.Context, i int) error) result {
	return runWith(n, conc, runOpts{}, op)
}

type runOpts struct {
	// budget, if > 0, is when no new operation is started any more.
	budget time.Duration
	// stopOnError starts no new operation once one has failed.
	stopOnError bool
}

// runWith is run with options; result.ops is less than n when it stopped
// early.
func runWith(n, conc int, o runOpts, op func(ctx context.Context, i int) error) result {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		lat      = make([]time.Duration, 0, n)
		errs     int
		firstErr error
		wg       sync.WaitGroup
		attempts atomic.Int64
		failed   atomic.Bool
	)
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || (o.budget > 0 && time.Since(start) > o.budget) || (o.stopOnError && failed.Load()) {
					return
				}
				attempts.Add(1)
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				t0 := time.Now()
				err := op(ctx, i)
				d := time.Since(t0)
				cancel()
				mu.Lock()
				if err != nil {
					failed.Store(true)
					errs++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	slices.Sort(lat)
	return result{ops: int(attempts.Load()), conc: conc, errs: errs, firstErr: firstErr, wall: wall, lat: lat}
}

// throughput is successful operations per second of wall time.
func (r result) throughput() float64 {
	if r.wall <= 0 {
		return 0
	}
	return float64(len(r.lat)) / r.wall.Seconds()
}

// pct returns the p-th percentile (0 < p ≤ 1) latency, nearest rank.
func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(r.lat)))) - 1
	return r.lat[max(0, min(i, len(r.lat)-1))]
}

func (r result) mean() time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range r.lat {
		sum += d
	}
	return sum / time.Duration(len(r.lat))
}

// errSkipped marks an operation that had nothing to work on (its issue
// failed).
var errSkipped = errors.New("skipped: the issue it depends on failed")

// merge adds the operations of b to a (measurements taken in rounds).
func merge(a, b result) result {
	if a.firstErr == nil {
		a.firstErr = b.firstErr
	}
	a.ops += b.ops
	a.conc = max(a.conc, b.conc)
	a.errs += b.errs
	a.wall += b.wall
	a.lat = append(a.lat, b.lat...)
	slices.Sort(a.lat)
	return a
}
