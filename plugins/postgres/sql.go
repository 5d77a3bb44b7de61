package postgres

import (
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// markerRole is the NOLOGIN role that marks, for operators, the roles the
// broker made. On PostgreSQL 16 and later issued users are members of it
// WITH INHERIT FALSE, SET FALSE, so pg_hba.conf can name +credbroker_managed
// while no holder can act as it; on 15 and older, where every membership
// lets the member SET ROLE, they are not members at all. What tells the
// plugin a role is its own is the role's comment (see [roleComment]).
const markerRole = "credbroker_managed"

// grantLockKey is the pg_advisory_xact_lock key that serializes ACL changes
// (explicit grants, creation and revocation statements, dropping a user's
// grants) in one database, across every broker replica: PostgreSQL fails
// concurrent ACL updates of one table with "tuple concurrently updated" or a
// deadlock. It spells "credbrkr".
const grantLockKey int64 = 0x637265646272_6b72

// commentPrefix starts the COMMENT ON ROLE of every role the plugin makes:
// "credbroker:created=<RFC 3339>". PostgreSQL does not record when a role
// was made, so the sweep reads it from here; and since only a superuser or a
// role with CREATEROLE may comment on a role, a role whose comment starts
// with it is one the plugin made, whatever else the role's holder did.
// Releases before contract v2 appended what Revoke needed (see
// parseRoleComment); that is now in each lease's state.
const commentPrefix = "credbroker:"

// ident quotes one identifier.
func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// quoteLiteral quotes s as a string constant whatever the server's
// standard_conforming_strings: single quotes are doubled, and when s holds a
// backslash the constant is an escape string (E'…') with backslashes doubled.
// NUL bytes, which no PostgreSQL string can hold, are dropped.
func quoteLiteral(s string) string {
	s = strings.ReplaceAll(s, "\x00", "")
	s = strings.ReplaceAll(s, `'`, `''`)
	if strings.Contains(s, `\`) {
		return `E'` + strings.ReplaceAll(s, `\`, `\\`) + `'`
	}
	return `'` + s + `'`
}

// timestampLiteral quotes t as a timestamptz constant, in UTC to the
// microsecond.
func timestampLiteral(t time.Time) string {
	return quoteLiteral(t.UTC().Format("2006-01-02 15:04:05.999999") + "+00")
}

// templateValues are the quoted values of creation and revocation statement
// placeholders.
type templateValues struct {
	name       string // the username, unquoted
	verifier   string // the SCRAM verifier, unquoted; empty in revocation statements
	expiration time.Time
}

// render substitutes the placeholders in stmt. {{name}} (and its Vault alias
// {{username}}) becomes the quoted identifier, {{password}} the quoted SCRAM
// verifier and {{expiration}} the quoted timestamp. Vault statements quote
// placeholders themselves ("{{name}}", '{{password}}'), so a placeholder
// already inside quotes is replaced with its quotes: '{{name}}' becomes the
// name as a string constant, which is what a statement such as
// WHERE usename = '{{name}}' means.
func render(stmt string, v templateValues) string {
	id, lit := ident(v.name), quoteLiteral(v.name)
	pairs := []string{
		`"{{name}}"`, id, `"{{username}}"`, id,
		`'{{name}}'`, lit, `'{{username}}'`, lit,
		`{{name}}`, id, `{{username}}`, id,
	}
	if v.verifier != "" {
		pw := quoteLiteral(v.verifier)
		pairs = append(pairs, `'{{password}}'`, pw, `{{password}}`, pw)
	}
	if !v.expiration.IsZero() {
		ts := timestampLiteral(v.expiration)
		pairs = append(pairs, `'{{expiration}}'`, ts, `{{expiration}}`, ts)
	}
	return strings.NewReplacer(pairs...).Replace(stmt)
}

// roleInfo is what the comment on a role the plugin made records.
type roleInfo struct {
	created time.Time
	// v2 says the user was issued by a release on contract v2, which keeps
	// what Revoke needs in the lease's state, not here (";contract=2").
	v2 bool
	// revocationKey and reassignOwnedTo are only in the comments of users an
	// earlier release issued, which kept there what Revoke needs; see
	// legacyState.
	revocationKey   string // names the role's revocation_statements; see legacyRevocationKey
	reassignOwnedTo string // the role's reassign_owned_to, unquoted
}

// roleComment is the comment Create puts on a role: the marker and the
// date, nothing Revoke needs (that is in the lease's state).
func roleComment(created time.Time) string {
	return commentPrefix + "created=" + created.UTC().Format(time.RFC3339) + ";contract=2"
}

// parseRoleComment reads what [roleComment] wrote, and the fields an earlier
// release also wrote (";revocation_statements=<key>",
// ";reassign_owned_to=<role, percent-encoded>"); ours is false when the
// comment is not one the plugin writes. Fields it cannot read are zero.
func parseRoleComment(comment string) (info roleInfo, ours bool) {
	rest, ok := strings.CutPrefix(comment, commentPrefix)
	if !ok {
		return roleInfo{}, false
	}
	for field := range strings.SplitSeq(rest, ";") {
		k, v, _ := strings.Cut(field, "=")
		switch k {
		case "created":
			info.created, _ = time.Parse(time.RFC3339, v)
		case "contract":
			info.v2 = v == "2"
		case "revocation_statements":
			info.revocationKey = v
		case "reassign_owned_to":
			info.reassignOwnedTo, _ = url.QueryUnescape(v)
		}
	}
	return info, true
}

// adminSearchPath is the search_path of every admin connection: the catalog
// only, so no object a holder creates can stand in for a built-in function
// or table the broker's own statements name.
const adminSearchPath = "pg_catalog, pg_temp"

// operatorPath and adminPath switch a transaction to PostgreSQL's default
// search_path for the operator's creation and revocation statements (which
// may name tables without their schema), and back before the broker's own
// statements run.
var (
	operatorPath = step{what: "use the default search_path for the operator's statements", sql: `SET LOCAL search_path TO "$user", public`}
	adminPath    = step{what: "restore the admin search_path", sql: "SET LOCAL search_path TO " + adminSearchPath}
)
