-- Reverses 001_init. This drops the audit history too: export it first.
DROP TABLE IF EXISTS lease_events;
DROP FUNCTION IF EXISTS lease_events_append_only();
DROP TABLE IF EXISTS leases;
