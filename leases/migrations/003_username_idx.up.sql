-- The sweep asks whether any lease, of any backend, accounts for a username.
CREATE INDEX leases_username_idx ON leases (username);
