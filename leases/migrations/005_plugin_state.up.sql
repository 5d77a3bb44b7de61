-- 005_plugin_state: what a lease's plugin needs to revoke and renew it (the
-- contract v2 State: revocation statements, a marker name), kept beside the
-- lease so that nothing a revoke needs lives in process memory or only in a
-- marker on the backend. It is never secret.
--
-- NULL marks a lease written before contract v2 (or by a replica still on
-- the previous release): the broker derives its state once, at start, from
-- what the backend's markers hold. Leases written since always store a
-- value, empty when the plugin keeps nothing. The partial index finds the
-- leases still to upgrade; it stays empty once they are done.
ALTER TABLE leases ADD COLUMN plugin_state bytea
    CONSTRAINT leases_plugin_state_check CHECK (octet_length(plugin_state) <= 16384);
CREATE INDEX leases_plugin_state_upgrade_idx ON leases (id)
    WHERE plugin_state IS NULL AND state <> 'REVOKED';
