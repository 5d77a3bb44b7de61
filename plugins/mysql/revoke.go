package mysql

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/credbroker/credbroker/plugins"
)

// Revoke removes the user. First it locks every account of that name
// (ALTER USER … ACCOUNT LOCK) and ends the user's sessions (KILL CONNECTION
// of every thread information_schema.PROCESSLIST shows for it), so a revoke
// that cannot finish still keeps the holder out. Then it runs the role's
// revocation_statements, drops every object the user is the DEFINER of
// (events, routines, triggers, views: they would run with its rights, and
// MySQL 8.0.22+ refuses DROP USER while they exist) outside the system
// schemas, on which no role may grant anything (see scanSchemas), drops
// every account of that name (DROP USER IF EXISTS), and ends the sessions
// again, to catch a login that raced the lock. One query finds both the
// sessions and the objects; with the look-up of the accounts, the lock, the
// drop and the last look for sessions, a revoke of a user without sessions
// or objects is five statements. A user that does not exist is success, once
// objects an earlier revoke left are gone. A name without the managed
// prefix is refused: the broker did not make it.
//
// The revocation_statements are the ones req.State holds, as Create wrote
// it; req.Spec is not needed, so a lease whose role left the config revokes
// as it would have before. A lease from before contract v2 has no State:
// then the statements are derived from the user's marker role as
// UpgradeState does. If a statement fails, or the State cannot be read, the
// user is dropped all the same and the error returned: an operator's
// statement never keeps a credential alive. If the definer objects cannot
// be dropped, the account stays, locked, and Revoke fails, to be retried:
// dropping it would leave the objects orphaned.
func (p *Plugin) Revoke(ctx context.Context, req plugins.RevokeOf[*Role]) (plugins.RevokeResponse, error) {
	if err := checkUsername(req.Username); err != nil {
		return plugins.RevokeResponse{}, fmt.Errorf("revoke user: %w", err)
	}
	if err := p.revoke(ctx, req); err != nil {
		return plugins.RevokeResponse{}, fmt.Errorf("revoke user %s: %w", quoteString(req.Username), classify(err))
	}
	return plugins.RevokeResponse{}, nil
}

func (p *Plugin) revoke(ctx context.Context, req plugins.RevokeOf[*Role]) error {
	username := req.Username
	hosts, err := p.hosts(ctx, username)
	if err != nil {
		return err
	}
	if len(hosts) == 0 {
		// Gone already; a session that outlived an earlier drop still ends,
		// and objects an older revoke left are dropped. The State is not
		// needed: the statements ran, or were reported, with the drop.
		objects, err := p.endSessionsFindObjects(ctx, username)
		if err != nil {
			return err
		}
		return p.dropDefinerObjects(ctx, username, objects)
	}
	// A lock that fails does not stop the revoke: dropping the user locks
	// it out too. Its error is returned only if the drop does not happen.
	lockErr := p.lock(ctx, username, hosts)
	if lockErr != nil && (ctx.Err() != nil || connectionFailure(lockErr)) {
		return lockErr
	}
	objects, err := p.endSessionsFindObjects(ctx, username)
	if err != nil {
		return errors.Join(lockErr, err)
	}
	var statements []string
	var statementsErr error
	if req.State == nil {
		// A lease from before contract v2 (the marker role says), or one
		// whose issue failed after Create (the role's spec says). A retry
		// may read it where this failed, so the user stays, locked.
		if statements, err = p.lostStateStatements(ctx, username, hosts, req.Spec); err != nil {
			return errors.Join(lockErr, err)
		}
	} else if s, err := decodeState(req.State); err != nil {
		// No retry can read it better.
		statementsErr = fmt.Errorf("%w (the user was dropped all the same, without revocation_statements)", err)
	} else {
		statements = s.RevocationStatements
	}
	if len(statements) > 0 {
		steps, err := renderAll("revocation_statements", statements, username, nil)
		if err == nil {
			err = p.exec(ctx, steps)
		}
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			statementsErr = fmt.Errorf("%w (the user was dropped all the same)", err)
		}
		// The operator's statements run as the admin, who may name any
		// DEFINER: what they made is found with the rest.
		if objects, err = p.definerObjects(ctx, username); err != nil {
			return errors.Join(statementsErr, lockErr, err)
		}
	}
	if err := p.dropDefinerObjects(ctx, username, objects); err != nil {
		if lockErr == nil {
			err = fmt.Errorf("%w (the account stays locked, its sessions ended, until a retry drops them)", err)
		}
		return errors.Join(statementsErr, lockErr, err)
	}
	if err := p.drop(ctx, username, hosts); err != nil {
		return errors.Join(statementsErr, lockErr, err)
	}
	// A session that authenticated before the lock outlives it unless it is
	// ended too.
	if err := p.endSessions(ctx, username); err != nil {
		return errors.Join(statementsErr, err)
	}
	return statementsErr
}

// lockSQL returns the statement that locks accounts: new logins fail, open
// sessions stay until killed. MySQL 5.7.6+ and MariaDB 10.4+.
func lockSQL(accounts []string) string {
	return "ALTER USER IF EXISTS " + strings.Join(accounts, ", ") + " ACCOUNT LOCK"
}

// scrambleSQL returns the statement that locks accounts out where ACCOUNT
// LOCK is missing or failed: their password becomes the hash of a random
// password nobody holds (only the hash travels, as at Create).
func (p *Plugin) scrambleSQL(accounts []string) string {
	hash := NativePasswordHash(plugins.NewPassword().Reveal())
	return "ALTER USER IF EXISTS " + strings.Join(accounts, ", ") + " " + p.hashClause(hash)(false)
}

// lock locks the accounts of username at hosts: ACCOUNT LOCK where the
// server has it, else (or when that fails) a password nobody knows, so a
// revoke that cannot finish never leaves the login working.
func (p *Plugin) lock(ctx context.Context, username string, hosts []string) error {
	accounts := make([]string, len(hosts))
	for i, h := range hosts {
		accounts[i] = account(username, h)
	}
	var lockErr error
	if p.canLock {
		if _, lockErr = p.db.ExecContext(ctx, lockSQL(accounts)); lockErr == nil {
			return nil
		}
	}
	if _, err := p.db.ExecContext(ctx, p.scrambleSQL(accounts)); err != nil {
		return fmt.Errorf("lock the user: %w", errors.Join(lockErr, err))
	}
	return nil
}

// drop drops the accounts of username at hosts.
func (p *Plugin) drop(ctx context.Context, username string, hosts []string) error {
	if len(hosts) == 0 {
		return nil
	}
	accounts := make([]string, len(hosts))
	for i, h := range hosts {
		accounts[i] = account(username, h)
	}
	if _, err := p.db.ExecContext(ctx, "DROP USER IF EXISTS "+strings.Join(accounts, ", ")); err != nil {
		return fmt.Errorf("drop the user: %w", err)
	}
	return nil
}

// showGrants returns the lines of SHOW GRANTS for the account, none when it
// was dropped meanwhile.
func (p *Plugin) showGrants(ctx context.Context, username, host string) ([]string, error) {
	rows, err := p.db.QueryContext(ctx, "SHOW GRANTS FOR "+account(username, host))
	if serverError(err) == erNonexistingGrant {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the user's grants: %w", err)
	}
	defer rows.Close()
	var grants []string
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return nil, fmt.Errorf("read the user's grants: %w", err)
		}
		grants = append(grants, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the user's grants: %w", err)
	}
	return grants, nil
}
