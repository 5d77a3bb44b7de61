package leases

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/credbroker/credbroker/secret"
)

// Kinds of the events admin secrets record. None carries a secret.
const (
	// EventRootRotated records a finished rotation of a backend's admin
	// password: actor, backend, version, started_at.
	EventRootRotated = "root_rotated"
	// EventRootRotationRolledBack records a rotation given up before the
	// backend took the new password: actor, backend, reason.
	EventRootRotationRolledBack = "root_rotation_rolled_back"
	// EventSecretsRewrapped records a rewrap: actor, kek_id, rewrapped,
	// unchanged.
	EventSecretsRewrapped = "secrets_rewrapped"
)

// Slot is where an admin secret sits for its backend.
type Slot string

const (
	// SlotCurrent is the admin password the broker logs in with.
	SlotCurrent Slot = "current"
	// SlotCandidate is the new password of a rotation recorded before the
	// backend was touched and not finished or rolled back yet.
	SlotCandidate Slot = "candidate"
)

// AdminSecret is one stored admin secret, decrypted.
type AdminSecret struct {
	// ID is random, and bound into the encryption with Backend.
	ID      string
	Backend string
	Slot    Slot
	// Version grows with every secret written, across backends.
	Version int64
	// KEKID names the key-encryption key that wraps its data key.
	KEKID string
	// Actor is who wrote it.
	Actor     string
	CreatedAt time.Time
	// RotatedAt is when the rotation that made it current finished; zero
	// for a candidate.
	RotatedAt time.Time
	Value     secret.Value
}

// AdminSecretInfo is what [Store.AdminSecretVersions] reports of a
// backend, without decrypting anything.
type AdminSecretInfo struct {
	// Current is the version of the current secret; 0 when there is none
	// (the config's reference is the admin password).
	Current int64
	// RotatedAt is when the current secret's rotation finished.
	RotatedAt time.Time
	// Candidate is the version of a rotation in progress; 0 for none.
	Candidate int64
	// CandidateAt is when that rotation was recorded.
	CandidateAt time.Time
}

// HasKeyring reports whether the store was opened with key-encryption keys,
// so that it keeps admin secrets.
func (s *Store) HasKeyring() bool { return s.keys != nil }

func (s *Store) keyring() (*Keyring, error) {
	if s.keys == nil {
		return nil, ErrNoKEK
	}
	return s.keys, nil
}

const adminSecretColumns = `id, backend, slot, version, kek_id, wrapped_key, nonce, ciphertext, actor, created_at, rotated_at`

// scanAdminSecret reads and decrypts one row.
func (s *Store) scanAdminSecret(row pgx.Row) (AdminSecret, error) {
	var (
		a       AdminSecret
		sl      sealed
		slot    string
		rotated *time.Time
	)
	if err := row.Scan(&a.ID, &a.Backend, &slot, &a.Version, &sl.kekID, &sl.wrappedKey, &sl.nonce, &sl.ciphertext,
		&a.Actor, &a.CreatedAt, &rotated); err != nil {
		return AdminSecret{}, err
	}
	a.Slot, a.KEKID = Slot(slot), sl.kekID
	if rotated != nil {
		a.RotatedAt = rotated.UTC()
	}
	a.CreatedAt = a.CreatedAt.UTC()
	plain, err := s.keys.open(a.ID, a.Backend, sl)
	if err != nil {
		return AdminSecret{}, err
	}
	a.Value = secret.New(string(plain))
	clear(plain)
	return a, nil
}

