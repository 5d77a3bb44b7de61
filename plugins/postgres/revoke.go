package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
)

// terminateWait is how long, in milliseconds, pg_terminate_backend waits for
// each of the user's sessions to end.
const terminateWait = 5000

// Revoke removes the user: it disables login, terminates every session of the
// user, runs the role's revocation_statements, reassigns to the admin what the
// user owns and drops its privileges in every database where it has any, and
// drops the role. A user that does not exist is success. A role that is not a
// member of credbroker_managed is refused: the broker did not make it.
//
// The revocation_statements run when this process has parsed the role that
// issued the user (every broker replica has); otherwise only the built-in
// revocation runs, which removes the user completely on its own.
func (p *Plugin) Revoke(ctx context.Context, username string) error {
	if err := p.revoke(ctx, username); err != nil {
		return p.sanitize(fmt.Errorf("revoke role %s: %w", ident(username), classify(err)))
	}
	return nil
}

func (p *Plugin) revoke(ctx context.Context, username string) error {
	name := ident(username)
	var (
		oid     uint32
		managed bool
		comment *string
	)
	err := p.pool.QueryRow(ctx, `
		SELECT r.oid,
		       EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
		               WHERE m.member = r.oid AND g.rolname = $2),
		       shobj_description(r.oid, 'pg_authid')
		FROM pg_roles r WHERE r.rolname = $1`, username, markerRole).Scan(&oid, &managed, &comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up the role: %w", err)
	}
	if !managed {
		return fmt.Errorf("refusing to drop a role that is not a member of %s: credbroker did not create it", markerRole)
	}

	// No new sessions, then end the open ones.
	if _, err := p.pool.Exec(ctx, "ALTER ROLE "+name+" NOLOGIN"); err != nil {
		if sqlState(err) == pgerrcode.UndefinedObject {
			return nil // dropped meanwhile, by another replica
		}
		return fmt.Errorf("disable login: %w", err)
	}
	if err := p.terminate(ctx, oid); err != nil {
		return err
	}

	if comment != nil {
		if statements, ok := lookupRevocation(*comment); ok {
			steps := []step{{what: "wait for the grant lock", sql: "SELECT pg_advisory_xact_lock($1)", args: []any{grantLockKey}}}
			for i, s := range statements {
				steps = append(steps, step{what: fmt.Sprintf("revocation_statements[%d]", i), sql: render(s, templateValues{name: username})})
			}
			if err := p.inTx(ctx, p.pool, steps); err != nil {
				return err
			}
		}
	}

	if err := p.dropOwned(ctx, oid, name); err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, "DROP ROLE IF EXISTS "+name); err != nil {
		return fmt.Errorf("drop role: %w", err)
	}
	// A session that authenticated just before login was disabled may have
	// appeared since; it outlives DROP ROLE unless it is ended too.
	return p.terminate(ctx, oid)
}

// terminate ends every session of the role with this oid, waiting for each
// to exit.
func (p *Plugin) terminate(ctx context.Context, oid uint32) error {
	_, err := p.pool.Exec(ctx, `
		SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity
		WHERE usesysid = $1 AND pid <> pg_backend_pid()`, oid, terminateWait)
	if err != nil {
		return fmt.Errorf("terminate sessions: %w", err)
	}
	return nil
}

// dropOwned finds the databases where the role owns objects or holds
// privileges (shared objects such as databases count for the admin's own)
// and, in each, reassigns what it owns to the admin and drops its privileges.
// Where it holds privileges, that takes the grant lock, as Create does.
func (p *Plugin) dropOwned(ctx context.Context, oid uint32, name string) error {
	rows, err := p.pool.Query(ctx, `
		SELECT coalesce(d.datname, current_database()), bool_or(s.deptype = 'a')
		FROM pg_shdepend s LEFT JOIN pg_database d ON d.oid = s.dbid
		WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = $1
		GROUP BY 1 ORDER BY 1`, oid)
	if err != nil {
		return fmt.Errorf("find dependent objects: %w", err)
	}
	type dependency struct {
		database string
		acl      bool
	}
	deps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (dependency, error) {
		var d dependency
		return d, r.Scan(&d.database, &d.acl)
	})
	if err != nil {
		return fmt.Errorf("find dependent objects: %w", err)
	}
	for _, d := range deps {
		pool, err := p.poolFor(ctx, d.database)
		if err != nil {
			return fmt.Errorf("connect to database %s: %w", ident(d.database), err)
		}
		var steps []step
		if d.acl {
			steps = append(steps, step{what: "wait for the grant lock", sql: "SELECT pg_advisory_xact_lock($1)", args: []any{grantLockKey}})
		}
		steps = append(steps,
			step{what: "reassign owned objects", sql: "REASSIGN OWNED BY " + name + " TO CURRENT_USER"},
			step{what: "drop owned objects and privileges", sql: "DROP OWNED BY " + name},
		)
		if err := p.inTx(ctx, pool, steps); err != nil {
			return fmt.Errorf("in database %s: %w", ident(d.database), err)
		}
	}
	return nil
}
