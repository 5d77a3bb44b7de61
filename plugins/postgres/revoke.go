package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/plugins"
)

// terminateWait is how long, in milliseconds, pg_terminate_backend waits for
// each of the user's sessions to end.
const terminateWait = 5000

// Revoke removes the user: it disables login, terminates every session of the
// user, runs the revocation_statements the user was issued with, drops what
// the user owns and its privileges in every database where it has any, and
// drops the role. A user that does not exist is success. A role whose
// comment is not one Create writes is refused: the broker did not make it.
//
// What the user was issued with comes from req.State alone, never from
// req.Spec: a lease whose role was changed or removed from the config
// revokes as it would have with the role unchanged. A lease an earlier
// release wrote has no state; Revoke then derives it as
// [Plugin.UpgradeState] does, from the user's comment and req.Spec. So does
// a lease of this release whose issue failed after Create (the store did
// not take Create's answer): its user's comment says so, and the role's
// current spec stands in for the state.
//
// What the user owns is dropped, never handed to the admin: a SECURITY
// DEFINER function the user made would otherwise run as the admin. Where the
// state names reassign_owned_to, it goes to that role instead, after checking
// again that the role cannot log in and is not too strong; if it now is, the
// revoke fails (the user stays unable to log in) and the reaper retries.
//
// A user that owns nothing and holds no privilege anywhere (pg_shdepend
// names it nowhere), with no revocation_statements or reassign_owned_to in
// its state, is removed in one round trip after the lookup, then its
// sessions are looked for once more (see [Plugin.dropQuickly]); should it
// have made an object meanwhile, all of the above runs.
func (p *Plugin) Revoke(ctx context.Context, req plugins.RevokeOf[*Role]) (plugins.RevokeResponse, error) {
	if err := p.revoke(ctx, req); err != nil {
		return plugins.RevokeResponse{}, fmt.Errorf("revoke role %s: %w", ident(req.Username), classify(err))
	}
	return plugins.RevokeResponse{}, nil
}

// revokee is what the first round trip of a revoke learns of the user.
type revokee struct {
	name       string // unquoted
	oid        uint32
	comment    string
	adminSuper bool // the admin is a superuser
	// depends says pg_shdepend names the user: it owns objects or holds
	// privileges in some database (or on a shared object).
	depends bool
}

// lookUp reads what a revoke needs to know of username in one round trip;
// found is false when the user does not exist.
func (p *Plugin) lookUp(ctx context.Context, username string) (u revokee, found bool, err error) {
	u.name = username
	err = p.pool.QueryRow(ctx, `
		SELECT r.oid, COALESCE(shobj_description(r.oid, 'pg_authid'), ''),
		       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
		       EXISTS (SELECT 1 FROM pg_shdepend s
		               WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = r.oid)
		FROM pg_roles r WHERE r.rolname = $1`, username).Scan(&u.oid, &u.comment, &u.adminSuper, &u.depends)
	if errors.Is(err, pgx.ErrNoRows) {
		return revokee{}, false, nil
	}
	if err != nil {
		return revokee{}, false, fmt.Errorf("look up the role: %w", err)
	}
	return u, true, nil
}

func (p *Plugin) revoke(ctx context.Context, req plugins.RevokeOf[*Role]) error {
	u, found, err := p.lookUp(ctx, req.Username)
	if err != nil || !found {
		return err
	}
	info, managed := parseRoleComment(u.comment)
	if !managed {
		return fmt.Errorf("refusing to drop a role whose comment does not start with %q: credbroker did not create it", commentPrefix)
	}
	// Read the state before changing anything: a state this release cannot
	// read leaves the user as it is.
	st := derivedState(info, req.Spec)
	if req.State != nil {
		if st, err = decodeState(req.State); err != nil {
			return err
		}
	}
	return p.remove(ctx, u, st)
}

// remove removes the user lookUp found, as st says: in two round trips
// when nothing but the role itself is to be removed, else (or when the user
// made an object since the lookup) step by step.
func (p *Plugin) remove(ctx context.Context, u revokee, st state) error {
	if !u.depends && len(st.RevocationStatements) == 0 && st.ReassignOwnedTo == "" {
		err := p.dropQuickly(ctx, u)
		switch sqlState(err) {
		case "":
			if err != nil {
				return err
			}
			// A session that authenticated before DROP ROLE committed may
			// have appeared since; it outlives DROP ROLE unless it is ended
			// too.
			return p.terminate(ctx, u.oid)
		case pgerrcode.UndefinedObject:
			return nil // dropped meanwhile, by another replica
		case pgerrcode.DependentObjectsStillExist:
			// The user made an object, or was granted a privilege, since
			// the lookup: nothing was committed, and the careful path
			// drops it.
		default:
			return err
		}
	}
	return p.removeCarefully(ctx, u, st)
}