// AdminSecrets returns the current and candidate admin secrets of backend,
// decrypted; nil for each that does not exist. A secret that does not
// decrypt is an error wrapping [ErrUnknownKEK] or [ErrDecrypt].
func (s *Store) AdminSecrets(ctx context.Context, backend string) (current, candidate *AdminSecret, err error) {
	defer markUnavailable(&err)
	if _, err := s.keyring(); err != nil {
		return nil, nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+adminSecretColumns+` FROM admin_secrets WHERE backend = $1`, backend)
	if err != nil {
		return nil, nil, fmt.Errorf("read admin secrets of %s: %w", backend, err)
	}
	defer rows.Close()
	for rows.Next() {
		a, err := s.scanAdminSecret(rows)
		if err != nil {
			return nil, nil, fmt.Errorf("read admin secrets of %s: %w", backend, err)
		}
		switch a.Slot {
		case SlotCurrent:
			current = &a
		case SlotCandidate:
			candidate = &a
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read admin secrets of %s: %w", backend, err)
	}
	return current, candidate, nil
}

// AdminSecretVersions reports, for every backend with a stored admin
// secret, its versions and times. It decrypts nothing and works without a
// keyring: replicas poll it to learn that a backend's password changed.
func (s *Store) AdminSecretVersions(ctx context.Context) (_ map[string]AdminSecretInfo, err error) {
	defer markUnavailable(&err)
	rows, err := s.pool.Query(ctx, `SELECT backend, slot, version, created_at, rotated_at FROM admin_secrets`)
	if err != nil {
		return nil, fmt.Errorf("read admin secret versions: %w", err)
	}
	defer rows.Close()
	out := map[string]AdminSecretInfo{}
	for rows.Next() {
		var (
			backend, slot string
			version       int64
			created       time.Time
			rotated       *time.Time
		)
		if err := rows.Scan(&backend, &slot, &version, &created, &rotated); err != nil {
			return nil, err
		}
		info := out[backend]
		switch Slot(slot) {
		case SlotCurrent:
			info.Current = version
			if rotated != nil {
				info.RotatedAt = rotated.UTC()
			}
		case SlotCandidate:
			info.Candidate, info.CandidateAt = version, created.UTC()
		}
		out[backend] = info
	}
	return out, rows.Err()
}

// newSecretID returns a random id for an admin secret.
func newSecretID() string { return "asec_" + NewID()[len("lease_"):] }

// insertSecret encrypts value and inserts it into slot of backend within tx.
func (s *Store) insertSecret(ctx context.Context, tx pgx.Tx, backend string, slot Slot, value secret.Value, actor string, rotatedAt *time.Time) (AdminSecret, error) {
	a := AdminSecret{ID: newSecretID(), Backend: backend, Slot: slot, Actor: actor, CreatedAt: s.now().UTC(), Value: value}
	sl, err := s.keys.seal(a.ID, backend, []byte(value.Reveal()))
	if err != nil {
		return AdminSecret{}, err
	}
	a.KEKID = sl.kekID
	if rotatedAt != nil {
		a.RotatedAt = *rotatedAt
	}
	err = tx.QueryRow(ctx, `
		INSERT INTO admin_secrets (id, backend, slot, kek_id, wrapped_key, nonce, ciphertext, actor, created_at, rotated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING version`,
		a.ID, backend, string(slot), sl.kekID, sl.wrappedKey, sl.nonce, sl.ciphertext, actor, a.CreatedAt, rotatedAt).Scan(&a.Version)
	if err != nil {
		return AdminSecret{}, interpretError(err)
	}
	return a, nil
}

// BeginRotation records value as the candidate admin password of backend,
// before the backend is touched, so that a broker dying during the rotation
// leaves a record the next one finishes or rolls back. A rotation already
// recorded is [ErrConflict].
func (s *Store) BeginRotation(ctx context.Context, backend string, value secret.Value, actor string) (_ AdminSecret, err error) {
	defer markUnavailable(&err)
	if _, err := s.keyring(); err != nil {
		return AdminSecret{}, err
	}
	if value.IsZero() {
		return AdminSecret{}, fmt.Errorf("%w: the new admin password is empty", ErrInvalidArgument)
	}
	var a AdminSecret
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		a, err = s.insertSecret(ctx, tx, backend, SlotCandidate, value, actor, nil)
		return err
	})
	if err != nil {
		return AdminSecret{}, fmt.Errorf("record the rotation of %s: %w", backend, err)
	}
	return a, nil
}

