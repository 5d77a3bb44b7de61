package mysql

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A holder with CREATE ROUTINE, CREATE VIEW, TRIGGER or EVENT can leave
// objects whose DEFINER is its account. SQL SECURITY DEFINER routines and
// views, triggers and events run with the definer's rights, so they would
// outlive the lease; MySQL 8.0.22+ also refuses DROP USER while they exist,
// and MariaDB drops the user and leaves them orphaned. Revoke drops them,
// as PostgreSQL's revoke drops what a user owns.

// definerObject is a stored object whose DEFINER is an issued user.
type definerObject struct {
	kind   string // EVENT, PROCEDURE, FUNCTION, PACKAGE, PACKAGE BODY, TRIGGER or VIEW
	schema string
	name   string
}

// leftovers is what a user has on the server besides its accounts: the
// sessions to end and the objects it is the definer of.
type leftovers struct {
	sessions []uint64
	objects  []definerObject
}

// sessionKind marks the rows of leftoversSQL that are sessions.
const sessionKind = "SESSION"

// scanSchemas are the schemas the look-up for definer objects reads: every
// schema but the system ones. No holder can make an object there: ParseRole
// refuses every privilege on them (refuse.go), in grants and in creation
// statements alike, and information_schema and performance_schema hold no
// stored objects at all. Only an account that may name any DEFINER (SUPER,
// SET USER) could put one there, and it could do anything else too. The
// admin the docs describe sees no object in sys at all; a root admin would
// otherwise open each of the hundred views MariaDB's sys schema ships with
// to read its DEFINER, on every revoke (13 of the look-up's 17 to 22 ms in
// the bench).
const scanSchemas = " NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys')"

// sessionsSQL returns the query for the sessions of username, rows of
// leftoversSQL's shape. username must be one checkUsername accepts (letters,
// digits and _), so it is written as a literal: a bound value would cost a
// PREPARE round trip of its own.
func sessionsSQL(username string) string {
	return "SELECT '" + sessionKind + "', '', '', '', ID FROM information_schema.PROCESSLIST WHERE USER = " +
		quoteString(username) + " AND ID <> CONNECTION_ID()"
}

// definerObjectsSQL returns the query for the objects whose DEFINER is an
// account of username (LIKE 'username@%', which needs no escaping beyond
// likePrefix's for a name checkUsername accepts), events first: an event
// could make new objects while the others are dropped.
func definerObjectsSQL(username string) string {
	like := " LIKE " + quoteString(likePrefix(username+"@")) + " ESCAPE '" + likeEscape + "'"
	return "SELECT 'EVENT', EVENT_SCHEMA, EVENT_NAME, DEFINER, 0 FROM information_schema.EVENTS" +
		" WHERE DEFINER" + like + " AND EVENT_SCHEMA" + scanSchemas +
		" UNION ALL SELECT ROUTINE_TYPE, ROUTINE_SCHEMA, ROUTINE_NAME, DEFINER, 0 FROM information_schema.ROUTINES" +
		" WHERE DEFINER" + like + " AND ROUTINE_SCHEMA" + scanSchemas +
		" UNION ALL SELECT 'TRIGGER', TRIGGER_SCHEMA, TRIGGER_NAME, DEFINER, 0 FROM information_schema.TRIGGERS" +
		" WHERE DEFINER" + like + " AND TRIGGER_SCHEMA" + scanSchemas +
		" UNION ALL SELECT 'VIEW', TABLE_SCHEMA, TABLE_NAME, DEFINER, 0 FROM information_schema.VIEWS" +
		" WHERE DEFINER" + like + " AND TABLE_SCHEMA" + scanSchemas
}

// leftoversSQL returns the one query for both the sessions of username and
// the objects it is the definer of: Revoke needs both once the accounts
// are locked, and one round trip costs less than two.
func leftoversSQL(username string) string {
	return sessionsSQL(username) + " UNION ALL " + definerObjectsSQL(username)
}

// maxDefinerRounds bounds how often dropDefinerObjects looks again: a
// routine another account calls while the holder's objects are dropped
// could make new ones.
const maxDefinerRounds = 3

