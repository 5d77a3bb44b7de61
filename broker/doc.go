// Package broker is credbroker's server: it loads and validates the config
// file, decides policy, serves the Connect services and wires the lease store,
// the reaper, the plugins and the token verifier together.
//
// # Issuing
//
// IssueCredential follows the crash-safe order of DESIGN.md §4: the lease is
// written PENDING before the backend is touched, and only marked ACTIVE (with
// its `issued` event, in one transaction) after the plugin made the user. A
// failure in between hands the lease to the reaper, which deletes whatever
// half-exists. If the lease store is down nothing is issued.
//
// # Errors
//
// One function, toConnect, turns internal errors into Connect codes. A lease
// someone else holds is reported exactly like one that does not exist.
package broker
