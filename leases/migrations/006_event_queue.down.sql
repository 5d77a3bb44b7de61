-- Events still queued would be lost: the previous release never reads the
-- queue. Seal them first (start this release once, or export), then migrate
-- down; the down migration refuses while any are left.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM lease_event_queue) THEN
        RAISE EXCEPTION 'lease_event_queue still holds events not yet sealed into lease_events; start credbroker once to seal them, then migrate down';
    END IF;
END $$;
DROP TABLE lease_event_queue;
