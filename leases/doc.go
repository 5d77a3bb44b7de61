// Package leases owns credbroker's lease store in PostgreSQL and the reaper
// that revokes what is due.
//
// A lease is one issued backend user: which role, backend and plugin made it,
// its username, who holds it and when it ends. The store never holds a
// password. Every lease keeps what revocation needs (backend, plugin,
// username, and the plugin's own State, see below), so a role later removed
// from the configuration can still be revoked exactly as before.
//
// # Plugin state
//
// Contract v2 plugins return an opaque, non-secret State from Create (the
// revocation statements of the role, a marker name); [Store.Activate] keeps
// it beside the lease, a renewal that returns one replaces it, and the
// reaper hands it back to Revoke with the lease's role and the role's
// current spec. Leases written before contract v2 have none (NULL):
// [Reaper.UpgradeStates], run once at start, asks each plugin that kept
// markers on the backend to derive it, and stores the result.
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
//   - [Store.Activate] marks it ACTIVE and records the `issued` event in one
//     statement once the plugin has created the user.
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
// # No backend call inside a store transaction
//
// A backend may stall for as long as its timeout; a store transaction that
// waited on it would hold a connection and row locks meanwhile, and enough
// of them exhaust the pool for everyone. So no transaction of this package
// is open while a plugin is called: [Store.Renew] reads the lease, calls
// the backend, then compare-and-sets the new expiry with its event in one
// short transaction; the reaper claims in one statement, revokes, then
// records; a sweep holds its per-backend lock as a session advisory lock on
// an idle connection. The reaper and the sweep use a pool of their own
// (Config.ReaperMaxConns), so callers exhausting the store's pool cannot stop
// expiry.
//
// # Denials
//
// Refused requests are not written as they happen: [Store.CountDenial]
// counts them in memory, and one `denied` event per identity, role and
// minute is appended later, so a flood of refusals adds a bounded number of
// rows to the append-only history.
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
// lease_events is append-only (a trigger rejects UPDATE, DELETE and TRUNCATE) and
// hash-chained. The history is split into 16 chains: an event goes to the chain
// its lease id picks (an event without a lease, by its actor), so one lease's
// history is always one chain.
//
// Chaining is kept off the request path. A lease change writes its event to
// lease_event_queue in the same statement or transaction (so the event is as
// durable as the change), and a background sealer in every replica moves
// queued events into lease_events in batches: under one advisory lock across
// replicas, and each chain's own lock (which a replica of an earlier release
// appending directly also takes), it reads each chain's head and computes
// every event's seq, prev_hash and hash exactly as an append would. A broker
// that dies before sealing leaves its events queued for any replica's sealer;
// every reader of the history ([Store.Events], [Store.VerifyChain],
// [Store.Checkpoint]) seals first. See seal.go. For each event
//
//	hash = SHA-256(prev_hash || canonical(event))
//
// where prev_hash is the hash of the previous event of the same chain (empty for
// a chain's first event) and canonical(event) is the concatenation of the
// following fields, each a big-endian uint32 byte length followed by the bytes:
// the decimal seq, the lease id ("" when there is none), the kind, the actor, the
// time in UTC as RFC 3339 with nanoseconds (Go's time.RFC3339Nano; times are
// stored with microsecond precision), then the number of details as a big-endian
// uint32 and each detail's key and value in ascending key order.
//
// Removing a chain's newest events cannot be detected from that chain alone, so
// the reaper appends a `checkpoint` event on every pass in which anything was
// appended: its details record the newest seq and hash of every chain.
// Store.VerifyChain (and a ChainVerifier over an export) recomputes every chain
// and checks every checkpoint against the events it names, and names the first
// event that does not match. What was appended after the newest checkpoint is
// covered only once the next one is written (one reaper interval); anchoring the
// newest checkpoint elsewhere (an export) covers deleting the checkpoints too.
package leases