// FinishRotation makes candidate the current admin secret of its backend,
// replacing the previous one, and records a `root_rotated` event, in one
// transaction. The backend has taken the candidate's password by now, so
// when the candidate row is gone (another replica rolled it back, taking it
// for abandoned) the password is written as current all the same.
func (s *Store) FinishRotation(ctx context.Context, candidate AdminSecret, actor string) (_ AdminSecret, err error) {
	defer markUnavailable(&err)
	if _, err := s.keyring(); err != nil {
		return AdminSecret{}, err
	}
	now := s.now().UTC()
	var cur AdminSecret
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM admin_secrets WHERE backend = $1 AND slot = 'current'`, candidate.Backend); err != nil {
			return err
		}
		cur = candidate
		cur.Slot, cur.RotatedAt = SlotCurrent, now
		err := tx.QueryRow(ctx, `
			UPDATE admin_secrets SET slot = 'current', rotated_at = $2, version = nextval('admin_secrets_version_seq')
			WHERE id = $1 AND slot = 'candidate' RETURNING version`, candidate.ID, now).Scan(&cur.Version)
		if errors.Is(err, pgx.ErrNoRows) {
			// Rolled back meanwhile by a replica that took this rotation
			// for abandoned, and may have set the current password on the
			// backend again after this one's change landed: which of the
			// two the backend holds is not known here. Both are kept (the
			// DELETE above is undone with the transaction), this one as
			// the candidate again, and the next recovery logs in to find
			// out; neither password is ever dropped unproven.
			return errRolledBackMeanwhile
		}
		if err != nil {
			return err
		}
		return enqueueEvent(ctx, tx, normalizeEvent(Event{Kind: EventRootRotated, Actor: actor, At: now, Details: map[string]string{
			"backend":    candidate.Backend,
			"version":    strconv.FormatInt(cur.Version, 10),
			"started_at": candidate.CreatedAt.UTC().Format(time.RFC3339Nano),
			"kek_id":     cur.KEKID,
		}}))
	})
	if errors.Is(err, errRolledBackMeanwhile) {
		kept, kerr := s.keepCandidate(ctx, candidate, actor)
		if kerr != nil {
			return AdminSecret{}, fmt.Errorf("finish the rotation of %s: %w; keeping its password as the candidate failed too: %w",
				candidate.Backend, err, kerr)
		}
		return kept, fmt.Errorf("finish the rotation of %s: %w", candidate.Backend, err)
	}
	if err != nil {
		return AdminSecret{}, fmt.Errorf("finish the rotation of %s: %w", candidate.Backend, err)
	}
	s.sealer.queued()
	return cur, nil
}

// errRolledBackMeanwhile: FinishRotation found its candidate rolled back by
// another replica; the password is kept as the candidate again.
var errRolledBackMeanwhile = errors.New("another replica rolled the rotation back meanwhile, taking it for abandoned: " +
	"its password is kept as the candidate beside the current one, and the next check logs in with each to find out which the backend holds")

// keepCandidate stores candidate's password as the backend's candidate
// again, beside its current one.
func (s *Store) keepCandidate(ctx context.Context, candidate AdminSecret, actor string) (AdminSecret, error) {
	var kept AdminSecret
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		kept, err = s.insertSecret(ctx, tx, candidate.Backend, SlotCandidate, candidate.Value, actor, nil)
		return err
	})
	return kept, err
}

// AbortRotation removes the candidate with id of backend, which the backend
// never took, and records a `root_rotation_rolled_back` event with reason
// (which must not be secret). A candidate already gone is success.
func (s *Store) AbortRotation(ctx context.Context, backend, id, actor, reason string) (err error) {
	defer markUnavailable(&err)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM admin_secrets WHERE id = $1 AND backend = $2 AND slot = 'candidate'`, id, backend)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return enqueueEvent(ctx, tx, normalizeEvent(Event{Kind: EventRootRotationRolledBack, Actor: actor, At: s.now(),
			Details: map[string]string{"backend": backend, "reason": reason}}))
	})
	if err != nil {
		return fmt.Errorf("roll back the rotation of %s: %w", backend, err)
	}
	s.sealer.queued()
	return nil
}

// rotationLockSpace is the first key of the session advisory lock a rotation
// of one backend holds, from before its candidate is recorded until it is
// finished or rolled back ("cbrr" in ASCII); the backend's hash is the
// second. A broker that dies loses its session and with it the lock, so
// holding the lock and finding a candidate means its rotation was abandoned.
const rotationLockSpace int32 = 0x63627272

// RotationLock is a held lock on the rotation of one backend.
type RotationLock struct {
	conn    *pgxpool.Conn
	backend string
}

