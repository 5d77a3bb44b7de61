-- 007_revoking_since: when a lease last became REVOKING, so the reaper can
-- export how long the oldest one has waited (a revoke that keeps failing
-- leaves its lease REVOKING; retries do not move this). Leases already
-- REVOKING get the migration's time: their wait is counted from now on.
ALTER TABLE leases ADD COLUMN revoking_since timestamptz;
UPDATE leases SET revoking_since = now() WHERE state = 'REVOKING';
