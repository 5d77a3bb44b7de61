package leases

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/credbroker/credbroker/plugins"
)

// EventDenied is the kind of the event that records refused requests: one
// per identity, role and minute, with details role, count, first_at and
// last_at. Refusals past the in-memory bound are one event per minute with
// actor "broker" and details overflow "true", count, first_at, last_at.
const EventDenied = "denied"

// overflowActor is the actor of the event that counts the denials not
// itemized because too many identities were being refused at once.
const overflowActor = "broker"

// flushTimeout bounds one flush of the counted denials.
const flushTimeout = 10 * time.Second

// denialKey is what one `denied` event aggregates.
type denialKey struct {
	actor, role string
	minute      time.Time
}

type denialCount struct {
	count       int64
	first, last time.Time
}

func (c *denialCount) add(o denialCount) {
	if c.count == 0 || o.first.Before(c.first) {
		c.first = o.first
	}
	if o.last.After(c.last) {
		c.last = o.last
	}
	c.count += o.count
}

// denials counts refused requests in memory, at most max keys; refusals of
// keys beyond that are counted per minute in overflow.
type denials struct {
	max int

	mu       sync.Mutex
	keys     map[denialKey]*denialCount
	overflow map[time.Time]*denialCount // by minute

	stop, done chan struct{}
}

func newDenials(max int) *denials {
	if max <= 0 {
		max = 10000
	}
	return &denials{max: max, keys: map[denialKey]*denialCount{}, overflow: map[time.Time]*denialCount{}}
}

// note counts c under k, or under k's minute of overflow when the map is
// full. Callers hold d.mu.
func (d *denials) note(k denialKey, c denialCount) {
	if cur, ok := d.keys[k]; ok {
		cur.add(c)
		return
	}
	if len(d.keys) < d.max {
		d.keys[k] = &c
		return
	}
	d.noteOverflow(k.minute, c)
}

// noteOverflow counts c in minute's overflow. Callers hold d.mu.
func (d *denials) noteOverflow(minute time.Time, c denialCount) {
	o, ok := d.overflow[minute]
	if !ok {
		o = &denialCount{}
		d.overflow[minute] = o
	}
	o.add(c)
}

// CountDenial notes that a request of actor for role was refused. Nothing is
// written now: refusals are aggregated per (actor, role, minute) and each
// aggregate is appended as one `denied` event once its minute has ended (by
// a background loop, every DenialFlushInterval), on [Store.FlushDenials] and
// on Close. Memory is bounded by DenialKeys; refusals past it are counted in
// one overflow event per minute. actor and role should be length-capped by
// the caller.
func (s *Store) CountDenial(actor, role string) {
	now := s.now()
	d := s.denials
	d.mu.Lock()
	defer d.mu.Unlock()
	d.note(denialKey{actor: actor, role: role, minute: now.Truncate(time.Minute)}, denialCount{count: 1, first: now, last: now})
}

// FlushDenials appends every counted denial now, including the current
// minute's (an export calls it so that it sees every refusal).
func (s *Store) FlushDenials(ctx context.Context) (err error) {
	defer markUnavailable(&err)
	return s.flushDenials(ctx, true)
}

// flushDenials appends the counted denials whose minute has ended, or all of
// them. Those that cannot be written are counted again for the next flush.
func (s *Store) flushDenials(ctx context.Context, all bool) error {
	d := s.denials
	current := s.now().Truncate(time.Minute)
	d.mu.Lock()
	keys := map[denialKey]denialCount{}
	for k, c := range d.keys {
		if all || k.minute.Before(current) {
			keys[k] = *c
			delete(d.keys, k)
		}
	}
	over := map[time.Time]denialCount{}
	for m, c := range d.overflow {
		if all || m.Before(current) {
			over[m] = *c
			delete(d.overflow, m)
		}
	}
	d.mu.Unlock()
	if len(keys) == 0 && len(over) == 0 {
		return nil
	}

	var errs []error
	record := func(actor string, c denialCount, details map[string]string) bool {
		details["count"] = strconv.FormatInt(c.count, 10)
		details["first_at"] = c.first.Format(time.RFC3339Nano)
		details["last_at"] = c.last.Format(time.RFC3339Nano)
		if len(errs) == 0 { // after one failure the store is likely down: keep the rest
			err := s.RecordEvent(ctx, Event{Kind: EventDenied, Actor: actor, At: c.last, Details: details})
			if err == nil {
				return true
			}
			errs = append(errs, err)
		}
		return false
	}
	var unwritten []denialKey
	// In a stable order, so that a failure keeps the same denials each time.
	ordered := slices.SortedFunc(maps.Keys(keys), func(a, b denialKey) int {
		if c := a.minute.Compare(b.minute); c != 0 {
			return c
		}
		if a.actor != b.actor {
			if a.actor < b.actor {
				return -1
			}
			return 1
		}
		if a.role < b.role {
			return -1
		}
		if a.role > b.role {
			return 1
		}
		return 0
	})
	for _, k := range ordered {
		c := keys[k]
		if record(k.actor, c, map[string]string{"role": k.role}) {
			s.logger.Warn("requests denied", slog.String("actor", k.actor), slog.String("role", k.role),
				slog.Int64("count", c.count), slog.Time("first_at", c.first), slog.Time("last_at", c.last))
		} else {
			unwritten = append(unwritten, k)
		}
	}
	var overUnwritten []time.Time
	for _, m := range slices.SortedFunc(maps.Keys(over), time.Time.Compare) {
		c := over[m]
		if record(overflowActor, c, map[string]string{"overflow": "true"}) {
			s.logger.Warn("requests denied to more identities than are itemized", slog.Int64("count", c.count),
				slog.Time("first_at", c.first), slog.Time("last_at", c.last))
		} else {
			overUnwritten = append(overUnwritten, m)
		}
	}
	if len(unwritten) == 0 && len(overUnwritten) == 0 {
		return nil
	}
	d.mu.Lock()
	for _, k := range unwritten {
		d.note(k, keys[k])
	}
	for _, m := range overUnwritten {
		d.noteOverflow(m, over[m])
	}
	d.mu.Unlock()
	return errors.Join(errs...)
}

// startDenialFlusher runs the loop that writes counted denials every
// interval, until stopDenialFlusher.
func (s *Store) startDenialFlusher(interval time.Duration) {
	d := s.denials
	d.stop, d.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(d.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-d.stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
				if err := s.flushDenials(ctx, false); err != nil {
					s.logger.Warn("cannot record denied requests; they are kept for the next try", slog.String("error", plugins.SanitizeString(err.Error())))
				}
				cancel()
			}
		}
	}()
}

// stopDenialFlusher stops the loop and writes every denial still counted.
func (s *Store) stopDenialFlusher() {
	d := s.denials
	if d == nil || d.stop == nil {
		return
	}
	close(d.stop)
	<-d.done
	d.stop = nil
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if err := s.flushDenials(ctx, true); err != nil {
		s.logger.Error("cannot record denied requests before closing; they are lost", slog.String("error", plugins.SanitizeString(err.Error())))
	}
}
