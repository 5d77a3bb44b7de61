package mysql

import (
	"context"
	"errors"
	"fmt"
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

// definerObjectsQuery lists the objects whose DEFINER starts with the
// pattern given four times (LIKE 'user@%' with likeEscape), events first:
// an event could make new objects while the others are dropped.
const definerObjectsQuery = `
SELECT 'EVENT', EVENT_SCHEMA, EVENT_NAME, DEFINER FROM information_schema.EVENTS WHERE DEFINER LIKE ? ESCAPE '` + likeEscape + `'
UNION ALL
SELECT ROUTINE_TYPE, ROUTINE_SCHEMA, ROUTINE_NAME, DEFINER FROM information_schema.ROUTINES WHERE DEFINER LIKE ? ESCAPE '` + likeEscape + `'
UNION ALL
SELECT 'TRIGGER', TRIGGER_SCHEMA, TRIGGER_NAME, DEFINER FROM information_schema.TRIGGERS WHERE DEFINER LIKE ? ESCAPE '` + likeEscape + `'
UNION ALL
SELECT 'VIEW', TABLE_SCHEMA, TABLE_NAME, DEFINER FROM information_schema.VIEWS WHERE DEFINER LIKE ? ESCAPE '` + likeEscape + `'`

// maxDefinerRounds bounds how often dropDefinerObjects looks again: a
// routine another account calls while the holder's objects are dropped
// could make new ones.
const maxDefinerRounds = 3

// definerObjects returns the objects whose DEFINER is an account of
// username, events first. The admin sees the objects it has privileges on:
// CheckRole makes sure it has them where a role lets holders make objects.
func (p *Plugin) definerObjects(ctx context.Context, username string) ([]definerObject, error) {
	pattern := likePrefix(username + "@")
	rows, err := p.db.QueryContext(ctx, definerObjectsQuery, pattern, pattern, pattern, pattern)
	if err != nil {
		return nil, fmt.Errorf("look up the objects the user is the definer of: %w", err)
	}
	defer rows.Close()
	var objects []definerObject
	for rows.Next() {
		var o definerObject
		var definer string
		if err := rows.Scan(&o.kind, &o.schema, &o.name, &definer); err != nil {
			return nil, fmt.Errorf("look up the objects the user is the definer of: %w", err)
		}
		// LIKE compares user names without case; user names have case.
		if strings.HasPrefix(definer, username+"@") {
			objects = append(objects, o)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up the objects the user is the definer of: %w", err)
	}
	return objects, nil
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

// dropDefinerObjects drops every object whose DEFINER is an account of
// username, and looks again until none is left.
func (p *Plugin) dropDefinerObjects(ctx context.Context, username string) error {
	for round := 0; ; round++ {
		objects, err := p.definerObjects(ctx, username)
		if err != nil || len(objects) == 0 {
			return err
		}
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
	}
}
