package leases

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/plugins"
)

// Sealing keeps the hash chain off the request path. An event is written to
// lease_event_queue in the transaction that changes its lease: one INSERT,
// no lock, no read of the chain, often inside the very statement that
// updates the lease (see updateRecording). The sealer then moves queued
// events into lease_events in batches, in queue order, in one transaction
// per batch: it takes the sealer's advisory lock (one replica seals at a
// time) and the lock of every chain the batch extends (so a replica of an
// earlier release, which appends to lease_events directly under those
// locks, interleaves correctly), reads each chain's head, gives every event
// its seq, prev_hash and hash exactly as a direct append would, inserts
// them and deletes them from the queue.
//
// A crash between the lease's commit and sealing leaves the event queued,
// and any replica's sealer seals it later; a crash during sealing rolls the
// batch back, leaving it queued. Every reader of the history ([Store.Events],
// [Store.VerifyChain], [Store.Checkpoint]) seals what is queued first, so
// it sees every event committed before it started.
//
// Queue order is the order of the queue's id, taken when the event was
// inserted, not when it committed: two events committed in the other order
// by concurrent transactions can be sealed in either order. Events of one
// lease never are: a lease's next event is written only after its previous
// one committed (the lease row's state changes with it), so it has a larger
// id and is never visible to the sealer without it.

// sealBatch is the most events one sealing transaction moves.
const sealBatch = 1000

// sealLockKey is the second key of the advisory lock (under eventsLockSpace)
// that one sealer, or one checkpoint, holds at a time across replicas; the
// chains are 0–15.
const sealLockKey int32 = -2

// sealInterval is how often the sealer looks at the queue when nothing
// pokes it: events queued by a replica that died before sealing them.
const sealInterval = time.Second

// sealDelay is how long the sealer lets events gather after the first is
// queued, so one sealing transaction (six statements) seals many: at a few
// hundred events a second, sealing each alone cost more store time than
// writing it. Nothing waits for it: readers of the history seal first.
const sealDelay = 20 * time.Millisecond

// sealTimeout bounds one sealing pass (and so how long Close waits for an
// unreachable store).
const sealTimeout = 10 * time.Second

// sealer runs the background sealing loop of a Store; the copy on the
// reaper's pool shares it.
type sealer struct {
	poke       chan struct{}
	stop, done chan struct{}
}

// queued tells the sealer that an event was committed to the queue. Safe on
// a nil sealer.
func (q *sealer) queued() {
	if q == nil {
		return
	}
	select {
	case q.poke <- struct{}{}:
	default: // a pass is already pending, and will see this event
	}
}

// startSealer runs the loop that seals queued events whenever one is
// committed here, and every sealInterval, until stopSealer.
func (s *Store) startSealer() {
	q := &sealer{poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.sealer = q
	go func() {
		defer close(q.done)
		t := time.NewTicker(sealInterval)
		defer t.Stop()
		gather := time.NewTimer(0)
		<-gather.C
		for {
			select {
			case <-q.stop:
				return
			case <-q.poke:
				gather.Reset(sealDelay)
				select {
				case <-q.stop:
					return // stopSealer seals what is left
				case <-gather.C:
				}
			case <-t.C:
			}
			s.sealQueued(false)
		}
	}()
}

// stopSealer stops the loop and seals what this process queued last.
func (s *Store) stopSealer() {
	q := s.sealer
	if q == nil || q.stop == nil {
		return
	}
	close(q.stop)
	<-q.done
	q.stop = nil
	s.sealQueued(true)
}

// sealQueued seals everything queued, logging a failure: the events stay
// queued for the next pass. Unless wait, it leaves the queue to a replica
// that is sealing right now.
func (s *Store) sealQueued(wait bool) {
	ctx, cancel := context.WithTimeout(context.Background(), sealTimeout)
	defer cancel()
	if err := s.seal(ctx, wait); err != nil {
		s.logger.Warn("cannot seal queued events into the history; they stay queued for the next try",
			slog.String("error", plugins.SanitizeString(err.Error())))
	}
}

// Seal moves every event queued so far into the hash-chained history, waiting
// for a replica that is sealing right now. Readers of the history call it
// first; the background sealer keeps the queue short otherwise.
func (s *Store) Seal(ctx context.Context) (err error) {
	defer markUnavailable(&err)
	return s.seal(ctx, true)
}

func (s *Store) seal(ctx context.Context, wait bool) error {
	for {
		// A batch a transaction: a long queue is sealed in steps, each
		// holding the chains' locks briefly.
		var n int
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			locked, err := lockSealer(ctx, tx, wait)
			if err != nil || !locked {
				return err
			}
			n, err = sealTx(ctx, tx, sealBatch)
			return err
		})
		if err != nil {
			return fmt.Errorf("seal queued events: %w", err)
		}
		if n < sealBatch {
			return nil
		}
	}
}

