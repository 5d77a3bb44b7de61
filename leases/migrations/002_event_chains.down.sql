DROP INDEX lease_events_chain_idx;
ALTER TABLE lease_events DROP COLUMN chain;
