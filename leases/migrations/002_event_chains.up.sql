-- The event history is split into a fixed number of hash chains, chosen by
-- lease id, so that concurrent appends for different leases do not queue on
-- one lock. Events recorded before this migration form chain 0, which they
-- already were.
ALTER TABLE lease_events ADD COLUMN chain smallint NOT NULL DEFAULT 0
    CONSTRAINT lease_events_chain_check CHECK (chain >= 0);
CREATE INDEX lease_events_chain_idx ON lease_events (chain, seq);
