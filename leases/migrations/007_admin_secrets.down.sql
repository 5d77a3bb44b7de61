-- Reverses 007_admin_secrets. A stored admin secret is, once the broker has
-- rotated a backend's root, the only copy of that backend's admin password:
-- dropping it would lock every broker out. The down migration refuses while
-- any is stored; set the backend's password by hand (and its reference in
-- the config), delete its rows, then migrate down.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM admin_secrets) THEN
        RAISE EXCEPTION 'admin_secrets still holds admin passwords the broker rotated (the only copy of them); set each backend''s admin password by hand and point its config reference at it, delete the rows, then migrate down';
    END IF;
END $$;
DROP TABLE admin_secrets;
DROP SEQUENCE admin_secrets_version_seq;
