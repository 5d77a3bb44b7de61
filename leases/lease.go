package leases

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/plugins"
)

// State is where a lease is in its life.
type State string

// The states of a lease, in the order it moves through them.
const (
	// StatePending: recorded, the backend user is being created.
	StatePending State = "PENDING"
	// StateActive: the backend user exists and the holder has its credential.
	StateActive State = "ACTIVE"
	// StateRevoking: the backend user is being deleted, or will be retried.
	StateRevoking State = "REVOKING"
	// StateRevoked: the backend user is gone. Final, unless the issue that
	// made the lease completes afterwards (see Store.Activate).
	StateRevoked State = "REVOKED"
)

// Valid reports whether s is one of the four states.
func (s State) Valid() bool {
	switch s {
	case StatePending, StateActive, StateRevoking, StateRevoked:
		return true
	}
	return false
}

// Lease is one issued backend user. It never holds a password.
type Lease struct {
	ID       string
	Role     string
	Backend  string
	Plugin   string
	Username string
	State    State
	// Subject and Issuer identify the holder.
	Subject string
	Issuer  string
	// SubjectName is who a person is by their token's email or
	// preferred_username claim, for people reading the audit; empty for
	// workloads. At most 256 bytes. Never used to authorize.
	SubjectName string
	BreakGlass  bool
	Renewable   bool
	CreatedAt   time.Time
	ExpiresAt   time.Time
	// MaxExpiresAt is the latest ExpiresAt renewals may reach.
	MaxExpiresAt time.Time
	// RevokedAt is zero unless State is StateRevoked.
	RevokedAt time.Time
	// RevokeReason says why the lease was revoked: "expired", "abandoned
	// issue", "issue failed", or the reason given to Reaper.Revoke.
	RevokeReason   string
	RevokeAttempts int
	// NextAttemptAt is when the reaper may next take a REVOKING lease; zero
	// in other states.
	NextAttemptAt time.Time
	// LastError is the last revoke failure, sanitized; never a secret.
	LastError string
	// PluginState is the State the plugin returned from Create (or its last
	// Renew), handed back to Renew and Revoke; never a secret. Nil for a
	// lease written before contract v2 whose state has not been derived yet
	// (see [Reaper.UpgradeStates]); empty, not nil, when the plugin keeps
	// nothing or the lease's Create never returned.
	PluginState []byte
}

// StateForPlugin is PluginState as the broker hands it to the plugin's
// Renew and Revoke: nil when the store holds no state or an empty one, so a
// plugin tells "Create returned nothing" (or never returned) from a state it
// can decode by len(State) == 0, and derives what it needs itself then.
func (l Lease) StateForPlugin() []byte {
	if len(l.PluginState) == 0 {
		return nil
	}
	return l.PluginState
}

// leaseColumns is the column list every lease query selects or returns, in
// the order scanLease reads.
const leaseColumns = `id, role, backend, plugin, username, state, subject, issuer,
	break_glass, renewable, created_at, expires_at, max_expires_at, revoked_at,
	revoke_reason, revoke_attempts, next_attempt_at, last_error, subject_name, plugin_state`

func scanLease(row pgx.Row) (Lease, error) {
	var (
		l                   Lease
		state               string
		revokedAt, nextAtAt *time.Time
		pluginState         *[]byte
	)
	err := row.Scan(&l.ID, &l.Role, &l.Backend, &l.Plugin, &l.Username, &state, &l.Subject, &l.Issuer,
		&l.BreakGlass, &l.Renewable, &l.CreatedAt, &l.ExpiresAt, &l.MaxExpiresAt, &revokedAt,
		&l.RevokeReason, &l.RevokeAttempts, &nextAtAt, &l.LastError, &l.SubjectName, &pluginState)
	if err != nil {
		return Lease{}, interpretError(err)
	}
	if pluginState != nil { // NULL stays nil; a stored state, even empty, is not
		l.PluginState = nonNilState(*pluginState)
	}
	l.State = State(state)
	l.CreatedAt = l.CreatedAt.UTC()
	l.ExpiresAt = l.ExpiresAt.UTC()
	l.MaxExpiresAt = l.MaxExpiresAt.UTC()
	if revokedAt != nil {
		l.RevokedAt = revokedAt.UTC()
	}
	if nextAtAt != nil {
		l.NextAttemptAt = nextAtAt.UTC()
	}
	return l, nil
}

