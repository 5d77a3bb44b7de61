ALTER TABLE leases DROP COLUMN subject_name;
