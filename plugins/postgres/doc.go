// Package postgres is the PostgreSQL backend: it issues short-lived login roles
// with the grants a credbroker role names, and removes them again. [New]
// returns its driver for the broker; [Driver] and [Plugin] implement the
// plugin contract in the package's own types ([Connection], [Role]).
//
// # Configuration
//
// A backend's connection section names the admin connection string by
// reference, never inline:
//
//	connection:
//	  dsn: env:ORDERS_PG_ADMIN_DSN   # URL or keyword/value form
//	  max_conns: 4                   # admin pool size
//	  host: orders-db.internal       # optional: what issued credentials point at,
//	  port: 5432                     # when it differs from the admin DSN
//	  database: orders
//
// A role's `postgres:` section says what an issued user may do, in one of
// three forms: membership of group roles the DBAs own (preferred), explicit
// grants, or Vault-style creation statements:
//
//	postgres:
//	  member_of: [orders_read]
//	  grants:
//	    - {privileges: [SELECT], schema: public, tables: ["*"]}
//	# or
//	postgres:
//	  creation_statements:
//	    - CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'
//	    - GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}"
//	  revocation_statements:
//	    - REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{{name}}"
//
// # What happens on the server
//
// Create runs one transaction: CREATE ROLE … LOGIN PASSWORD with a SCRAM-SHA-256
// verifier computed in the broker, so the plaintext password never travels to
// the server; VALID UNTIL the lease's expiry; IN ROLE the role's member_of
// groups; the role comment that marks it as the broker's
// ("credbroker:created=…"); on PostgreSQL 16 and later membership of the
// marker role credbroker_managed WITH INHERIT FALSE, SET FALSE; then the
// role's grants. Explicit grants rewrite every covered table's ACL, which
// PostgreSQL does not let two transactions do at once, so they are
// serialized with a transaction-scoped advisory lock that holds across broker
// replicas. Before the transaction commits, the new user and every role it
// is a member of are checked (see "Too strong" below), so free
// creation_statements, or a group made stronger since start, cannot make a
// user stronger than an issued user may be.
//
// Without creation_statements, all of that, the check included, is one
// pipeline: the statements go to the server in one round trip and run as one
// implicit transaction, committed at its end only if every one succeeded, so
// the catalog locks they take are held only while the server runs them, not
// across round trips to the broker. The check is a statement that fails when
// the user is too strong, which rolls everything back; Create then runs the
// statements again one at a time in an explicit transaction, whose check
// names what is too strong (and rolls back again). Creation statements always
// run that way. A connection goes back to the admin pool only idle outside
// any transaction; after any error it is closed.
//
// Computing a SCRAM verifier takes 4 096 rounds of PBKDF2, about 1.5 ms of
// CPU. The plugin is a [plugins.PasswordMaker]: the broker takes each
// password from [Plugin.NewPassword], whose verifier a background goroutine
// (started by Open, stopped by Close) has usually computed already; Create
// uses that verifier once and computes one itself for any other password.
// Passwords and verifiers stay in memory, never logged.
//
// Create returns a small state that the broker keeps beside the lease and
// hands back to Revoke: the role's revocation_statements and
// reassign_owned_to as they were when the user was issued, as versioned JSON
// ({"v":1,"revocation_statements":[…],"reassign_owned_to":"…"}). Nothing a
// revoke needs lives in the process or on the server, so a lease revokes the
// same way after its role was changed or removed from the config.
//
// Revoke disables login, terminates the user's sessions, runs the
// revocation_statements of its state, drops what the user owns and the
// privileges it holds in every database where pg_shdepend shows any, and
// drops the role. What the user owns is never handed to the admin:
// a SECURITY DEFINER function or a view a holder made would then run as the
// admin for anyone. A role may name reassign_owned_to: a NOLOGIN role that
// receives what its users owned instead; it is checked at start and again at
// every revoke, and a revoke fails (the user stays unable to log in, the
// reaper retries) rather than hand objects to a role that has become able to
// log in or too strong. Revoke refuses to drop a role without the broker's
// comment, so a wrong username can never remove a role the broker did not
// make.
//
// Most users own nothing: one lookup reads the role, its comment and whether
// pg_shdepend names it anywhere. When it does not, and the state has neither
// revocation_statements nor reassign_owned_to, NOLOGIN is committed in one
// more round trip, then the user's sessions are terminated and the role
// dropped in another, as one transaction. NOLOGIN commits first so that a
// holder reconnecting in a loop cannot get a session in between that
// outlives DROP ROLE (an admin that is not a superuser cannot end a session
// of a role that no longer exists). If the user made an object meanwhile,
// DROP ROLE fails with dependent_objects_still_exist, the drop is not
// committed, and the full revoke above runs. Either way a last terminate
// ends a session that authenticated before login was disabled.
//
// # Which roles are the broker's
//
// The role comment ("credbroker:created=<RFC 3339>"), not a membership, is
// what marks a role as the broker's: only a superuser or a role with
// CREATEROLE may comment on a role, so a holder cannot forge or remove it. ListManaged (the sweep) and Revoke read
// it on every version. Issued users used to be members of credbroker_managed,
// and on PostgreSQL 15 and older every membership lets the member SET ROLE:
// holders could create objects owned by the marker (a large object, a table
// in a schema where PUBLIC has CREATE) that every holder shares and no revoke
// removes. So on 15 and older issued users are not members of it; on 16 and
// later they are, with INHERIT FALSE and SET FALSE, so operators can still
// write +credbroker_managed in pg_hba.conf. When the plugin opens it takes
// the membership back from users an older release issued (15) or re-grants
// it with those options (16+); users keep their comment, so their leases stay
// revocable. If the marker owns anything, [Plugin.Warnings] says so, with the
// command that cleans it up.
//
// # Leases of earlier releases
//
// Releases before contract v2 kept what Revoke needs in the comment itself:
// ";reassign_owned_to=<role>" and ";revocation_statements=<key>", a hash of
// the role's statements. Their leases have no state. [Plugin.UpgradeState],
// which the broker calls for them at start, derives it from the comment: the
// reassign_owned_to it holds, and the role's current revocation_statements
// when their hash is the key (they are the statements the user was issued
// with). When the role has changed its statements or is gone, the state says
// they are unknown, and Revoke runs the built-in revocation alone, which
// removes the user completely, as those releases did. Revoke derives the
// state the same way for a lease it meets before the upgrade has.
//
// # Too strong
//
// A member_of group role gives every holder what it can do. [Plugin.CheckRole]
// (run at start) refuses a group role that, itself or through any role it is
// a member of, recursively: is SUPERUSER, CREATEROLE, CREATEDB, BYPASSRLS or
// REPLICATION; holds ADMIN OPTION on any role (so holders could grant roles);
// or is a member of pg_execute_server_program (runs programs as the server's
// OS user), pg_read_server_files or pg_write_server_files (any file that user
// can reach), pg_signal_backend (ends other sessions, the broker's own
// included), pg_checkpoint (forced checkpoints, an I/O denial of service) or
// pg_create_subscription (16+: makes the server connect out). Data roles such
// as pg_read_all_data are the operator's choice. The same rules, plus
// NOLOGIN, apply to reassign_owned_to, and Create applies them to each new
// user before commit.
//
// The admin needs CREATEROLE, not SUPERUSER (on PostgreSQL 16+ also ADMIN
// OPTION on each group role); [Plugin.Warnings] says so when it is a
// superuser.
package postgres
