package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
)

// memberOptionsVersion is the first server_version_num whose GRANT takes
// WITH INHERIT … , SET … (PostgreSQL 16).
const memberOptionsVersion = 160000

// markerGrant returns the statement that makes the quoted user name a member
// of the marker role on a server of version (server_version_num), or "" where
// issued users are not members: before PostgreSQL 16 every membership lets
// the member SET ROLE to the marker and own objects as it, so there the
// marker is not granted at all. From 16 on the membership neither inherits
// nor allows SET ROLE, so it only serves pg_hba.conf's +credbroker_managed.
func markerGrant(version int, name string) string {
	if version < memberOptionsVersion {
		return ""
	}
	return "GRANT " + ident(markerRole) + " TO " + name + " WITH INHERIT FALSE, SET FALSE"
}

// markerMembersQuery lists the members of the marker role whose comment is
// ours, with whether the membership lets them act as the marker ($2: the
// server has the PostgreSQL 16 membership options).
const markerMembersQuery = `
SELECT u.rolname, CASE WHEN $2 THEN bool_or(COALESCE((to_jsonb(m) ->> 'inherit_option')::bool, true)
                                         OR COALESCE((to_jsonb(m) ->> 'set_option')::bool, true))
                       ELSE true END
FROM pg_auth_members m
JOIN pg_roles g ON g.oid = m.roleid
JOIN pg_roles u ON u.oid = m.member
JOIN pg_shdescription d ON d.objoid = u.oid AND d.classoid = 'pg_authid'::regclass
WHERE g.rolname = $1 AND starts_with(d.description, $3)
GROUP BY u.rolname ORDER BY 1`

// upgradeMarker takes back from the users an older release issued what
// their marker membership let them do: on PostgreSQL 15 and older it revokes
// the membership (the comment still marks them as ours, so they stay
// revocable); on 16 and later it grants it again WITH INHERIT FALSE, SET
// FALSE. Users dropped meanwhile are skipped. Other members of the marker are
// left alone: the plugin did not make them.
func (p *Plugin) upgradeMarker(ctx context.Context) error {
	rows, err := p.pool.Query(ctx, markerMembersQuery, markerRole, p.version >= memberOptionsVersion, commentPrefix)
	if err != nil {
		return fmt.Errorf("list the members of %s: %w", markerRole, err)
	}
	type member struct {
		name   string
		strong bool
	}
	members, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (member, error) {
		var m member
		return m, r.Scan(&m.name, &m.strong)
	})
	if err != nil {
		return fmt.Errorf("list the members of %s: %w", markerRole, err)
	}
	for _, m := range members {
		if !m.strong {
			continue
		}
		sql := markerGrant(p.version, ident(m.name))
		if sql == "" {
			sql = "REVOKE " + ident(markerRole) + " FROM " + ident(m.name)
		}
		if _, err := p.pool.Exec(ctx, sql); err != nil && sqlState(err) != pgerrcode.UndefinedObject {
			return fmt.Errorf("take %s's membership of %s back: %w", ident(m.name), markerRole, err)
		}
	}
	return nil
}

// markerOwnsQuery lists, per database, how many objects the marker role
// owns or holds privileges on (dbid 0: shared objects, such as databases).
const markerOwnsQuery = `
SELECT COALESCE(d.datname, ''), count(*)
FROM pg_shdepend s
JOIN pg_roles r ON r.oid = s.refobjid
LEFT JOIN pg_database d ON d.oid = s.dbid
WHERE s.refclassid = 'pg_authid'::regclass AND r.rolname = $1
GROUP BY 1 ORDER BY 1`

// markerWarnings reports what the marker role owns or was granted: holders
// of an older release could act as the marker, and what they made as it
// outlives every revoke.
func (p *Plugin) markerWarnings(ctx context.Context) ([]string, error) {
	rows, err := p.pool.Query(ctx, markerOwnsQuery, markerRole)
	if err != nil {
		return nil, err
	}
	type owned struct {
		database string
		n        int64
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (owned, error) {
		var o owned
		return o, r.Scan(&o.database, &o.n)
	})
	if err != nil || len(found) == 0 {
		return nil, err
	}
	var where []string
	for _, o := range found {
		if o.database == "" {
			where = append(where, fmt.Sprintf("%d shared objects (databases or tablespaces)", o.n))
			continue
		}
		where = append(where, fmt.Sprintf("%d in database %s", o.n, ident(o.database)))
	}
	return []string{fmt.Sprintf("the marker role %s owns or holds privileges on objects (%s): "+
		"issued users of an older credbroker could SET ROLE to it, and what they made as it outlives every revoke; "+
		"review them, then in each of those databases run DROP OWNED BY %s "+
		"(or first REASSIGN OWNED BY %s TO a role you trust, to keep them)",
		markerRole, strings.Join(where, ", "), markerRole, markerRole)}, nil
}