// dropQuickly disables login and drops the role in two round trips: first
// (when the admin is not a superuser) the admin takes the user's
// privileges, which ending its sessions needs, and ALTER ROLE … NOLOGIN,
// committed at once; then every session of the user is terminated and the
// role dropped, as one transaction (see [pipeline]). NOLOGIN must commit
// before the sessions are ended: a holder that keeps reconnecting would
// otherwise get a session in between that outlives DROP ROLE, and once the
// role is gone an admin that is not a superuser may no longer end it. DROP
// ROLE fails with dependent_objects_still_exist when the user owns an
// object or holds a privilege, and then the drop is not committed.
func (p *Plugin) dropQuickly(ctx context.Context, u revokee) error {
	name := ident(u.name)
	var steps []step
	if !u.adminSuper {
		steps = append(steps, step{what: "take the privileges of the user to end its sessions", sql: adminMembership(p.version, name)})
	}
	steps = append(steps, step{what: "disable login", sql: "ALTER ROLE " + name + " NOLOGIN"})
	if err := pipeline(ctx, p.pool, steps); err != nil {
		return err
	}
	return pipeline(ctx, p.pool, []step{terminateStep(u.oid), {what: "drop role", sql: "DROP ROLE " + name}})
}

// removeCarefully disables login (committed at once), terminates the
// user's sessions, runs the state's revocation_statements, drops or
// reassigns what the user owns in every database where it owns anything,
// drops the role, and terminates any session that appeared meanwhile.
func (p *Plugin) removeCarefully(ctx context.Context, u revokee, st state) error {
	name := ident(u.name)
	// No new sessions, then end the open ones.
	if _, err := p.pool.Exec(ctx, "ALTER ROLE "+name+" NOLOGIN"); err != nil {
		if sqlState(err) == pgerrcode.UndefinedObject {
			return nil // dropped meanwhile, by another replica
		}
		return fmt.Errorf("disable login: %w", err)
	}
	if !u.adminSuper {
		// Ending the user's sessions, and REASSIGN/DROP OWNED, need the
		// privileges of the user, which CREATEROLE alone does not give.
		if _, err := p.pool.Exec(ctx, adminMembership(p.version, name)); err != nil {
			if sqlState(err) == pgerrcode.UndefinedObject {
				return nil // dropped meanwhile, by another replica
			}
			return fmt.Errorf("take the privileges of the user to end its sessions and drop what it owns: %w", err)
		}
	}
	if err := p.terminate(ctx, u.oid); err != nil {
		return err
	}

	if len(st.RevocationStatements) > 0 {
		steps := []step{{what: "wait for the grant lock", sql: "SELECT pg_advisory_xact_lock($1)", args: []any{grantLockKey}}, operatorPath}
		for i, s := range st.RevocationStatements {
			steps = append(steps, step{what: fmt.Sprintf("revocation_statements[%d]", i), sql: render(s, templateValues{name: u.name})})
		}
		if err := p.inTx(ctx, p.pool, steps); err != nil {
			return err
		}
	}

	if err := p.dropOwned(ctx, u.oid, name, st.ReassignOwnedTo, u.adminSuper); err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, "DROP ROLE IF EXISTS "+name); err != nil {
		return fmt.Errorf("drop role: %w", err)
	}
	// A session that authenticated just before login was disabled may have
	// appeared since; it outlives DROP ROLE unless it is ended too.
	return p.terminate(ctx, u.oid)
}

