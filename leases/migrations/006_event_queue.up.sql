-- 006_event_queue: events are first written to lease_event_queue, in the
-- transaction that changes their lease (one INSERT, no lock, no read of the
-- chain), and a background sealer moves them into lease_events in batches:
-- under one advisory lock across replicas it gives each its seq, prev_hash
-- and hash, inserts it and deletes it from the queue, in one transaction.
-- A queued event is committed with its lease; one whose broker died before
-- sealing it is sealed by whichever replica seals next. Nothing reads the
-- queue but the sealer: every reader of the history seals first.
CREATE TABLE lease_event_queue (
    id       bigserial   PRIMARY KEY,
    lease_id text,
    kind     text        NOT NULL CONSTRAINT lease_event_queue_kind_check CHECK (kind <> ''),
    actor    text        NOT NULL DEFAULT '',
    at       timestamptz NOT NULL,
    details  jsonb       NOT NULL DEFAULT '{}'::jsonb
);