// CreatePending records a new lease in state PENDING with CreatedAt = now,
// before the backend is touched. ID defaults to [NewID]; MaxExpiresAt
// defaults to ExpiresAt. Role, Backend, Plugin, Username and ExpiresAt are
// required. The State, revocation fields, PluginState and CreatedAt of l are
// ignored: the lease starts with an empty plugin state, which
// [Store.Activate] replaces with what Create returned. A lease with the same
// id, or the same backend and username, gives [ErrConflict].
func (s *Store) CreatePending(ctx context.Context, l Lease) (_ Lease, err error) {
	defer markUnavailable(&err)
	if l.ID == "" {
		l.ID = NewID()
	}
	if l.MaxExpiresAt.IsZero() {
		l.MaxExpiresAt = l.ExpiresAt
	}
	for _, f := range []struct{ name, v string }{
		{"role", l.Role}, {"backend", l.Backend}, {"plugin", l.Plugin}, {"username", l.Username},
	} {
		if f.v == "" {
			return Lease{}, fmt.Errorf("%w: lease %s has no %s", ErrInvalidArgument, l.ID, f.name)
		}
	}
	if l.ExpiresAt.IsZero() {
		return Lease{}, fmt.Errorf("%w: lease %s has no expiry", ErrInvalidArgument, l.ID)
	}
	if l.ExpiresAt.After(l.MaxExpiresAt) {
		return Lease{}, fmt.Errorf("%w: lease %s expires at %s, after its maximum %s",
			ErrInvalidArgument, l.ID, l.ExpiresAt.Format(time.RFC3339), l.MaxExpiresAt.Format(time.RFC3339))
	}
	l.CreatedAt = s.now()
	out, err := s.writes.pending.do(ctx, l)
	if err != nil {
		return Lease{}, fmt.Errorf("create lease %s: %w", l.ID, err)
	}
	return out, nil
}

// insertPending inserts one checked lease, PENDING, created at l.CreatedAt.
func (s *Store) insertPending(ctx context.Context, l Lease) (Lease, error) {
	return scanLease(s.pool.QueryRow(ctx, `
		INSERT INTO leases (id, role, backend, plugin, username, state, subject, issuer,
			break_glass, renewable, created_at, expires_at, max_expires_at, subject_name, plugin_state)
		VALUES ($1, $2, $3, $4, $5, 'PENDING', $6, $7, $8, $9, $10, $11, $12, $13, ''::bytea)
		RETURNING `+leaseColumns,
		l.ID, l.Role, l.Backend, l.Plugin, l.Username, l.Subject, l.Issuer,
		l.BreakGlass, l.Renewable, l.CreatedAt, l.ExpiresAt, l.MaxExpiresAt, l.SubjectName))
}

// lockLease reads a lease and locks its row until tx ends.
func lockLease(ctx context.Context, tx pgx.Tx, id string) (Lease, error) {
	return scanLease(tx.QueryRow(ctx, `SELECT `+leaseColumns+` FROM leases WHERE id = $1 FOR UPDATE`, id))
}

// leaseDetails describes l for an event; extra keys are added where they do
// not collide.
func leaseDetails(l Lease, extra map[string]string) map[string]string {
	d := map[string]string{
		"role":           l.Role,
		"backend":        l.Backend,
		"plugin":         l.Plugin,
		"username":       l.Username,
		"subject":        l.Subject,
		"issuer":         l.Issuer,
		"expires_at":     l.ExpiresAt.Format(time.RFC3339Nano),
		"max_expires_at": l.MaxExpiresAt.Format(time.RFC3339Nano),
		"break_glass":    strconv.FormatBool(l.BreakGlass),
		"renewable":      strconv.FormatBool(l.Renewable),
	}
	if l.SubjectName != "" {
		d["subject_name"] = l.SubjectName
	}
	for k, v := range extra {
		if _, taken := d[k]; !taken {
			d[k] = v
		}
	}
	return d
}

