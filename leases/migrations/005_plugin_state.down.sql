-- Reverses 005_plugin_state. The plugins' states are lost: a lease revoked
-- afterwards by a release before contract v2 relies on the markers on the
-- backend again.
DROP INDEX IF EXISTS leases_plugin_state_upgrade_idx;
ALTER TABLE leases DROP COLUMN plugin_state;
