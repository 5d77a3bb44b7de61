package leases

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// The store's side of the reaper. A claim sets a lease REVOKING with
// next_attempt_at = until; that value is the claim's fencing token, and an
// outcome is recorded only while the lease still carries it. Whoever voids a
// claim (Activate or Fail putting the lease back, a user's revoke, a replica
// re-claiming after ClaimTimeout) changes next_attempt_at, and the old
// holder's outcome is dropped; revoking twice is harmless, recording a stale
// outcome is not. revoking_since is set when a lease becomes REVOKING and
// kept by retries and re-claims: how long the oldest has waited is a gauge.

// claimDue claims up to limit due leases in one statement: ACTIVE leases
// expired at now, PENDING leases created at or before pendingBefore and
// REVOKING leases whose next attempt has come. Rows other replicas hold are
// skipped. The reason is set as the lease is taken.
func (s *Store) claimDue(ctx context.Context, now, pendingBefore, until time.Time, limit int) ([]Lease, error) {
	rows, err := s.pool.Query(ctx, `
		WITH due AS (
			SELECT id AS due_id, state AS prev_state
			FROM leases
			WHERE (state = 'ACTIVE' AND expires_at <= $1)
			   OR (state = 'PENDING' AND created_at <= $2)
			   OR (state = 'REVOKING' AND next_attempt_at <= $1)
			ORDER BY CASE state
				WHEN 'ACTIVE' THEN expires_at
				WHEN 'PENDING' THEN created_at
				ELSE next_attempt_at END, id
			LIMIT $4
			FOR UPDATE SKIP LOCKED
		)
		UPDATE leases
		SET state = 'REVOKING',
			next_attempt_at = $3,
			revoking_since = CASE WHEN due.prev_state = 'REVOKING' THEN COALESCE(leases.revoking_since, $1) ELSE $1 END,
			revoke_reason = CASE due.prev_state
				WHEN 'ACTIVE' THEN 'expired'
				WHEN 'PENDING' THEN 'abandoned issue'
				ELSE COALESCE(NULLIF(leases.revoke_reason, ''), 'expired') END
		FROM due
		WHERE leases.id = due.due_id
		RETURNING `+leaseColumns,
		now, pendingBefore, until, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Lease, error) { return scanLease(r) })
}

// claimOne claims one lease for an immediate revoke, whatever its expiry and
// whoever holds it — or, when holder is not nil, only if it is held by that
// issuer and subject. A REVOKED lease, or one held by someone else, is
// returned unchanged with claimed false. A lease already REVOKING keeps its
// first reason.
func (s *Store) claimOne(ctx context.Context, id, reason string, until time.Time, holder *Holder) (l Lease, claimed bool, err error) {
	anyone := holder == nil
	if anyone {
		holder = &Holder{}
	}
	l, err = scanLease(s.pool.QueryRow(ctx, `
		UPDATE leases
		SET state = 'REVOKING',
			next_attempt_at = $3,
			revoking_since = CASE WHEN state = 'REVOKING' THEN COALESCE(revoking_since, $7) ELSE $7 END,
			revoke_reason = CASE WHEN state = 'REVOKING' AND revoke_reason <> '' THEN revoke_reason ELSE $2 END
		WHERE id = $1 AND state <> 'REVOKED' AND ($4 OR (issuer = $5 AND subject = $6))
		RETURNING `+leaseColumns,
		id, reason, until, anyone, holder.Issuer, holder.Subject, s.now()))
	if err == nil {
		return l, true, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return Lease{}, false, err
	}
	l, err = s.Get(ctx, id)
	return l, false, err
}

// Holder names who a lease was issued to.
type Holder struct{ Issuer, Subject string }

// finishRevoked records a successful revoke of a claimed lease: REVOKED,
// revoked_at = now, and a `revoked` event, in one statement. It returns
// errLostClaim if the lease no longer carries the claim.
func (s *Store) finishRevoked(ctx context.Context, claimed Lease, now time.Time, actor string) (Lease, error) {
	out, err := s.updateRecording(ctx, `
		UPDATE leases
		SET state = 'REVOKED', revoked_at = $3, next_attempt_at = NULL, last_error = ''
		WHERE id = $1 AND state = 'REVOKING' AND next_attempt_at = $2`,
		[]any{claimed.ID, claimed.NextAttemptAt, now},
		// The claim fences every other writer, so the claimed lease is the
		// row this updates.
		Event{LeaseID: claimed.ID, Kind: "revoked", Actor: actor, At: now, Details: map[string]string{
			"reason":   claimed.RevokeReason,
			"role":     claimed.Role,
			"backend":  claimed.Backend,
			"plugin":   claimed.Plugin,
			"username": claimed.Username,
			"attempts": strconv.Itoa(claimed.RevokeAttempts + 1),
		}})
	if errors.Is(err, ErrNotFound) {
		return Lease{}, errLostClaim
	}
	if err != nil {
		return Lease{}, fmt.Errorf("record revoke of lease %s: %w", claimed.ID, err)
	}
	return out, nil
}

