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
// # Plugins
//
// Backends are opened in one place, openRuntime, through plugins.Open, which
// wraps each plugin in the sanitizing decorator: no handler sanitizes a
// plugin's error again. Every role is checked with CheckRole at start and on
// reload. Issue hands the plugin the role's name and spec and keeps the State
// Create returns with the lease; renew and revoke (the API's, the reaper's)
// hand it back with the role's current spec, or none when the role is gone
// or now on another backend. At start, before serving, the reaper derives
// the State of leases written before contract v2 (leases.Reaper.UpgradeStates).
//
// # Errors
//
// One function, toConnect, turns internal errors into Connect codes. A lease
// someone else holds is reported exactly like one that does not exist.
package broker
