-- 004_subject_name: who a person holding a lease is, as their token said
-- (the email or preferred_username claim), next to the opaque subject. Empty
-- for workloads and for leases issued before this migration.
ALTER TABLE leases ADD COLUMN subject_name text NOT NULL DEFAULT ''
    CONSTRAINT leases_subject_name_check CHECK (octet_length(subject_name) <= 256);
