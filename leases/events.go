package leases

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
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
	// PrevHash and Hash chain the history; set by the store.
	PrevHash, Hash []byte
}

// eventsLockKey is the pg_advisory_xact_lock key that serializes appends to
// lease_events across every replica ("credleas" in ASCII).
const eventsLockKey int64 = 0x637265646c656173

// RecordEvent appends e to the history; Seq, PrevHash and Hash are set by the
// store, and At defaults to now. Kind is required.
func (s *Store) RecordEvent(ctx context.Context, e Event) error {
	if e.Kind == "" {
		return fmt.Errorf("record event: %w: kind is empty", ErrInvalidArgument)
	}
	if e.At.IsZero() {
		e.At = s.now()
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := appendEvent(ctx, tx, e)
		return err
	})
	if err != nil {
		return fmt.Errorf("record %s event: %w", e.Kind, err)
	}
	return nil
}

// appendEvent appends e inside tx, extending the hash chain. It takes the
// chain's advisory lock, held until tx ends, so callers append as the last
// step before committing. tx must be READ COMMITTED (the default) so the
// newest event is visible once the lock is held.
func appendEvent(ctx context.Context, tx pgx.Tx, e Event) (Event, error) {
	e = normalizeEvent(e)
	details, err := json.Marshal(e.Details)
	if err != nil {
		return Event{}, fmt.Errorf("encode details: %w", err)
	}

	// Each statement of a batch takes its own snapshot, so the read of the
	// newest hash sees every append committed before the lock was granted.
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, eventsLockKey)
	b.Queue(`SELECT hash FROM lease_events ORDER BY seq DESC LIMIT 1`)
	b.Queue(`SELECT nextval(pg_get_serial_sequence('lease_events', 'seq'))`)
	br := tx.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return Event{}, fmt.Errorf("lock event chain: %w", err)
	}
	e.PrevHash = []byte{}
	if err := br.QueryRow().Scan(&e.PrevHash); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		_ = br.Close()
		return Event{}, fmt.Errorf("read chain head: %w", err)
	}
	if err := br.QueryRow().Scan(&e.Seq); err != nil {
		_ = br.Close()
		return Event{}, fmt.Errorf("next event seq: %w", err)
	}
	if err := br.Close(); err != nil {
		return Event{}, err
	}

	e.Hash = hashEvent(e.PrevHash, e)
	_, err = tx.Exec(ctx, `
		INSERT INTO lease_events (seq, lease_id, kind, actor, at, details, prev_hash, hash)
		VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6::jsonb, $7, $8)`,
		e.Seq, e.LeaseID, e.Kind, e.Actor, e.At, string(details), e.PrevHash, e.Hash)
	if err != nil {
		return Event{}, fmt.Errorf("insert event: %w", interpretError(err))
	}
	return e, nil
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

const eventColumns = `seq, COALESCE(lease_id, ''), kind, actor, at, details, prev_hash, hash`

func scanEvent(row pgx.Row) (Event, error) {
	var e Event
	if err := row.Scan(&e.Seq, &e.LeaseID, &e.Kind, &e.Actor, &e.At, &e.Details, &e.PrevHash, &e.Hash); err != nil {
		return Event{}, err
	}
	e.At = e.At.UTC()
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	return e, nil
}

// Events calls fn with every event matching f, in seq order, streaming from
// one consistent snapshot. It stops at, and returns, fn's first error.
func (s *Store) Events(ctx context.Context, f EventFilter, fn func(Event) error) error {
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
	if err := s.eachEvent(ctx, q, args, fn); err != nil {
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

// VerifyChain recomputes the hash chain over the whole history, in seq
// order, and returns how many events verified. An error wraps
// [ErrChainBroken] and names the first seq that does not match.
func (s *Store) VerifyChain(ctx context.Context) (checked int64, err error) {
	var (
		prev    = []byte{}
		prevSeq int64
	)
	errStop := errors.New("stop")
	var broken error
	err = s.eachEvent(ctx, `SELECT `+eventColumns+` FROM lease_events ORDER BY seq`, nil, func(e Event) error {
		if !bytes.Equal(e.PrevHash, prev) {
			if prevSeq == 0 {
				broken = fmt.Errorf("%w at seq %d: the first event does not start the chain (events before it were removed)", ErrChainBroken, e.Seq)
			} else {
				broken = fmt.Errorf("%w at seq %d: prev_hash does not match the hash of seq %d (an event was removed or altered)", ErrChainBroken, e.Seq, prevSeq)
			}
			return errStop
		}
		if !bytes.Equal(hashEvent(prev, e), e.Hash) {
			broken = fmt.Errorf("%w at seq %d: hash does not match the event's contents (the event was altered)", ErrChainBroken, e.Seq)
			return errStop
		}
		checked++
		prev, prevSeq = e.Hash, e.Seq
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
