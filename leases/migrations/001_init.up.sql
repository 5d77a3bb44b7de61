-- 001_init: the lease table and the hash-chained, append-only event log.
--
-- A lease keeps everything revocation needs (backend, plugin, username), so a
-- role removed from the configuration later can still be revoked. No column
-- ever holds a password.

CREATE TABLE leases (
    id              text        PRIMARY KEY,
    role            text        NOT NULL,
    backend         text        NOT NULL,
    plugin          text        NOT NULL,
    username        text        NOT NULL,
    state           text        NOT NULL
        CONSTRAINT leases_state_check CHECK (state IN ('PENDING', 'ACTIVE', 'REVOKING', 'REVOKED')),
    subject         text        NOT NULL DEFAULT '',
    issuer          text        NOT NULL DEFAULT '',
    break_glass     boolean     NOT NULL DEFAULT false,
    renewable       boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    max_expires_at  timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoke_reason   text        NOT NULL DEFAULT '',
    revoke_attempts integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error      text        NOT NULL DEFAULT '',

    CONSTRAINT leases_expiry_check CHECK (expires_at <= max_expires_at),
    CONSTRAINT leases_revoked_at_check CHECK ((state = 'REVOKED') = (revoked_at IS NOT NULL)),
    CONSTRAINT leases_retry_check CHECK (state <> 'REVOKING' OR next_attempt_at IS NOT NULL)
);

-- Two leases must never name the same backend user: revoking one would delete
-- the other's credential.
CREATE UNIQUE INDEX leases_backend_username_key ON leases (backend, username);

-- The reaper's due query is three disjuncts, each served by its own small
-- partial index (combined with a BitmapOr).
CREATE INDEX leases_active_expires_idx ON leases (expires_at) WHERE state = 'ACTIVE';
CREATE INDEX leases_pending_created_idx ON leases (created_at) WHERE state = 'PENDING';
CREATE INDEX leases_revoking_next_idx ON leases (next_attempt_at) WHERE state = 'REVOKING';

-- Listing: a holder's own leases, and every lease (admins), in keyset order.
CREATE INDEX leases_holder_idx ON leases (issuer, subject, created_at, id);
CREATE INDEX leases_created_idx ON leases (created_at, id);

-- lease_events is the audit history. Each row's hash covers the previous
-- row's hash and its own contents, so altering or removing a row breaks the
-- chain (see leases.Store.VerifyChain). lease_id is NULL for events that
-- concern no lease (a `denied` request) and has no foreign key: the history
-- outlives lease rows.
CREATE TABLE lease_events (
    seq       bigserial   PRIMARY KEY,
    lease_id  text,
    kind      text        NOT NULL CONSTRAINT lease_events_kind_check CHECK (kind <> ''),
    actor     text        NOT NULL DEFAULT '',
    at        timestamptz NOT NULL,
    details   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    prev_hash bytea       NOT NULL,
    hash      bytea       NOT NULL CONSTRAINT lease_events_hash_check CHECK (length(hash) = 32)
);

CREATE INDEX lease_events_lease_idx ON lease_events (lease_id, seq) WHERE lease_id IS NOT NULL;
CREATE INDEX lease_events_at_idx ON lease_events (at);

CREATE FUNCTION lease_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'lease_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER lease_events_no_update_delete
    BEFORE UPDATE OR DELETE ON lease_events
    FOR EACH ROW EXECUTE FUNCTION lease_events_append_only();

CREATE TRIGGER lease_events_no_truncate
    BEFORE TRUNCATE ON lease_events
    FOR EACH STATEMENT EXECUTE FUNCTION lease_events_append_only();