// lockSealer takes the sealer's lock until tx ends: waiting for it if wait,
// else reporting false when another transaction holds it.
func lockSealer(ctx context.Context, tx pgx.Tx, wait bool) (bool, error) {
	if wait {
		_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, eventsLockSpace, sealLockKey)
		return err == nil, err
	}
	var locked bool
	err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1, $2)`, eventsLockSpace, sealLockKey).Scan(&locked)
	return locked, err
}

// sealTx moves up to limit queued events, oldest first, into lease_events
// inside tx, which holds the sealer's lock, and returns how many it moved.
func sealTx(ctx context.Context, tx pgx.Tx, limit int) (int, error) {
	rows, err := tx.Query(ctx, `
		DELETE FROM lease_event_queue
		WHERE id IN (SELECT id FROM lease_event_queue ORDER BY id LIMIT $1)
		RETURNING id, COALESCE(lease_id, ''), kind, actor, at, details`, limit)
	if err != nil {
		return 0, fmt.Errorf("take queued events: %w", err)
	}
	type queued struct {
		id int64
		e  Event
	}
	batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (queued, error) {
		var q queued
		err := r.Scan(&q.id, &q.e.LeaseID, &q.e.Kind, &q.e.Actor, &q.e.At, &q.e.Details)
		q.e.At = q.e.At.UTC()
		return q, err
	})
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	slices.SortFunc(batch, func(a, b queued) int { return cmp.Compare(a.id, b.id) })

	events := make([]Event, len(batch))
	for i, q := range batch {
		events[i] = q.e
	}
	if err := sealEvents(ctx, tx, events); err != nil {
		return 0, err
	}
	return len(batch), nil
}

// sealEvents appends events, normalized and in order, to lease_events
// inside tx, which holds the sealer's lock: it takes the lock of each chain
// they extend, reads the chains' heads and gives each event its seq, chain,
// prev_hash and hash.
func sealEvents(ctx context.Context, tx pgx.Tx, events []Event) error {
	var chains []int32
	for i := range events {
		events[i].Chain = chainOf(events[i])
		if !slices.Contains(chains, int32(events[i].Chain)) {
			chains = append(chains, int32(events[i].Chain))
		}
	}
	slices.Sort(chains) // one lock order everywhere: no deadlock
	heads, err := lockChains(ctx, tx, chains)
	if err != nil {
		return err
	}
	seqs, err := nextSeqs(ctx, tx, len(events))
	if err != nil {
		return err
	}
	sealed := make([][]any, len(events))
	for i, e := range events {
		e.Seq = seqs[i]
		e.PrevHash = heads[e.Chain]
		e.Hash = hashEvent(e.PrevHash, e)
		heads[e.Chain] = e.Hash
		var leaseID any
		if e.LeaseID != "" {
			leaseID = e.LeaseID
		}
		sealed[i] = []any{e.Seq, int16(e.Chain), leaseID, e.Kind, e.Actor, e.At, e.Details, e.PrevHash, e.Hash}
	}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"lease_events"},
		[]string{"seq", "chain", "lease_id", "kind", "actor", "at", "details", "prev_hash", "hash"},
		pgx.CopyFromRows(sealed))
	if err != nil {
		return fmt.Errorf("insert sealed events: %w", interpretError(err))
	}
	return nil
}

// sealAll seals every queued event inside tx, which holds the sealer's lock.
func sealAll(ctx context.Context, tx pgx.Tx) error {
	for {
		n, err := sealTx(ctx, tx, sealBatch)
		if err != nil || n < sealBatch {
			return err
		}
	}
}

// lockChains takes the append lock of each chain, in the order given, and
// returns each chain's newest hash (empty for a chain with no event yet).
func lockChains(ctx context.Context, tx pgx.Tx, chains []int32) (map[int][]byte, error) {
	// Each statement of a batch takes its own snapshot, so the heads read
	// after the locks are granted include every append committed before.
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1, c) FROM unnest($2::int[]) AS u(c)`, eventsLockSpace, chains)
	b.Queue(`
		SELECT c, e.hash FROM unnest($1::int[]) AS u(c)
		CROSS JOIN LATERAL (SELECT hash FROM lease_events WHERE chain = u.c ORDER BY seq DESC LIMIT 1) e`, chains)
	br := tx.SendBatch(ctx, b)
	defer func() { _ = br.Close() }()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("lock event chains: %w", err)
	}
	heads := make(map[int][]byte, len(chains))
	for _, c := range chains {
		heads[int(c)] = []byte{}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("read chain heads: %w", err)
	}
	for rows.Next() {
		var (
			c    int
			hash []byte
		)
		if err := rows.Scan(&c, &hash); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read chain heads: %w", err)
		}
		heads[c] = hash
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read chain heads: %w", err)
	}
	return heads, nil
}

