package leases

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Group commit. Every issue writes the store twice (the PENDING lease, then
// its activation with the `issued` event), and each write is a statement
// and a commit of its own: at a few hundred issues a second PostgreSQL
// spends more on statement and commit overhead than on the rows. A batcher
// lets concurrent callers share one. A caller queues its request, then
// either becomes a leader — at most batchLeaders at a time — which takes
// every request queued (at most batchMax), runs them as one multi-row
// statement, one commit, and answers each; or, while the leaders are busy,
// waits for its answer or for a leader's place. A lone caller leads its own
// request at once, in its own goroutine: nothing is delayed or handed over.
// Under load a batch forms by itself from the requests that arrive while
// the previous one runs. The durability of each write is unchanged: a
// caller is answered only after the commit that holds its row.

// batchMax is the most requests one statement carries.
const batchMax = 64

// batchLeaders is how many batches run at once. Two keep the store busy
// while one batch's commit is flushed, without splitting the load into
// batches too small to gain anything.
const batchLeaders = 2

// batchTimeout bounds one batch's statement; a caller's own context only
// decides whether its request is still run when a leader takes it, since its
// row may share a statement with others.
const batchTimeout = 30 * time.Second

// batchRequest is one caller's part of a batch.
type batchRequest[In, Out any] struct {
	ctx  context.Context
	in   In
	done chan batchResult[Out]
}

type batchResult[Out any] struct {
	out Out
	err error
}

// batcher runs requests in batches with run, which returns one result per
// request, in order (a row's own error, such as ErrNotFound, is its
// result). When run fails as a whole (a constraint one row violates fails
// the statement for all), each request of the batch is run alone with
// single, so every caller gets its own answer.
type batcher[In, Out any] struct {
	run    func(ctx context.Context, in []In) ([]batchResult[Out], error)
	single func(ctx context.Context, in In) (Out, error)
	// leaders holds a token per running leader.
	leaders chan struct{}

	mu    sync.Mutex
	queue []batchRequest[In, Out]

	// shared counts the requests answered by a statement they shared.
	shared atomic.Int64
}

func newBatcher[In, Out any](run func(context.Context, []In) ([]batchResult[Out], error), single func(context.Context, In) (Out, error)) *batcher[In, Out] {
	return &batcher[In, Out]{run: run, single: single, leaders: make(chan struct{}, batchLeaders)}
}

// do queues in and returns its result. A caller whose ctx ends while in is
// still queued gets ctx's error, and in is not run; once a leader has taken
// it, the result stands.
func (b *batcher[In, Out]) do(ctx context.Context, in In) (Out, error) {
	req := batchRequest[In, Out]{ctx: ctx, in: in, done: make(chan batchResult[Out], 1)}
	b.mu.Lock()
	b.queue = append(b.queue, req)
	b.mu.Unlock()
	for {
		select {
		case res := <-req.done:
			return res.out, res.err
		case b.leaders <- struct{}{}:
			led := b.lead()
			<-b.leaders
			if !led {
				// The queue was empty: a leader has taken in and will answer.
				res := <-req.done
				return res.out, res.err
			}
		}
	}
}

// lead takes what is queued and runs it, answering each request. It reports
// false when nothing was queued.
func (b *batcher[In, Out]) lead() bool {
	b.mu.Lock()
	n := min(len(b.queue), batchMax)
	batch := slices.Clone(b.queue[:n])
	b.queue = slices.Delete(b.queue, 0, n)
	b.mu.Unlock()
	if n == 0 {
		return false
	}
	b.runBatch(batch)
	return true
}

// runBatch runs the requests whose callers still wait and answers each.
func (b *batcher[In, Out]) runBatch(batch []batchRequest[In, Out]) {
	live := batch[:0:0]
	for _, req := range batch {
		if err := req.ctx.Err(); err != nil {
			req.done <- batchResult[Out]{err: err} // gave up while queued: nothing written
			continue
		}
		live = append(live, req)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	if len(live) == 1 {
		out, err := b.single(ctx, live[0].in)
		live[0].done <- batchResult[Out]{out: out, err: err}
		return
	}
	in := make([]In, len(live))
	for i, req := range live {
		in[i] = req.in
	}
	outs, err := b.run(ctx, in)
	if err != nil || len(outs) != len(live) {
		for _, req := range live {
			out, err := b.single(ctx, req.in)
			req.done <- batchResult[Out]{out: out, err: err}
		}
		return
	}
	b.shared.Add(int64(len(live)))
	for i, req := range live {
		req.done <- outs[i]
	}
}

// storeWrites are the batched writes of a Store's request path.
type storeWrites struct {
	pending     *batcher[Lease, Lease]
	activations *batcher[activation, Lease]
}

// activation is one [Store.Activate] in a batch: the lease, its plugin
// state and its `issued` event.
type activation struct {
	id          string
	pluginState []byte
	event       Event
}

func (s *Store) startWrites() {
	s.writes = &storeWrites{
		pending:     newBatcher(s.insertPendings, s.insertPending),
		activations: newBatcher(s.activateMany, s.activateOne),
	}
}

// insertPendings inserts checked leases, PENDING, in one statement.
func (s *Store) insertPendings(ctx context.Context, ls []Lease) ([]batchResult[Lease], error) {
	n := len(ls)
	var (
		ids, roles, backends, plugins, usernames = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		subjects, issuers, names                 = make([]string, n), make([]string, n), make([]string, n)
		breakGlass, renewable                    = make([]bool, n), make([]bool, n)
		created, expires, maxExpires             = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	)
	for i, l := range ls {
		ids[i], roles[i], backends[i], plugins[i], usernames[i] = l.ID, l.Role, l.Backend, l.Plugin, l.Username
		subjects[i], issuers[i], names[i] = l.Subject, l.Issuer, l.SubjectName
		breakGlass[i], renewable[i] = l.BreakGlass, l.Renewable
		created[i], expires[i], maxExpires[i] = l.CreatedAt, l.ExpiresAt, l.MaxExpiresAt
	}
	rows, err := s.pool.Query(ctx, `
		INSERT INTO leases (id, role, backend, plugin, username, state, subject, issuer,
			break_glass, renewable, created_at, expires_at, max_expires_at, subject_name, plugin_state)
		SELECT id, role, backend, plugin, username, 'PENDING', subject, issuer,
			break_glass, renewable, created_at, expires_at, max_expires_at, subject_name, ''::bytea
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
			$8::bool[], $9::bool[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::text[])
			AS u(id, role, backend, plugin, username, subject, issuer,
			break_glass, renewable, created_at, expires_at, max_expires_at, subject_name)
		RETURNING `+leaseColumns,
		ids, roles, backends, plugins, usernames, subjects, issuers,
		breakGlass, renewable, created, expires, maxExpires, names)
	if err != nil {
		return nil, err
	}
	return resultsByID(rows, ids, ErrUnavailable)
}

// activateMany activates PENDING leases and queues their `issued` events in
// one statement. A lease that is no longer PENDING gets ErrNotFound, and
// Activate deals with it alone.
func (s *Store) activateMany(ctx context.Context, as []activation) ([]batchResult[Lease], error) {
	n := len(as)
	ids, states := make([]string, n), make([][]byte, n)
	actors, details := make([]string, n), make([]string, n)
	ats := make([]time.Time, n)
	for i, a := range as {
		args, err := queueArgs(a.event)
		if err != nil {
			return nil, err
		}
		ids[i], states[i] = a.id, a.pluginState
		actors[i], ats[i], details[i] = args[2].(string), args[3].(time.Time), args[4].(string)
	}
	rows, err := s.pool.Query(ctx, `
		WITH input AS (
			SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::timestamptz[], $5::text[])
				WITH ORDINALITY AS u(in_id, in_state, in_actor, in_at, in_details, in_ord)
		), u AS (
			UPDATE leases SET state = 'ACTIVE', plugin_state = input.in_state
			FROM input WHERE id = input.in_id AND state = 'PENDING'
			RETURNING `+leaseColumns+`
		), e AS (
			INSERT INTO lease_event_queue (`+queueColumns+`)
			SELECT in_id, 'issued', in_actor, in_at, in_details::jsonb
			FROM input JOIN u ON u.id = input.in_id ORDER BY in_ord
		)
		SELECT `+leaseColumns+` FROM u`,
		ids, states, actors, ats, details)
	if err != nil {
		return nil, err
	}
	return resultsByID(rows, ids, ErrNotFound)
}

// activateOne is activateMany for one lease.
func (s *Store) activateOne(ctx context.Context, a activation) (Lease, error) {
	return s.updateRecording(ctx,
		`UPDATE leases SET state = 'ACTIVE', plugin_state = $2 WHERE id = $1 AND state = 'PENDING'`,
		[]any{a.id, a.pluginState}, a.event)
}

// resultsByID reads the leases rows returns and answers each of ids, in
// order, with its lease, or with missing when the statement returned none.
func resultsByID(rows pgx.Rows, ids []string, missing error) ([]batchResult[Lease], error) {
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lease, error) { return scanLease(r) })
	if err != nil {
		return nil, err
	}
	byID := make(map[string]Lease, len(got))
	for _, l := range got {
		byID[l.ID] = l
	}
	out := make([]batchResult[Lease], len(ids))
	for i, id := range ids {
		if l, ok := byID[id]; ok {
			out[i].out = l
		} else {
			out[i].err = missing
		}
	}
	return out, nil
}
