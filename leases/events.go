package leases

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Event is one entry of the append-only lease history: issued, renewed,
// revoked, revoke_failed, issue_failed, issue_conflict, denied, break_glass,
// exported …
type Event struct {
	// Seq orders the history; it is set by the store.
	Seq int64
	// LeaseID is empty for events that concern no lease (denied).
	LeaseID string
	// Kind names what happened. Required.
	Kind string
	// Actor is who did it: a subject, "reaper", "broker".
	Actor string
	// At is when it happened; the store's clock when zero. Stored with
	// microsecond precision.
	At time.Time
	// Details are free-form facts about the event. Never a secret.
	Details map[string]string
	// Chain is the hash chain the event belongs to; set by the store.
	Chain int
	// PrevHash and Hash chain the history: PrevHash is the Hash of the
	// previous event of the same chain. Set by the store.
	PrevHash, Hash []byte
}

// eventChains is how many hash chains the history is split into. An event
// of a lease always goes to the same chain (by its lease id; events without
// a lease by their actor), so a lease's history is one ordered chain, and
// appends for different leases rarely wait for each other. Changing it only
// changes where new events go; verification reads each event's chain.
const eventChains = 16

// eventsLockSpace is the first key of the pg_advisory_xact_lock that
// serializes appends to one chain across every replica ("cbev" in ASCII);
// the chain number is the second.
const eventsLockSpace int32 = 0x63626576

// chainOf returns the chain an event is appended to.
func chainOf(e Event) int {
	key := e.LeaseID
	if key == "" {
		key = e.Actor
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % eventChains)
}

// RecordEvent appends e to the history; Seq, PrevHash and Hash are set by the
// store when it seals the event (see Seal), and At defaults to now. Kind is
// required.
func (s *Store) RecordEvent(ctx context.Context, e Event) (err error) {
	defer markUnavailable(&err)
	if e.Kind == "" {
		return fmt.Errorf("record event: %w: kind is empty", ErrInvalidArgument)
	}
	if e.At.IsZero() {
		e.At = s.now()
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return enqueueEvent(ctx, tx, e)
	})
	if err != nil {
		return fmt.Errorf("record %s event: %w", e.Kind, err)
	}
	s.sealer.queued()
	return nil
}

// normalizeEvent makes e exactly what PostgreSQL will store and give back, so
// the hash computed now matches the one recomputed from the row later: UTC
// time at microsecond precision, valid UTF-8 without NUL in every string.
func normalizeEvent(e Event) Event {
	e.At = e.At.UTC().Truncate(time.Microsecond)
	e.LeaseID = cleanText(e.LeaseID)
	e.Kind = cleanText(e.Kind)
	e.Actor = cleanText(e.Actor)
	d := make(map[string]string, len(e.Details))
	for k, v := range e.Details {
		d[cleanText(k)] = cleanText(v)
	}
	e.Details = d
	return e
}

// cleanText replaces what PostgreSQL text and jsonb refuse (invalid UTF-8,
// NUL) with U+FFFD.
func cleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// hashEvent is SHA-256(prev || canonical(e)); the encoding is described in
// the package documentation.
func hashEvent(prev []byte, e Event) []byte {
	h := sha256.New()
	h.Write(prev)
	field := func(s string) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(strconv.FormatInt(e.Seq, 10))
	field(e.LeaseID)
	field(e.Kind)
	field(e.Actor)
	field(e.At.UTC().Format(time.RFC3339Nano))
	keys := slices.Sorted(maps.Keys(e.Details))
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(keys)))
	h.Write(n[:])
	for _, k := range keys {
		field(k)
		field(e.Details[k])
	}
	return h.Sum(nil)
}

// EventFilter selects events for [Store.Events]. Zero fields match
// everything.
type EventFilter struct {
	// From and To bound At: From <= At < To.
	From, To time.Time
	LeaseID  string
	Kind     string
}

const eventColumns = `seq, chain, COALESCE(lease_id, ''), kind, actor, at, details, prev_hash, hash`

func scanEvent(row pgx.Row) (Event, error) {
	var e Event
	if err := row.Scan(&e.Seq, &e.Chain, &e.LeaseID, &e.Kind, &e.Actor, &e.At, &e.Details, &e.PrevHash, &e.Hash); err != nil {
		return Event{}, err
	}
	e.At = e.At.UTC()
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	return e, nil
}