// UpgradeState derives the state of a lease an earlier release wrote, which
// has none, from what that release kept in the comment of the lease's user:
// reassign_owned_to, and a key naming the role's revocation_statements. The
// statements are taken from req.Spec when the key is theirs, so they are the
// ones the user was issued with; when the role has changed them or is gone,
// the state says they are unknown and only the built-in revocation will run,
// which removes the user completely, as that release did. A user that no
// longer exists gets an empty state; a role without the plugin's comment is
// an error.
func (p *Plugin) UpgradeState(ctx context.Context, req plugins.UpgradeStateOf[*Role]) ([]byte, error) {
	var comment string
	err := p.pool.QueryRow(ctx,
		`SELECT COALESCE(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname = $1`,
		req.Username).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return state{V: stateVersion}.encode()
	}
	if err != nil {
		return nil, fmt.Errorf("upgrade the state of role %s: %w", ident(req.Username), classify(err))
	}
	info, managed := parseRoleComment(comment)
	if !managed {
		return nil, fmt.Errorf("upgrade the state of role %s: its comment does not start with %q: credbroker did not create it",
			ident(req.Username), commentPrefix)
	}
	return derivedState(info, req.Spec).encode()
}

// terminateStep ends every session of the role with this oid, waiting for
// each to exit.
func terminateStep(oid uint32) step {
	return step{
		what: "terminate sessions",
		sql: `SELECT pg_terminate_backend(pid, $2) FROM pg_stat_activity
		      WHERE usesysid = $1 AND pid <> pg_backend_pid()`,
		args:    []any{oid, terminateWait},
		prepare: true,
	}
}

// terminate runs terminateStep on its own.
func (p *Plugin) terminate(ctx context.Context, oid uint32) error {
	s := terminateStep(oid)
	if _, err := p.pool.Exec(ctx, s.sql, s.args...); err != nil {
		return fmt.Errorf("%s: %w", s.what, err)
	}
	return nil
}

// dropOwned finds the databases where the role owns objects or holds
// privileges (shared objects such as databases count for the admin's own)
// and, in each, drops what it owns and its privileges — first reassigning
// what it owns to reassignTo, when that is set and still fit to receive it.
// Where it holds privileges, that takes the grant lock, as Create does.
func (p *Plugin) dropOwned(ctx context.Context, oid uint32, name, reassignTo string, adminSuper bool) error {
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
	if len(deps) == 0 {
		return nil
	}
	if reassignTo != "" {
		if err := p.checkReassignTarget(ctx, reassignTo); err != nil {
			return fmt.Errorf("not reassigning what the user owns to %s (reassign_owned_to): %w; "+
				"the user cannot log in meanwhile, and the revoke is retried until that role is fit again",
				ident(reassignTo), err)
		}
	}
	if reassignTo != "" && !adminSuper {
		// REASSIGN OWNED needs the privileges of the role it gives to.
		if _, err := p.pool.Exec(ctx, adminMembership(p.version, ident(reassignTo))); err != nil {
			return fmt.Errorf("take the privileges of %s to reassign to it: %w", ident(reassignTo), err)
		}
	}
	for _, d := range deps {
		pool, err := p.poolFor(ctx, d.database)
		if err != nil {
			return fmt.Errorf("connect to database %s: %w", ident(d.database), err)
		}
		if err := p.inTx(ctx, pool, dropOwnedSteps(name, reassignTo, d.acl)); err != nil {
			return fmt.Errorf("in database %s: %w", ident(d.database), err)
		}
	}
	return nil
}

// dropOwnedSteps are the statements that remove what the quoted user name
// owns in one database: REASSIGN OWNED to reassignTo (unquoted) when it is
// set, then DROP OWNED; after the grant lock when the user holds privileges.
// Nothing is ever reassigned to the admin.
func dropOwnedSteps(name, reassignTo string, acl bool) []step {
	var steps []step
	if acl {
		steps = append(steps, step{what: "wait for the grant lock", sql: "SELECT pg_advisory_xact_lock($1)", args: []any{grantLockKey}})
	}
	if reassignTo != "" {
		steps = append(steps, step{what: "reassign owned objects to " + ident(reassignTo),
			sql: "REASSIGN OWNED BY " + name + " TO " + ident(reassignTo)})
	}
	return append(steps, step{what: "drop owned objects and privileges", sql: "DROP OWNED BY " + name})
}

// adminMembership returns the statement that gives an admin that is not a
// superuser the privileges of the quoted role name: pg_terminate_backend,
// REASSIGN OWNED and DROP OWNED require them, and CREATEROLE alone does not
// give them. On PostgreSQL 16+ a CREATEROLE admin already holds ADMIN OPTION
// on the roles it made, but without INHERIT, so it grants them again WITH
// INHERIT TRUE.
func adminMembership(version int, name string) string {
	if version >= memberOptionsVersion {
		return "GRANT " + name + " TO CURRENT_USER WITH INHERIT TRUE"
	}
	return "GRANT " + name + " TO CURRENT_USER"
}
