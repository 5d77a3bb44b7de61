// Package redis is the Redis backend: it issues short-lived ACL users with the
// key, channel and command rules a credbroker role names, on a standalone
// server or on every node of a Redis Cluster, and removes them again. It needs
// Redis 7.0 or later (selectors, %R~ key permissions and ACL DRYRUN).
//
// [Driver] and [Plugin] implement plugin contract v2 in the package's own
// types ([Connection], [Role]); [New] returns the driver the broker lists,
// and the broker opens it through [plugins.Open], whose decorator redacts the
// admin password ([Plugin.Secrets]) and the issued one from every error.
//
// # Configuration
//
// A backend's connection section names one server (addr) or the seeds of a
// cluster (addrs), never both; the admin password is a reference, never
// inline:
//
//	connection:
//	  addr: cache.internal:6379          # or addrs: [node1:6379, node2:6379, node3:6379]
//	  username: credbroker               # the admin's ACL user; default: the default user
//	  password: env:CACHE_REDIS_PASSWORD # optional
//	  tls: {enabled: true, ca_file: /etc/credbroker/redis-ca.pem, server_name: cache.internal}
//
// A role's `redis:` section lists ACL rules, one rule an item, as ACL SETUSER
// takes them:
//
//	redis:
//	  rules: ["~orders:*", "&orders:*", "%R~cache:*", "+@read", "+@write", "-@dangerous",
//	          "(~audit:* +xadd)"]
//
// Rules that would weaken or undo the credential credbroker sets up are
// configuration errors naming their index: nopass, >password, <password,
// #hash, !hash, resetpass, on, off and reset. So are clearselectors, which
// cannot widen anything but silently drops the selectors listed before it
// (every user starts with none, so it is always a mistake), and
// skip-sanitize-payload, which lets the user RESTORE payloads Redis does not
// check.
//
// # Refused commands
//
// A holder must not be able to make users of its own, read another user's
// password or the admin's, or keep its user from being revoked: whatever it
// did then would outlive its lease. So the categories +@admin, +@dangerous
// and +@all (allcommands) are configuration errors, and so is any rule that
// grants, by name, one of: ACL (but WHOAMI, CAT, GENPASS and HELP), CONFIG
// (but HELP: CONFIG GET reveals requirepass), MODULE, DEBUG, SHUTDOWN,
// REPLICAOF, SLAVEOF, FAILOVER, MIGRATE, SAVE, BGSAVE, BGREWRITEAOF,
// MONITOR, SYNC, PSYNC, REPLCONF, CLIENT KILL, LIST, PAUSE, UNPAUSE, UNBLOCK
// and NO-EVICT, the CLUSTER subcommands that change the cluster, and
// SLOWLOG GET, with their subcommand (+config|get) or first-argument
// (+debug|reload) forms. Other categories hold some of them (+@slow holds
// CONFIG GET, +@write holds MIGRATE), so ParseRole plays each rule list (the
// user's own, and each selector's) in order over a built-in table of those
// commands' Redis 7.0 categories, and refuses a rule list that ends up
// granting one, naming the rule: "+@read", "+@write", "-@dangerous" passes,
// "+@read", "+@write" does not. At start [Plugin.CheckRole] asks the live
// server, whose categories may hold more: it makes a switched-off user with
// the role's rules, asks ACL DRYRUN whether it may run each refused command
// (on a server without ACL DRYRUN, it plays the rules over what ACL CAT
// lists), and deletes it; a role that may is a start error naming the
// commands. At start the broker also has the server itself check each
// role's rules, so a misspelt command or category fails then, not at the
// first issue.
//
// An admin connection in plain text (tls.enabled unset) to a server off
// loopback is a warning at start ([Plugin.Warnings]).
//
// # What happens on the server
//
// Create runs, on every node:
//
//	ACL SETUSER <name> reset on #<sha256 of the password> resetkeys resetchannels -@all <rules…>
//
// The #<hash> form means the plaintext password never travels to Redis and
// is never stored by it, as the PostgreSQL backend sends only a SCRAM
// verifier. Before that, Create checks on every node that the user does not
// exist; if any node fails afterwards, it deletes the user from every node
// and returns the error, so a user is never left half-made. Usernames come
// from [plugins.NewUsername]: the cb_ prefix, at most 64 bytes (Redis has no
// limit; 64 is credbroker's choice). A username without the prefix is never
// created, changed or deleted, and ListManaged is ACL USERS filtered by it.
//
// Revoke runs ACL DELUSER on every node, which also closes every connection
// the user has open. A user that is already gone is success; a node that
// cannot be reached makes Revoke fail after deleting the user everywhere
// else, so the reaper retries until every node is done. Revoke needs nothing
// but the username, so Create returns no State: a lease whose role was
// removed from the config, a lease written before contract v2 and an orphan
// the sweep finds all revoke the same way, and nothing needs upgrading.
//
// Where a node keeps its users in an ACL file (CONFIG GET aclfile is not
// empty), Create and Revoke run ACL SAVE on it, so a restart neither brings
// back a revoked user nor loses a live one. Without an ACL file, users live
// in memory only: a restart removes every issued user, and its credentials
// stop working before their leases end.
//
// # Expiry
//
// Redis users have no expiry of their own. Renew only checks that the user
// still exists on every node; the broker's reaper is the only thing that
// removes a user when its lease ends, so keep it running.
//
// # Redis Cluster
//
// ACL users are not shared between cluster nodes, nor replicated to
// replicas. With addrs, every operation first asks the seeds, in order, for
// CLUSTER NODES, then works on every node listed, primaries and replicas,
// including nodes marked as failing. Nodes added to the cluster later do not
// have the users issued before. Nodes are dialled at the addresses CLUSTER
// NODES announces, so with TLS their certificates must name those addresses,
// or all carry tls.server_name. A cluster client also reads the topology, so
// roles for cluster workloads need +cluster|slots (or +cluster|shards,
// whichever the client uses; go-redis also reads COMMAND, so +command).
//
// # The credential
//
// The URI is redis://<user>:<password>@host:port (rediss:// with TLS), for
// the first address of the connection section. Env holds REDIS_URL,
// REDIS_HOST, REDIS_PORT, REDIS_USERNAME and REDISCLI_AUTH, the password,
// which redis-cli reads; redis-cli logs in as the default user unless told
// the name, so run it as `redis-cli --user "$REDIS_USERNAME"` or
// `redis-cli -u "$REDIS_URL"`. Fields hold host, port and username, and for
// a cluster addrs, the seeds, comma-separated.
//
// # credbroker connect and dev
//
// [Driver.Describe] declares redis-cli as the client `credbroker connect`
// opens (-h $REDIS_HOST -p $REDIS_PORT --user $REDIS_USERNAME; the password
// stays in REDISCLI_AUTH), and the demo backend of `credbroker dev`: the
// Redis at $CREDBROKER_DEV_REDIS_ADDR (default 127.0.0.1:6379), whose
// default user needs no password, with a role that may read and write
// demo:* keys.
//
// # What the admin user needs
//
// The admin needs the commands credbroker runs and nothing else, for
// example:
//
//	ACL SETUSER credbroker on >… +ping +acl|setuser +acl|deluser +acl|getuser +acl|users
//	    +acl|whoami +acl|dryrun +acl|save +config|get +cluster|nodes
//
// Check proves it has them: PING, ACL WHOAMI, ACL USERS and CONFIG GET
// aclfile run, and ACL DRYRUN says the admin may run the rest.
package redis
