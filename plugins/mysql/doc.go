// Package mysql is the MySQL and MariaDB backend: it issues short-lived
// accounts with the grants a credbroker role names, and removes them again.
// [Driver] implements [plugins.TypedDriver] in the package's own types
// ([Connection], [Role]); [New] is the driver the broker lists. Its plugin
// also implements [plugins.Warner], [plugins.SecretHolder] (the admin DSN
// and its password, which the decorator of [plugins.Open] redacts from every
// error) and [plugins.TypedStateUpgrader]; the driver declares the mysql
// client, the credential's variables and a demo backend ([Driver.Describe]).
//
// # Configuration
//
// A backend's connection section names the admin DSN (go-sql-driver/mysql
// form) by reference, never inline:
//
//	connection:
//	  dsn: env:ORDERS_MYSQL_ADMIN_DSN  # e.g. admin:pw@tcp(db.internal:3306)/
//	  max_conns: 4                     # admin pool size
//	  host: orders-db.internal         # optional: what issued credentials point at,
//	  port: 3306                       # when it differs from the admin DSN's address
//
// A role's `mysql:` section says what an issued user may do, as grants or as
// Vault-style creation statements:
//
//	mysql:
//	  host: "10.0.%"                   # the account's host part; default "%"
//	  grants:
//	    - {privileges: [SELECT], on: "orders.*"}
//	    - {privileges: [SELECT, INSERT], on: "audit.events"}
//	# or
//	mysql:
//	  creation_statements:
//	    - CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON orders.* TO '{{name}}'@'%'
//	  revocation_statements:
//	    - INSERT INTO audit.revoked (user) VALUES ('{{name}}')
//
// Privileges are checked against an allow-list of application privileges;
// `on` is "db.table", "db.*" or "*.*" and is always rendered with
// backtick-quoted names, the wildcards _ and % of a database name escaped.
//
// # What no role may grant
//
// Holders are untrusted, so ParseRole (and `credbroker config check`)
// refuses what would let one reach past its role: any privilege on the
// system schemas mysql, sys, performance_schema and information_schema (in
// any case; in creation statements also GRANT patterns that match them);
// anything but SHOW DATABASES, SHOW VIEW and USAGE on "*.*", which includes the
// mysql schema (SELECT there reads every account's password hash); GRANT
// OPTION, SUPER, FILE, PROCESS, SHUTDOWN, CREATE USER, RELOAD, PROXY, the
// replication and binary log privileges (the binary log holds new accounts'
// password hashes; on MariaDB 10.5+ REPLICATION CLIENT is BINLOG MONITOR,
// which reads it) and MariaDB's other administrative privileges. In
// creation statements, GRANTs are tokenised and held to the same rules,
// WITH GRANT OPTION and role and PROXY grants are refused, account
// statements may name only '{{name}}', and RENAME USER and role statements
// are refused; a statement of another kind is not checked, and ParseRole
// warns about it by index ("NOT CHECKED").
//
// The admin needs CREATE USER, PROCESS, CONNECTION ADMIN (MySQL:
// CONNECTION_ADMIN) or SUPER, SELECT on the mysql database, on MySQL 8
// SET_ANY_DEFINER (8.2+) or SET_USER_ID, and the privileges it grants WITH
// GRANT OPTION; where a role grants CREATE ROUTINE, CREATE VIEW, TRIGGER or
// EVENT, also ALTER ROUTINE, DROP, TRIGGER or EVENT there (CheckRole checks
// it), to drop what holders leave. Warnings names an admin holding far more
// (SUPER, FILE …) and an admin DSN to a host off loopback without verified
// TLS.
//
// # What happens on the server
//
// Create runs CREATE USER 'name'@'host' IDENTIFIED BY PASSWORD '<hash>' with
// the mysql_native_password hash computed in the broker ('*' and the
// upper-case hex of SHA1(SHA1(password))), so the plaintext password never
// reaches the server, its general log or its binary log. (MySQL 8 dropped
// that syntax; there the statement is IDENTIFIED WITH mysql_native_password
// AS '<hash>', which needs the mysql_native_password plugin, disabled by
// default from MySQL 8.4.) Then one GRANT per grant. MySQL runs each
// statement in a transaction of its own, so if any fails the plugin drops the
// account before it returns the error: a user is made whole or not at all.
//
// Creation statements are run one by one, split at semicolons outside
// quotes. Vault's IDENTIFIED BY '{{password}}' would send the plaintext, so
// the plugin rewrites that clause, and its forms IDENTIFIED WITH
// mysql_native_password BY '{{password}}' and IDENTIFIED VIA
// mysql_native_password USING PASSWORD('{{password}}'), to the hash form;
// {{password}} anywhere else is refused by ParseRole. {{name}} and
// {{username}} become the quoted user name. A statement that fails drops
// every account of that name, as above; Create refuses a name that already
// exists before it runs any statement. Statements are the operator's SQL:
// GRANT … ON db.* reads _ and % in the database name as wildcards, so write
// `orders\_db`.* there (grants: escape them for you).
//
// Revoke first locks every account of the user (ALTER USER … ACCOUNT
// LOCK, MariaDB 10.4+ and MySQL 5.7.6+) and kills its connections, so a
// revoke that cannot finish still keeps the holder out. It then runs the
// role's revocation statements, drops every event, routine, trigger and
// view whose DEFINER is the user (they would run with its rights after the
// lease; MySQL 8.0.22+ refuses DROP USER while they exist, MariaDB would
// orphan them) outside the system schemas, where no role may grant the
// privileges that make them, drops every account of that name, and kills
// any connection that authenticated meanwhile. If the objects cannot be
// dropped, the account stays, locked, and Revoke fails to be retried. It
// refuses names without the managed prefix (cb_), so a wrong username can
// never remove an account the broker did not make.
//
// # The lease's State
//
// Create returns a small versioned State, which the lease store keeps beside
// the lease: {"v":1,"revocation_statements":[…]}, the role's revocation
// statements as they were when the user was made ({"v":1} when it has
// none). Revoke runs them from the State alone, so a lease whose role was
// changed or removed from the config revokes as it would have before.
// Nothing else is needed: Revoke finds the user's accounts (creation
// statements can make several) and the objects it is the DEFINER of by its
// name. A State Revoke cannot read (another version) does not keep the user
// alive: it is dropped without statements and the error returned once.
//
// Before contract v2, Revoke was given only the username, so Create
// recorded the statements on the server by granting the user an empty
// marker role credbroker_rv_<first 8 bytes of SHA-256 of the statements
// joined by NUL, hex>. Leases of that release have no State. UpgradeState
// derives one from the marker: the role's current revocation statements
// when the user holds the marker named for them, else none, as that
// release's Revoke (whose registry held the statements of its config only)
// would have run; a Revoke given no State does the same itself. New users
// get no marker. The marker grant goes with the user at DROP USER; the
// marker roles themselves, shared by every user of a role and still granted
// by a broker of the previous release during a rolling upgrade, are left:
// once no lease from before contract v2 is left, no account holds them and
// an operator may drop them (DROP ROLE `credbroker_rv_…`).
//
// MySQL has no account expiry finer than days, so Create ignores the
// lease's expiry and Renew only checks that the user exists (the State
// stays as it is): the broker's reaper alone ends an account at its lease's
// expiry. ListManaged lists the users whose names start with cb_.
//
// # Demo backend
//
// `credbroker dev` adds demo-mysql when a server answers at
// $CREDBROKER_DEV_MYSQL_DSN (default root@tcp(127.0.0.1:3306)/): the driver's
// demo makes the database credbroker_demo with a table orders, and its role
// reads it.
//
// # Anonymous accounts
//
// An anonymous account such as ”@'localhost' is more specific than an
// issued 'name'@'%', so the server matches logins from that host to it and
// refuses the issued password ("access denied"). CheckRole fails for a role
// with '%' accounts when issued credentials point at a loopback address and
// such an account exists; drop it, as mysql_secure_installation does.
package mysql