// LockRotation takes the lock on backend's rotation without waiting: false
// when another replica (or this one) holds it. The lock is a session
// advisory lock on a connection of the reaper's pool with no transaction
// open, since the backend is called meanwhile; Unlock releases both.
func (s *Store) LockRotation(ctx context.Context, backend string) (_ *RotationLock, locked bool, err error) {
	defer markUnavailable(&err)
	conn, err := s.forReaper().pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lock the rotation of %s: %w", backend, err)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, rotationLockSpace, backendKey(backend)).Scan(&locked); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("lock the rotation of %s: %w", backend, err)
	}
	if !locked {
		conn.Release()
		return nil, false, nil
	}
	return &RotationLock{conn: conn, backend: backend}, true, nil
}

// Unlock releases the lock.
func (l *RotationLock) Unlock(ctx context.Context) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	if _, err := l.conn.Exec(uctx, `SELECT pg_advisory_unlock($1, $2)`, rotationLockSpace, backendKey(l.backend)); err != nil {
		_ = l.conn.Conn().Close(uctx) // closing the session releases it then
	}
	l.conn.Release()
}

// RewrapResult counts what [Store.Rewrap] did.
type RewrapResult struct {
	// KEKID is the newest key's id, which every data key is wrapped by now.
	KEKID string
	// Rewrapped data keys were wrapped by an older key.
	Rewrapped int
	// Unchanged were wrapped by the newest key already.
	Unchanged int
}

// Rewrap wraps the data key of every admin secret that an older key
// wraps under the newest key, each row in its own transaction (all or
// nothing per row), and records a `secrets_rewrapped` event. The secrets'
// ciphertexts do not change. It is idempotent: a second run rewraps
// nothing. Afterwards the older keys can be removed from store.kek.
func (s *Store) Rewrap(ctx context.Context, actor string) (_ RewrapResult, err error) {
	defer markUnavailable(&err)
	keys, err := s.keyring()
	if err != nil {
		return RewrapResult{}, err
	}
	res := RewrapResult{KEKID: keys.Newest()}
	rows, err := s.pool.Query(ctx, `SELECT id, kek_id FROM admin_secrets ORDER BY id`)
	if err != nil {
		return res, fmt.Errorf("rewrap admin secrets: %w", err)
	}
	ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var v [2]string
		return v, r.Scan(&v[0], &v[1])
	})
	if err != nil {
		return res, fmt.Errorf("rewrap admin secrets: %w", err)
	}
	for _, row := range ids {
		if row[1] == keys.Newest() {
			res.Unchanged++
			continue
		}
		done, err := s.rewrapOne(ctx, row[0])
		if err != nil {
			return res, fmt.Errorf("rewrap admin secrets (%d rewrapped so far): %w", res.Rewrapped, err)
		}
		if done {
			res.Rewrapped++
		} else {
			res.Unchanged++
		}
	}
	err = s.RecordEvent(ctx, Event{Kind: EventSecretsRewrapped, Actor: actor, Details: map[string]string{
		"kek_id": res.KEKID, "rewrapped": strconv.Itoa(res.Rewrapped), "unchanged": strconv.Itoa(res.Unchanged),
	}})
	return res, err
}

// rewrapOne rewraps the data key of the secret with id under the newest
// key, in one transaction; false when it is wrapped by it already (or gone).
func (s *Store) rewrapOne(ctx context.Context, id string) (bool, error) {
	done := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var (
			backend string
			sl      sealed
		)
		err := tx.QueryRow(ctx, `SELECT backend, kek_id, wrapped_key FROM admin_secrets WHERE id = $1 FOR UPDATE`, id).
			Scan(&backend, &sl.kekID, &sl.wrappedKey)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // rotated away meanwhile
		}
		if err != nil || sl.kekID == s.keys.Newest() {
			return err
		}
		dataKey, err := s.keys.unwrap(id, backend, sl)
		if err != nil {
			return err
		}
		defer clear(dataKey)
		kekID, wrapped, err := s.keys.wrap(id, backend, dataKey)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE admin_secrets SET kek_id = $2, wrapped_key = $3 WHERE id = $1`, id, kekID, wrapped)
		done = err == nil
		return err
	})
	return done, err
}
