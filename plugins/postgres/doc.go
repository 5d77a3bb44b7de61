// Package postgres is the PostgreSQL backend: it issues short-lived login roles
// with the grants a credbroker role names, and removes them again.
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
// the server; VALID UNTIL the lease's expiry; membership of the marker role
// credbroker_managed; then the role's grants. Explicit grants rewrite every
// covered table's ACL, which PostgreSQL does not let two transactions do at
// once, so they are serialized with a transaction-scoped advisory lock that
// holds across broker replicas.
//
// Revoke disables login, terminates the user's sessions, reassigns and drops
// what the user owns in every database where it owns or was granted anything,
// and drops the role. It refuses to drop a role that is not a member of
// credbroker_managed, so a wrong username can never remove a role the broker
// did not make.
package postgres