// Activate marks pending, a PENDING lease, ACTIVE, stores pluginState (the
// State the plugin's Create returned; nil is stored as empty) and records
// its `issued` event (with actor, the lease's fields and details) in one
// statement, which concurrent activations share (group commit). pending is the lease [Store.CreatePending] returned: nothing
// changes a PENDING lease's fields but its state, so the event describes it
// without reading it back.
//
// If the lease is no longer PENDING, Activate returns [ErrConflict]. When the
// reaper has already taken the lease (REVOKING or REVOKED), Activate also puts
// it back in the reaper's queue, due now, with an `issue_conflict` event and
// pluginState stored: the backend user the caller has just created may
// postdate the reaper's revoke, and it must not outlive the lease.
func (s *Store) Activate(ctx context.Context, pending Lease, actor string, pluginState []byte, details map[string]string) (_ Lease, err error) {
	defer markUnavailable(&err)
	id := pending.ID
	now := s.now()
	pluginState = nonNilState(pluginState)
	// The common case in one statement, shared with concurrent activations:
	// the lease is still PENDING.
	out, err := s.writes.activations.do(ctx, activation{
		id: id, pluginState: pluginState,
		event: Event{LeaseID: id, Kind: "issued", Actor: actor, At: now, Details: leaseDetails(pending, details)},
	})
	if err == nil {
		s.sealer.queued()
		s.wake.due(out.ExpiresAt)
		return out, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return Lease{}, fmt.Errorf("activate lease %s: %w", id, err)
	}
	var conflict State
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		l, err := lockLease(ctx, tx, id)
		if err != nil {
			return err
		}
		switch l.State {
		case StatePending:
			return fmt.Errorf("%w: the lease is PENDING but could not be activated", ErrConflict)
		case StateActive:
			conflict, out = l.State, l
			return nil
		default:
			conflict = l.State
			out, err = requeue(ctx, tx, l, now, "issue_conflict", actor,
				"the backend user was created after the reaper took the lease", pluginState)
			return err
		}
	})
	if err != nil {
		return Lease{}, fmt.Errorf("activate lease %s: %w", id, err)
	}
	if conflict != StateActive {
		s.sealer.queued()
		s.wake.due(now) // handed back to the reaper
	}
	return out, fmt.Errorf("activate lease %s: %w: it is %s, not PENDING", id, ErrConflict, conflict)
}

// Fail hands a lease whose issue failed after [Store.CreatePending] to the
// reaper: the lease becomes REVOKING, due now, with reason "issue failed"
// and lastErr (sanitized) as its last error, and an `issue_failed` event is
// appended. The reaper then revokes whatever half-exists in the backend. If
// the reaper had already taken the lease, it is queued again the same way.
// Failing an ACTIVE lease gives [ErrConflict].
func (s *Store) Fail(ctx context.Context, id, actor, lastErr string) (err error) {
	defer markUnavailable(&err)
	now := s.now()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		l, err := lockLease(ctx, tx, id)
		if err != nil {
			return err
		}
		if l.State == StateActive {
			return fmt.Errorf("%w: it is ACTIVE", ErrConflict)
		}
		if l.State == StatePending {
			l.RevokeReason = "issue failed"
		}
		_, err = requeue(ctx, tx, l, now, "issue_failed", actor, lastErr, nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("fail lease %s: %w", id, err)
	}
	s.sealer.queued()
	s.wake.due(now)
	return nil
}

