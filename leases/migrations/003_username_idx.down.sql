DROP INDEX leases_username_idx;
