package postgres

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strings"
	"sync"
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
// "credbroker:created=<RFC 3339>", then ";revocation_statements=<key>" where
// the role has revocation_statements and ";reassign_owned_to=<role>" (the
// name percent-encoded) where it has reassign_owned_to. PostgreSQL does not
// record when a role was made, so the sweep reads it from here; and since
// only a superuser or a role with CREATEROLE may comment on a role, a role
// whose comment starts with it is one the plugin made, whatever else the
// role's holder did.
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

// revocations maps a key (a hash of the statements) to revocation statements.
//
// Plugin.Revoke is given only a username, not the role the user was issued
// for, so Create records the key in a comment on the role and Revoke looks the
// statements up here. Every broker replica parses the same configuration, so
// the key resolves in whichever replica revokes, also after a restart. The
// registry holds only what the configuration says, keyed by its content, so
// sharing it across drivers and plugins is harmless.
var revocations sync.Map // string → []string

// registerRevocation adds statements to the registry and returns their key.
func registerRevocation(statements []string) string {
	sum := sha256.Sum256([]byte(strings.Join(statements, "\x00")))
	key := hex.EncodeToString(sum[:16])
	revocations.LoadOrStore(key, append([]string(nil), statements...))
	return key
}

// roleInfo is what the comment on a role the plugin made records.
type roleInfo struct {
	created         time.Time
	revocationKey   string // names revocation_statements; see registerRevocation
	reassignOwnedTo string // the role's reassign_owned_to, unquoted
}

// roleComment is the comment Create puts on a role.
func roleComment(info roleInfo) string {
	c := commentPrefix + "created=" + info.created.UTC().Format(time.RFC3339)
	if info.revocationKey != "" {
		c += ";revocation_statements=" + info.revocationKey
	}
	if info.reassignOwnedTo != "" {
		c += ";reassign_owned_to=" + url.QueryEscape(info.reassignOwnedTo)
	}
	return c
}

// parseRoleComment reads what [roleComment] wrote; ours is false when the
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
		case "revocation_statements":
			info.revocationKey = v
		case "reassign_owned_to":
			info.reassignOwnedTo, _ = url.QueryUnescape(v)
		}
	}
	return info, true
}

// lookupRevocation returns the statements a role's comment names, if this
// process knows them.
func lookupRevocation(comment string) ([]string, bool) {
	info, _ := parseRoleComment(comment)
	key := info.revocationKey
	if key == "" {
		return nil, false
	}
	v, ok := revocations.Load(key)
	if !ok {
		return nil, false
	}
	return v.([]string), true
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