// lookUp runs query, one of the above, for username. The admin sees the
// objects it has privileges on: CheckRole makes sure it has them where a
// role lets holders make objects.
func (p *Plugin) lookUp(ctx context.Context, username, query string) (leftovers, error) {
	if err := checkUsername(username); err != nil {
		return leftovers{}, err // written into the query: never anything else
	}
	rows, err := p.db.QueryContext(ctx, query)
	if err != nil {
		return leftovers{}, err
	}
	defer rows.Close()
	var left leftovers
	for rows.Next() {
		var o definerObject
		var definer string
		var id uint64
		if err := rows.Scan(&o.kind, &o.schema, &o.name, &definer, &id); err != nil {
			return leftovers{}, err
		}
		switch {
		case o.kind == sessionKind:
			left.sessions = append(left.sessions, id)
		case strings.HasPrefix(definer, username+"@"): // LIKE compares user names without case; they have case
			left.objects = append(left.objects, o)
		}
	}
	return left, rows.Err()
}

// definerObjects returns the objects whose DEFINER is an account of
// username, events first.
func (p *Plugin) definerObjects(ctx context.Context, username string) ([]definerObject, error) {
	left, err := p.lookUp(ctx, username, definerObjectsSQL(username))
	if err != nil {
		return nil, fmt.Errorf("look up the objects the user is the definer of: %w", err)
	}
	return left.objects, nil
}

// endSessions kills every session of username.
func (p *Plugin) endSessions(ctx context.Context, username string) error {
	left, err := p.lookUp(ctx, username, sessionsSQL(username))
	if err != nil {
		return fmt.Errorf("find the user's sessions: %w", err)
	}
	return p.kill(ctx, left.sessions)
}

// endSessionsFindObjects kills every session of username and returns the
// objects it is the definer of. Both come from one look-up when it finds no
// session: then nothing of the user's can make an object before the
// objects are dropped, for what could (an event, a routine) would have been
// found, and dropDefinerObjects looks again once it has dropped them. When
// the look-up finds sessions, they are killed and the objects looked up
// again, after them, as they may have made some meanwhile.
func (p *Plugin) endSessionsFindObjects(ctx context.Context, username string) ([]definerObject, error) {
	left, err := p.lookUp(ctx, username, leftoversSQL(username))
	if err != nil {
		return nil, fmt.Errorf("find the user's sessions and the objects it is the definer of: %w", err)
	}
	if len(left.sessions) == 0 {
		return left.objects, nil
	}
	if err := p.kill(ctx, left.sessions); err != nil {
		return nil, err
	}
	return p.definerObjects(ctx, username)
}

// kill ends the sessions ids. A thread that ended meanwhile is no error.
func (p *Plugin) kill(ctx context.Context, ids []uint64) error {
	for _, id := range ids {
		// KILL takes no bind parameters; id is an integer the server gave.
		_, err := p.db.ExecContext(ctx, "KILL CONNECTION "+strconv.FormatUint(id, 10))
		if err != nil && serverError(err) != erNoSuchThread {
			return fmt.Errorf("end session %d: %w", id, err)
		}
	}
	return nil
}

// dropDefinerSQL returns the statement that drops o; the same on MySQL and
// MariaDB (PACKAGE is MariaDB's alone).
func dropDefinerSQL(o definerObject) (string, error) {
	switch o.kind {
	case "EVENT", "PROCEDURE", "FUNCTION", "PACKAGE", "PACKAGE BODY", "TRIGGER", "VIEW":
		return "DROP " + o.kind + " IF EXISTS " + quoteIdent(o.schema) + "." + quoteIdent(o.name), nil
	}
	return "", fmt.Errorf("%s %s.%s: credbroker does not know how to drop a %s", o.kind, quoteIdent(o.schema), quoteIdent(o.name), o.kind)
}

// dropDefinerObjects drops objects, which a look-up found for username,
// then looks again until none is left.
func (p *Plugin) dropDefinerObjects(ctx context.Context, username string, objects []definerObject) error {
	for round := 0; len(objects) > 0; round++ {
		if round == maxDefinerRounds {
			return fmt.Errorf("objects whose definer is the user keep appearing (%s %s.%s …)",
				objects[0].kind, quoteIdent(objects[0].schema), quoteIdent(objects[0].name))
		}
		var errs []error
		for _, o := range objects {
			stmt, err := dropDefinerSQL(o)
			if err == nil {
				_, err = p.db.ExecContext(ctx, stmt)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("drop %s %s.%s, whose definer is the user: %w", o.kind, quoteIdent(o.schema), quoteIdent(o.name), err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		var err error
		if objects, err = p.definerObjects(ctx, username); err != nil {
			return err
		}
	}
	return nil
}