// finishFailed records a failed revoke of a claimed lease: one more attempt,
// the next at next, the (already sanitized) error, and a `revoke_failed`
// event, in one statement. It returns errLostClaim if the lease no longer
// carries the claim.
func (s *Store) finishFailed(ctx context.Context, claimed Lease, now, next time.Time, lastErr, actor string) (Lease, error) {
	out, err := s.updateRecording(ctx, `
		UPDATE leases
		SET revoke_attempts = revoke_attempts + 1, next_attempt_at = $3, last_error = $4
		WHERE id = $1 AND state = 'REVOKING' AND next_attempt_at = $2`,
		[]any{claimed.ID, claimed.NextAttemptAt, next, lastErr},
		Event{LeaseID: claimed.ID, Kind: "revoke_failed", Actor: actor, At: now, Details: map[string]string{
			"reason":          claimed.RevokeReason,
			"backend":         claimed.Backend,
			"username":        claimed.Username,
			"error":           lastErr,
			"attempts":        strconv.Itoa(claimed.RevokeAttempts + 1),
			"next_attempt_at": next.Format(time.RFC3339Nano),
		}})
	if errors.Is(err, ErrNotFound) {
		return Lease{}, errLostClaim
	}
	if err != nil {
		return Lease{}, fmt.Errorf("record failed revoke of lease %s: %w", claimed.ID, err)
	}
	return out, nil
}

// releaseClaims makes claimed leases due at now again, so any replica takes
// them at once instead of after ClaimTimeout. Leases whose claim has since
// changed are left alone.
func (s *Store) releaseClaims(ctx context.Context, ids []string, fence, now time.Time) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE leases SET next_attempt_at = $3
		WHERE id = ANY($1) AND state = 'REVOKING' AND next_attempt_at = $2`,
		ids, fence, now)
	if err != nil {
		return fmt.Errorf("release %d claimed leases: %w", len(ids), err)
	}
	return nil
}

// leaseStats counts what the reaper's gauges show.
type leaseStats struct {
	due     int64
	byState map[State]int64
	// unsealedAge is how long the oldest queued event has waited for the
	// sealer; 0 when none waits.
	unsealedAge time.Duration
	// revokingAge is how long the oldest REVOKING lease has been REVOKING;
	// 0 when none is.
	revokingAge time.Duration
}

// stats counts due leases and live leases by state, and finds how long the
// oldest event not yet sealed and the oldest REVOKING lease have waited.
// Each count is one of the reaper's partial indexes, and the oldest queued
// event is the queue's first by id; REVOKED leases, which pile up, are not
// counted. The REVOKING leases are read through their partial index, like
// their count: they are the backlog, not the history.
func (s *Store) stats(ctx context.Context, now, pendingBefore time.Time) (leaseStats, error) {
	var dueActive, duePending, dueRevoking, pending, active, revoking int64
	var oldestUnsealed, oldestRevoking *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT
			(SELECT count(*) FROM leases WHERE state = 'ACTIVE' AND expires_at <= $1),
			(SELECT count(*) FROM leases WHERE state = 'PENDING' AND created_at <= $2),
			(SELECT count(*) FROM leases WHERE state = 'REVOKING' AND next_attempt_at <= $1),
			(SELECT count(*) FROM leases WHERE state = 'PENDING'),
			(SELECT count(*) FROM leases WHERE state = 'ACTIVE'),
			(SELECT count(*) FROM leases WHERE state = 'REVOKING'),
			(SELECT at FROM lease_event_queue ORDER BY id LIMIT 1),
			(SELECT min(revoking_since) FROM leases WHERE state = 'REVOKING')`,
		now, pendingBefore).Scan(&dueActive, &duePending, &dueRevoking, &pending, &active, &revoking, &oldestUnsealed, &oldestRevoking)
	if err != nil {
		return leaseStats{}, fmt.Errorf("count leases: %w", err)
	}
	var unsealedAge time.Duration
	if oldestUnsealed != nil {
		unsealedAge = max(now.Sub(*oldestUnsealed), 0)
	}
	var revokingAge time.Duration
	if oldestRevoking != nil {
		revokingAge = max(now.Sub(*oldestRevoking), 0)
	}
	return leaseStats{
		due:         dueActive + duePending + dueRevoking,
		unsealedAge: unsealedAge,
		revokingAge: revokingAge,
		byState: map[State]int64{
			StatePending:  pending,
			StateActive:   active,
			StateRevoking: revoking,
		},
	}, nil
}
