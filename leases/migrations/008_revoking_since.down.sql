ALTER TABLE leases DROP COLUMN revoking_since;
