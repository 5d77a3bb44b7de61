package postgres

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
)

// dangerousPredefinedRoles are the predefined roles no role an issued user
// can reach may be a member of, because each hands a holder power over the
// server, not over data the operator chose to share:
//
//   - pg_execute_server_program runs programs on the server host as the
//     operating system user that runs PostgreSQL (COPY … PROGRAM): that user
//     owns the data directory, so it is the same as superuser.
//   - pg_write_server_files writes any file that user may (COPY … TO a
//     file): the configuration, pg_hba.conf, the data files.
//   - pg_read_server_files reads any file that user may: password hashes in
//     the data files, TLS keys, pg_hba.conf.
//   - pg_signal_backend cancels and terminates other roles' sessions (the
//     broker's own admin sessions included, unless the admin is a superuser).
//   - pg_checkpoint (PostgreSQL 15+) forces checkpoints at will: an I/O
//     denial of service against every database of the cluster.
//   - pg_create_subscription (PostgreSQL 16+) makes the server connect out
//     to any address and apply what it receives there.
//
// Data-reading roles such as pg_read_all_data or pg_monitor are the
// operator's choice and are not refused. Roles of a version that lacks them
// simply never match.
var dangerousPredefinedRoles = []string{
	"pg_execute_server_program",
	"pg_write_server_files",
	"pg_read_server_files",
	"pg_signal_backend",
	"pg_checkpoint",
	"pg_create_subscription",
}

// strengthQuery lists what makes a role, or any role it is (recursively) a
// member of, too strong to hand to a holder: one row per finding, with the
// role that has it and the chain of memberships that reaches it. $1 is the
// starting role's name, $2 the dangerous predefined roles. Every membership
// counts, whatever its INHERIT and SET options: on PostgreSQL 15 and older
// every membership allows SET ROLE, and a role reachable at all is one a
// later GRANT … WITH SET TRUE away from a holder.
const strengthQuery = `
WITH RECURSIVE reach(oid, path) AS (
	SELECT r.oid, ARRAY[r.rolname::text] FROM pg_roles r WHERE r.rolname = $1
	UNION ALL
	SELECT m.roleid, reach.path || g.rolname::text
	FROM reach
	JOIN pg_auth_members m ON m.member = reach.oid
	JOIN pg_roles g ON g.oid = m.roleid
	WHERE NOT g.rolname::text = ANY (reach.path)
)
SELECT r.rolname::text, reach.path, finding
FROM reach
JOIN pg_roles r ON r.oid = reach.oid
CROSS JOIN LATERAL (
	SELECT 'SUPERUSER' WHERE r.rolsuper
	UNION ALL SELECT 'CREATEROLE' WHERE r.rolcreaterole
	UNION ALL SELECT 'CREATEDB' WHERE r.rolcreatedb
	UNION ALL SELECT 'BYPASSRLS' WHERE r.rolbypassrls
	UNION ALL SELECT 'REPLICATION' WHERE r.rolreplication
	UNION ALL SELECT 'predefined' WHERE r.rolname = ANY ($2::text[])
	UNION ALL SELECT 'ADMIN OPTION on role ' || quote_ident(a.rolname)
		FROM pg_auth_members am JOIN pg_roles a ON a.oid = am.roleid
		WHERE am.member = r.oid AND am.admin_option
) AS f(finding)
ORDER BY array_length(reach.path, 1), 1, 3`

// predefinedFinding is strengthQuery's finding for a dangerous predefined
// role.
const predefinedFinding = "predefined"

// queryer is what strength checks run on: the pool, or the transaction of a
// Create.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// tooStrong returns one line per reason role may not be handed to a holder
// (or receive what holders owned): SUPERUSER, CREATEROLE, CREATEDB, BYPASSRLS,
// REPLICATION, ADMIN OPTION on any role, or membership of a dangerous
// predefined role — its own or that of any role it is a member of,
// recursively. Nil means none; a role that does not exist has none.
func tooStrong(ctx context.Context, q queryer, role string) ([]string, error) {
	rows, err := q.Query(ctx, strengthQuery, role, dangerousPredefinedRoles)
	if err != nil {
		return nil, err
	}
	type finding struct {
		role    string
		path    []string
		finding string
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (finding, error) {
		var f finding
		return f, r.Scan(&f.role, &f.path, &f.finding)
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range found {
		out = append(out, describe(f.role, f.path, f.finding))
	}
	return out, nil
}

// describe says in one line why role, reached from path[0] through path,
// is too strong.
func describe(role string, path []string, finding string) string {
	predefined := strings.HasPrefix(finding, predefinedFinding)
	if len(path) <= 1 {
		if predefined {
			return ident(role) + " is a dangerous predefined role"
		}
		return ident(role) + " has " + finding
	}
	s := ident(path[0]) + " is a member of " + ident(role)
	if len(path) > 2 {
		chain := make([]string, len(path))
		for i, p := range path {
			chain[i] = ident(p)
		}
		s += " (" + strings.Join(chain, " → ") + ")"
	}
	if predefined {
		return s + ", a dangerous predefined role"
	}
	return s + ", which has " + finding
}