// requeue makes a locked lease REVOKING and due at now, which also voids any
// claim a reaper holds on it, and queues an event of kind (the caller pokes
// the sealer after the commit). A non-nil pluginState replaces the lease's.
func requeue(ctx context.Context, tx pgx.Tx, l Lease, now time.Time, kind, actor, lastErr string, pluginState []byte) (Lease, error) {
	// The store's own guard: whatever a caller passes, no password is kept.
	lastErr = plugins.SanitizeString(lastErr)
	out, err := scanLease(tx.QueryRow(ctx, `
		UPDATE leases SET state = 'REVOKING', revoked_at = NULL, next_attempt_at = $2,
			revoking_since = CASE WHEN state = 'REVOKING' THEN COALESCE(revoking_since, $2) ELSE $2 END,
			revoke_reason = $3, last_error = $4, plugin_state = COALESCE($5, plugin_state)
		WHERE id = $1
		RETURNING `+leaseColumns,
		l.ID, now, nonEmpty(l.RevokeReason, "issue failed"), lastErr, pluginState))
	if err != nil {
		return Lease{}, err
	}
	err = enqueueEvent(ctx, tx, Event{LeaseID: l.ID, Kind: kind, Actor: actor, At: now, Details: map[string]string{
		"previous_state": string(l.State),
		"error":          lastErr,
		"backend":        l.Backend,
		"username":       l.Username,
	}})
	return out, err
}