// Events calls fn with every event matching f, in seq order, streaming from
// one consistent snapshot taken after sealing every event queued so far. It stops at, and returns, fn's first error.
func (s *Store) Events(ctx context.Context, f EventFilter, fn func(Event) error) (err error) {
	defer markUnavailable(&err)
	if err := s.seal(ctx, true); err != nil {
		return fmt.Errorf("list events: %w", err)
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if !f.From.IsZero() {
		add("at >= $%d", f.From)
	}
	if !f.To.IsZero() {
		add("at < $%d", f.To)
	}
	if f.LeaseID != "" {
		add("lease_id = $%d", f.LeaseID)
	}
	if f.Kind != "" {
		add("kind = $%d", f.Kind)
	}
	q := `SELECT ` + eventColumns + ` FROM lease_events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY seq`
	sink := func(e Event) error {
		if err := fn(e); err != nil {
			return &callerError{err} // the caller's (a stream that broke), not the store's
		}
		return nil
	}
	if err := s.eachEvent(ctx, q, args, sink); err != nil {
		return fmt.Errorf("list events: %w", err)
	}
	return nil
}

func (s *Store) eachEvent(ctx context.Context, q string, args []any, fn func(Event) error) error {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// VerifyChain seals every event queued so far, then recomputes every hash
// chain over the whole history, in seq order, and returns how many events
// verified. An error wraps
// [ErrChainBroken] and names the first seq that does not match.
func (s *Store) VerifyChain(ctx context.Context) (checked int64, err error) {
	defer markUnavailable(&err)
	if err := s.seal(ctx, true); err != nil {
		return 0, fmt.Errorf("verify event chain: %w", err)
	}
	v := NewChainVerifier()
	errStop := errors.New("stop")
	var broken error
	err = s.eachEvent(ctx, `SELECT `+eventColumns+` FROM lease_events ORDER BY seq`, nil, func(e Event) error {
		if broken = v.Add(e); broken != nil {
			return errStop
		}
		checked++
		return nil
	})
	if broken != nil {
		return checked, broken
	}
	if err != nil {
		return checked, fmt.Errorf("verify event chain: %w", err)
	}
	return checked, nil
}

// EventCheckpoint is the kind of the event that records the head of every
// chain, so that removing the newest events of a chain is detected once a
// later checkpoint exists.
const EventCheckpoint = "checkpoint"

// checkpointActor is the actor of checkpoints, which also puts them all in
// one chain.
const checkpointActor = "checkpoint"

// Checkpoint seals every queued event, then appends a checkpoint event
// holding the newest (seq, hash) of every chain, unless nothing was appended
// since the last checkpoint. It reports whether it wrote one. It waits for
// the sealer's lock, which sealers hold for one batch. The reaper calls it
// on every pass.
func (s *Store) Checkpoint(ctx context.Context) (_ bool, err error) {
	defer markUnavailable(&err)
	wrote := false
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := lockSealer(ctx, tx, true); err != nil {
			return err
		}
		if err := sealAll(ctx, tx); err != nil {
			return err
		}
		cp, fresh, err := checkpointEvent(ctx, tx, s.now())
		if err != nil || !fresh {
			return err // nothing was appended since the last checkpoint
		}
		checkpointHook()
		// Sealed directly, not through the queue: events queued since the
		// heads were read would be sealed before it, with lower seqs, and
		// it would not name them as the heads.
		err = sealEvents(ctx, tx, []Event{normalizeEvent(cp)})
		wrote = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("checkpoint event chains: %w", err)
	}
	return wrote, nil
}

// checkpointHook runs between reading the chains' heads and sealing the
// checkpoint that records them; tests set it.
var checkpointHook = func() {}

// checkpointEvent returns the checkpoint event recording the head of every
// chain as tx sees them, and whether any chain grew since the last
// checkpoint.
func checkpointEvent(ctx context.Context, tx pgx.Tx, now time.Time) (Event, bool, error) {
	cp := Event{Kind: EventCheckpoint, Actor: checkpointActor, At: now, Details: map[string]string{}}
	var last int64 // the newest checkpoint's seq, 0 for none
	if err := tx.QueryRow(ctx, `
		SELECT COALESCE(max(seq), 0) FROM lease_events WHERE chain = $1 AND kind = $2`,
		chainOf(cp), EventCheckpoint).Scan(&last); err != nil {
		return Event{}, false, err
	}
	rows, err := tx.Query(ctx, `
		SELECT c.chain, e.seq, e.hash
		FROM generate_series(0, $1 - 1) AS c(chain)
		CROSS JOIN LATERAL (
			SELECT seq, hash FROM lease_events WHERE chain = c.chain ORDER BY seq DESC LIMIT 1
		) e`, eventChains)
	if err != nil {
		return Event{}, false, err
	}
	defer rows.Close()
	fresh := false
	for rows.Next() {
		var (
			chain int
			seq   int64
			hash  []byte
		)
		if err := rows.Scan(&chain, &seq, &hash); err != nil {
			return Event{}, false, err
		}
		cp.Details["chain."+strconv.Itoa(chain)] = strconv.FormatInt(seq, 10) + ":" + hex.EncodeToString(hash)
		fresh = fresh || seq > last
	}
	return cp, fresh, rows.Err()
}

// ChainVerifier checks events one at a time, in seq order, against the hash
// chains they belong to. It verifies a whole history from its first event,
// as [Store.VerifyChain] does, and also an export of part of it: the first
// event met in each chain is taken as that chain's starting point.
type ChainVerifier struct {
	heads map[int]chainHead
	// since holds, per chain, the hashes of the events added since a
	// checkpoint last covered the chain, for checking the next checkpoint.
	since map[int]map[int64][]byte
	// first is the first seq met in each chain.
	first map[int]int64
	// Partial accepts a chain that does not start at the beginning of the
	// history (an export of a time range).
	Partial bool
}

type chainHead struct {
	hash []byte
	seq  int64
}

// NewChainVerifier returns a verifier for a history read from its start.
func NewChainVerifier() *ChainVerifier {
	return &ChainVerifier{heads: map[int]chainHead{}, since: map[int]map[int64][]byte{}, first: map[int]int64{}}
}

// Add checks e, which must follow every event already added. The error
// wraps [ErrChainBroken] and says what is wrong.
func (v *ChainVerifier) Add(e Event) error {
	head, seen := v.heads[e.Chain]
	switch {
	case !seen && !v.Partial && len(e.PrevHash) != 0:
		return fmt.Errorf("%w at seq %d: the first event of chain %d does not start the chain (events before it were removed)", ErrChainBroken, e.Seq, e.Chain)
	case seen && !bytes.Equal(e.PrevHash, head.hash):
		return fmt.Errorf("%w at seq %d: prev_hash does not match the hash of seq %d, the previous event of chain %d (an event was removed or altered)", ErrChainBroken, e.Seq, head.seq, e.Chain)
	case seen && e.Seq <= head.seq:
		return fmt.Errorf("%w at seq %d: events are out of order", ErrChainBroken, e.Seq)
	}
	if !bytes.Equal(hashEvent(e.PrevHash, e), e.Hash) {
		return fmt.Errorf("%w at seq %d: hash does not match the event's contents (the event was altered)", ErrChainBroken, e.Seq)
	}
	if e.Kind == EventCheckpoint {
		if err := v.checkpoint(e); err != nil {
			return err
		}
	}
	if !seen {
		v.first[e.Chain] = e.Seq
	}
	v.heads[e.Chain] = chainHead{hash: e.Hash, seq: e.Seq}
	if v.since[e.Chain] == nil {
		v.since[e.Chain] = map[int64][]byte{}
	}
	v.since[e.Chain][e.Seq] = e.Hash
	return nil
}

// checkpoint checks that every chain head a checkpoint recorded is an event
// already verified, then forgets what the checkpoint covers.
func (v *ChainVerifier) checkpoint(e Event) error {
	for key, val := range e.Details {
		chainStr, ok := strings.CutPrefix(key, "chain.")
		seqStr, hashHex, ok2 := strings.Cut(val, ":")
		chain, err1 := strconv.Atoi(chainStr)
		seq, err2 := strconv.ParseInt(seqStr, 10, 64)
		if !ok || !ok2 || err1 != nil || err2 != nil {
			return fmt.Errorf("%w at seq %d: checkpoint entry %q is malformed", ErrChainBroken, e.Seq, key)
		}
		if first, seen := v.first[chain]; v.Partial && (!seen || seq < first) {
			continue // before the exported range
		}
		got, ok := v.since[chain][seq]
		if !ok && v.heads[chain].seq == seq {
			got, ok = v.heads[chain].hash, true
		}
		if !ok || hex.EncodeToString(got) != hashHex {
			return fmt.Errorf("%w at seq %d: the checkpoint records seq %d as the head of chain %d, but that event is missing or altered (events were removed)", ErrChainBroken, e.Seq, seq, chain)
		}
		for s := range v.since[chain] {
			if s <= seq {
				delete(v.since[chain], s)
			}
		}
	}
	return nil
}
