// Package leases owns credbroker's lease store in PostgreSQL and the reaper
// that revokes what is due.
//
// A lease is one issued backend user: which role, backend and plugin made it,
// its username, who holds it and when it ends. The store never holds a
// password. Every lease keeps what revocation needs (backend, plugin,
// username), so a role later removed from the configuration can still be
// revoked.
//
// # Schema
//
// The schema is a set of numbered SQL files in migrations/, embedded in the
// binary and applied by [Open] with golang-migrate. golang-migrate holds a
// PostgreSQL advisory lock while it migrates, so any number of replicas may
// start at once.
//
// # States
//
// A lease moves PENDING → ACTIVE → REVOKING → REVOKED:
//
//   - [Store.CreatePending] records the lease before the backend is touched.
//   - [Store.Activate] marks it ACTIVE and appends the `issued` event in one
//     transaction once the plugin has created the user.
//   - [Store.Fail] hands a lease whose issue failed to the reaper.
//   - The [Reaper] claims expired ACTIVE leases, PENDING leases older than a
//     grace period (the issuer died mid-issue) and REVOKING leases whose retry
//     time has come, revokes them through the plugin and marks them REVOKED.
//     A failed revoke is retried with capped exponential backoff, forever.
//
// If the reaper takes a PENDING lease while its issue is still running,
// [Store.Activate] returns [ErrConflict] and puts the lease back in the
// reaper's queue, so a backend user created after the reaper's revoke is
// revoked as well: no backend user outlives its lease record.
//
// # Claims
//
// The reaper claims due leases in one UPDATE over a `FOR UPDATE SKIP LOCKED`
// selection, setting them REVOKING with next_attempt_at = now + ClaimTimeout.
// The claimed next_attempt_at is a fencing token: a revoke's outcome is only
// recorded while the lease still carries it, so replicas sharing the table
// never record a lease twice. All time comparisons use the injected clock as
// a bind parameter, never SQL now().
//
// # Events
//
// lease_events is append-only (a trigger rejects UPDATE, DELETE and
// TRUNCATE) and hash-chained. Appends take a transaction-scoped advisory
// lock, so writers in every replica extend one chain. For each event
//
//	hash = SHA-256(prev_hash || canonical(event))
//
// where prev_hash is the previous event's hash (empty for the first event)
// and canonical(event) is the concatenation of the following fields, each a
// big-endian uint32 byte length followed by the bytes: the decimal seq, the
// lease id ("" when there is none), the kind, the actor, the time in UTC as
// RFC 3339 with nanoseconds (Go's time.RFC3339Nano; times are stored with
// microsecond precision), then the number of details as a big-endian uint32
// and each detail's key and value in ascending key order. [Store.VerifyChain]
// recomputes the chain and names the first event that does not match.
// Removing the newest events cannot be detected from the chain alone;
// anchoring the newest hash elsewhere (an export) covers that.
package leases