// nextSeqs takes n numbers from the history's sequence, in ascending order.
func nextSeqs(ctx context.Context, tx pgx.Tx, n int) ([]int64, error) {
	rows, err := tx.Query(ctx, `SELECT nextval(pg_get_serial_sequence('lease_events', 'seq')) FROM generate_series(1, $1)`, n)
	if err != nil {
		return nil, fmt.Errorf("next event seqs: %w", err)
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("next event seqs: %w", err)
	}
	if len(seqs) != n {
		return nil, errors.New("next event seqs: the sequence returned too few numbers")
	}
	slices.Sort(seqs)
	return seqs, nil
}

// queueColumns are the columns an event is queued with, in the order
// queueArgs gives their values.
const queueColumns = `lease_id, kind, actor, at, details`

// queueArgs normalizes e (see normalizeEvent) and returns the values of
// queueColumns for it. Kind must not be empty.
func queueArgs(e Event) ([]any, error) {
	e = normalizeEvent(e)
	details, err := json.Marshal(e.Details)
	if err != nil {
		return nil, fmt.Errorf("encode details: %w", err)
	}
	var leaseID any
	if e.LeaseID != "" {
		leaseID = e.LeaseID
	}
	return []any{leaseID, e.Kind, e.Actor, e.At, string(details)}, nil
}

// enqueueEvent queues e inside tx; the sealer moves it into the history once
// tx has committed. Callers poke the sealer after the commit.
func enqueueEvent(ctx context.Context, tx pgx.Tx, e Event) error {
	args, err := queueArgs(e)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO lease_event_queue (`+queueColumns+`) VALUES ($1, $2, $3, $4, $5::jsonb)`, args...)
	if err != nil {
		return fmt.Errorf("queue %s event: %w", e.Kind, interpretError(err))
	}
	return nil
}

// updateRecording runs update, an UPDATE of one lease ending in its WHERE
// clause (parameters $1…$len(args)), and queues e for the updated lease in
// the same statement: one round trip and one commit. It returns the updated
// lease, or ErrNotFound when update matched no row (and then nothing is
// queued). The caller builds e from what it already knows of the lease.
func (s *Store) updateRecording(ctx context.Context, update string, args []any, e Event) (Lease, error) {
	ev, err := queueArgs(e)
	if err != nil {
		return Lease{}, err
	}
	n := len(args)
	q := `WITH u AS (` + update + ` RETURNING ` + leaseColumns + `),
		e AS (INSERT INTO lease_event_queue (` + queueColumns + `)
			SELECT $` + fmt.Sprint(n+1) + `::text, $` + fmt.Sprint(n+2) + `::text, $` + fmt.Sprint(n+3) +
		`::text, $` + fmt.Sprint(n+4) + `::timestamptz, $` + fmt.Sprint(n+5) + `::jsonb FROM u)
		SELECT ` + leaseColumns + ` FROM u`
	out, err := scanLease(s.pool.QueryRow(ctx, q, append(slices.Clone(args), ev...)...))
	if err != nil {
		return Lease{}, err
	}
	s.sealer.queued()
	return out, nil
}