// nonNilState returns state, or an empty (non-NULL) state for nil.
func nonNilState(state []byte) []byte {
	if state == nil {
		return []byte{}
	}
	return state
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Get returns the lease with id, or [ErrNotFound].
func (s *Store) Get(ctx context.Context, id string) (_ Lease, err error) {
	defer markUnavailable(&err)
	l, err := scanLease(s.pool.QueryRow(ctx, `SELECT `+leaseColumns+` FROM leases WHERE id = $1`, id))
	if err != nil {
		return Lease{}, fmt.Errorf("get lease %s: %w", id, err)
	}
	return l, nil
}

// renewAttempts is how often Renew tries when concurrent renewals of the
// same lease keep winning the compare-and-set.
const renewAttempts = 3

// Renewal is what the function given to [Store.Renew] returns.
type Renewal struct {
	// ExpiresAt is the lease's new expiry, capped at MaxExpiresAt.
	ExpiresAt time.Time
	// PluginState, when not nil, replaces the lease's plugin state (the
	// State the plugin's Renew returned).
	PluginState []byte
}

// Renew extends an ACTIVE, unexpired, renewable lease. It reads the lease,
// calls fn with it outside any transaction (the broker moves the
// backend-side expiry in fn, which may take as long as the backend does),
// and then stores the expiry fn returns, capped at MaxExpiresAt, and its
// plugin state when it returns one, with a `renewed` event, in one
// statement, which holds no lock while a backend is called.
//
// The store is updated only if the lease is still what fn saw: ACTIVE,
// unexpired and with the same expiry (a compare-and-set). A lost race goes
// like this: if the lease was revoked or expired in the meantime, Renew
// returns [ErrNotActive] and changes nothing (the reaper owns the lease and
// deletes the user, whatever fn did to it); if another renewal moved the
// expiry first, Renew reads the lease again and calls fn again with it, so
// the backend ends at least as late as the store says, up to renewAttempts
// times, then gives [ErrConflict]. fn must therefore be safe to call more
// than once, and should cap at l.MaxExpiresAt itself so the backend and the
// store agree. If fn fails nothing changes and its error is returned. A
// lease that is not ACTIVE or has expired gives [ErrNotActive]; one issued
// as not renewable gives [ErrNotRenewable]; an expiry that is not after now
// gives [ErrInvalidArgument].
func (s *Store) Renew(ctx context.Context, id, actor string, fn func(l Lease) (Renewal, error)) (_ Lease, err error) {
	return s.renew(ctx, id, nil, actor, fn)
}

// RenewSeen is [Store.Renew] for a caller that has just read the lease
// (the broker, checking who holds it): its first round calls fn with seen
// instead of reading the lease again. A seen lease that is stale only
// loses the compare-and-set, and the next round reads it afresh.
func (s *Store) RenewSeen(ctx context.Context, seen Lease, actor string, fn func(l Lease) (Renewal, error)) (_ Lease, err error) {
	return s.renew(ctx, seen.ID, &seen, actor, fn)
}

func (s *Store) renew(ctx context.Context, id string, seen *Lease, actor string, fn func(l Lease) (Renewal, error)) (_ Lease, err error) {
	defer markUnavailable(&err)
	for range renewAttempts {
		out, err := s.renewOnce(ctx, id, seen, actor, fn)
		seen = nil
		if !errors.Is(err, errLostRace) {
			if err != nil {
				return Lease{}, fmt.Errorf("renew lease %s: %w", id, err)
			}
			return out, nil
		}
	}
	return Lease{}, fmt.Errorf("renew lease %s: %w: it was renewed concurrently %d times", id, ErrConflict, renewAttempts)
}

// errLostRace reports that a renewal's compare-and-set found the lease
// renewed by someone else after fn saw it.
var errLostRace = errors.New("leases: renewed concurrently")

// renewOnce is one read (unless seen is given), fn, compare-and-set round
// of Renew.
func (s *Store) renewOnce(ctx context.Context, id string, seen *Lease, actor string, fn func(l Lease) (Renewal, error)) (Lease, error) {
	var l Lease
	if seen != nil {
		l = *seen
	} else {
		var err error
		if l, err = scanLease(s.pool.QueryRow(ctx, `SELECT `+leaseColumns+` FROM leases WHERE id = $1`, id)); err != nil {
			return Lease{}, err
		}
	}
	if err := renewable(l, s.now()); err != nil {
		return Lease{}, err
	}
	renewal, err := fn(l) // the backend call: no transaction, no lock, no connection held
	if err != nil {
		return Lease{}, &callerError{err} // the backend's, never the store's unavailability
	}
	now := s.now()
	expiry := renewal.ExpiresAt.UTC().Truncate(time.Microsecond)
	if expiry.After(l.MaxExpiresAt) {
		expiry = l.MaxExpiresAt
	}
	if !expiry.After(now) {
		return Lease{}, fmt.Errorf("%w: new expiry %s is not in the future", ErrInvalidArgument, expiry.Format(time.RFC3339Nano))
	}
	out, err := s.updateRecording(ctx, `
		UPDATE leases SET expires_at = $3, plugin_state = COALESCE($5, plugin_state)
		WHERE id = $1 AND state = 'ACTIVE' AND expires_at = $2 AND expires_at > $4`,
		[]any{id, l.ExpiresAt, expiry, now, renewal.PluginState},
		Event{LeaseID: id, Kind: "renewed", Actor: actor, At: now, Details: map[string]string{
			"previous_expires_at": l.ExpiresAt.Format(time.RFC3339Nano),
			"expires_at":          expiry.Format(time.RFC3339Nano),
			"max_expires_at":      l.MaxExpiresAt.Format(time.RFC3339Nano),
		}})
	if errors.Is(err, ErrNotFound) {
		err = errLostRace
	}
	if errors.Is(err, errLostRace) {
		// Revoked or expired meanwhile is final; renewed meanwhile is retried.
		cur, gerr := scanLease(s.pool.QueryRow(ctx, `SELECT `+leaseColumns+` FROM leases WHERE id = $1`, id))
		if gerr != nil {
			return Lease{}, gerr
		}
		if rerr := renewable(cur, s.now()); rerr != nil {
			return Lease{}, rerr
		}
		return Lease{}, errLostRace
	}
	return out, err
}

// renewable reports why l cannot be renewed at now, or nil.
func renewable(l Lease, now time.Time) error {
	switch {
	case l.State != StateActive:
		return fmt.Errorf("%w: it is %s", ErrNotActive, l.State)
	case !now.Before(l.ExpiresAt):
		return fmt.Errorf("%w: it expired at %s", ErrNotActive, l.ExpiresAt.Format(time.RFC3339))
	case !l.Renewable:
		return ErrNotRenewable
	}
	return nil
}

// ListFilter selects leases for [Store.List]. Empty fields match everything.
type ListFilter struct {
	Issuer  string
	Subject string
	State   State
	Role    string
	Backend string
	// PageSize is the most leases a page holds: default 50, at most 500.
	PageSize int
	// PageToken continues a listing from the page that returned it.
	PageToken string
}

// Page sizes for List.
const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// List returns one page of leases matching f, oldest first (by CreatedAt,
// then ID), and the token of the next page, "" on the last page. Pages are
// keyset-paginated, so leases created during a listing never shift a page.
// A token this store did not make gives [ErrInvalidArgument].
func (s *Store) List(ctx context.Context, f ListFilter) (leases []Lease, next string, err error) {
	defer markUnavailable(&err)
	size := f.PageSize
	switch {
	case size <= 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, v ...any) {
		for _, a := range v {
			args = append(args, a)
			cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(args)), 1)
		}
		where = append(where, cond)
	}
	if f.Issuer != "" {
		add("issuer = ?", f.Issuer)
	}
	if f.Subject != "" {
		add("subject = ?", f.Subject)
	}
	if f.State != "" {
		if !f.State.Valid() {
			return nil, "", fmt.Errorf("list leases: %w: unknown state %q", ErrInvalidArgument, f.State)
		}
		add("state = ?", string(f.State))
	}
	if f.Role != "" {
		add("role = ?", f.Role)
	}
	if f.Backend != "" {
		add("backend = ?", f.Backend)
	}
	if f.PageToken != "" {
		after, id, err := decodePageToken(f.PageToken)
		if err != nil {
			return nil, "", fmt.Errorf("list leases: %w", err)
		}
		add("(created_at, id) > (?, ?)", after, id)
	}
	q := `SELECT ` + leaseColumns + ` FROM leases`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, size+1)
	q += ` ORDER BY created_at, id LIMIT $` + strconv.Itoa(len(args))

	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list leases: %w", err)
	}
	leases, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lease, error) { return scanLease(r) })
	if err != nil {
		return nil, "", fmt.Errorf("list leases: %w", err)
	}
	if len(leases) > size {
		leases = leases[:size]
		last := leases[size-1]
		next = encodePageToken(last.CreatedAt, last.ID)
	}
	return leases, next, nil
}

const pageTokenVersion = "v1"

func encodePageToken(createdAt time.Time, id string) string {
	raw := pageTokenVersion + "|" + createdAt.UTC().Format(time.RFC3339Nano) + "|" + id
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodePageToken(tok string) (time.Time, string, error) {
	bad := fmt.Errorf("%w: malformed page token", ErrInvalidArgument)
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return time.Time{}, "", bad
	}
	parts := strings.SplitN(string(raw), "|", 3)
	if len(parts) != 3 || parts[0] != pageTokenVersion || parts[2] == "" {
		return time.Time{}, "", bad
	}
	t, err := time.Parse(time.RFC3339Nano, parts[1])
	if err != nil {
		return time.Time{}, "", bad
	}
	return t, parts[2], nil
}

// ActiveByRole returns how many ACTIVE leases each role has now.
func (s *Store) ActiveByRole(ctx context.Context) (_ map[string]int64, err error) {
	defer markUnavailable(&err)
	rows, err := s.pool.Query(ctx, `SELECT role, count(*) FROM leases WHERE state = 'ACTIVE' GROUP BY role`)
	if err != nil {
		return nil, fmt.Errorf("count active leases: %w", err)
	}
	defer rows.Close()
	counts := map[string]int64{}
	for rows.Next() {
		var role string
		var n int64
		if err := rows.Scan(&role, &n); err != nil {
			return nil, fmt.Errorf("count active leases: %w", err)
		}
		counts[role] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count active leases: %w", err)
	}
	return counts, nil
}
