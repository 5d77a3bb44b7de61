package postgres

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/credbroker/credbroker/secret"
)

// defaultMaxConns is the admin pool size when max_conns is not set.
const defaultMaxConns = 4

// Connection is a backend's `connection:` section.
type Connection struct {
	// DSN references (env:NAME or file:/path) the admin connection string, in
	// URL or keyword/value form. The admin needs CREATEROLE (or superuser).
	// Required; resolved when the backend is opened, never when parsed.
	DSN secret.Ref `yaml:"dsn"`
	// MaxConns is the size of the admin connection pool. Default 4.
	MaxConns int32 `yaml:"max_conns"`
	// Host, Port and Database are what issued credentials point at, for when
	// workloads reach the server by another address than the broker does.
	// Default: the admin DSN's.
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	Database string `yaml:"database"`

	// adminPassword, when set, replaces the DSN's password: the admin
	// password the broker rotated (see [Driver.WithAdminPassword]).
	adminPassword secret.Value
}

func (c *Connection) validate() error {
	var errs []error
	if c.DSN.IsZero() {
		errs = append(errs, errors.New(`dsn: required: a reference such as "env:PG_ADMIN_DSN"`))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("max_conns: %d: must be positive", c.MaxConns))
	}
	if c.MaxConns == 0 {
		c.MaxConns = defaultMaxConns
	}
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("port: %d: not a TCP port", c.Port))
	}
	return errors.Join(errs...)
}

// Role is a role's `postgres:` section: what an issued user may do. Exactly
// one form is used: MemberOf and/or Grants, or CreationStatements.
type Role struct {
	// MemberOf lists group roles the user joins and inherits grants from. The
	// preferred form: one catalog row a user, so issuing stays cheap however many
	// leases are live.
	MemberOf []string `yaml:"member_of"`
	// Grants are explicit privileges on tables. Each one grows the ACL of every
	// table it covers, and grants are serialized cluster-wide, so issue cost
	// rises with the number of live leases.
	Grants []Grant `yaml:"grants"`
	// CreationStatements are Vault-style statements that create the user, with
	// {{name}}, {{password}} and {{expiration}} placeholders (see the package
	// documentation for how they are quoted). They must create a role named
	// {{name}} with {{password}}. Excludes MemberOf and Grants.
	CreationStatements []string `yaml:"creation_statements"`
	// RevocationStatements run before the built-in revocation, with the
	// {{name}} placeholder. Optional; the built-in revocation removes the user
	// completely without them. Each lease keeps the statements its user was
	// issued with (in its state), so they run even after the role is changed
	// or removed from the config.
	RevocationStatements []string `yaml:"revocation_statements"`
	// ReassignOwnedTo names a role that receives what an issued user owns
	// when the user is revoked, instead of it being dropped (the default). It
	// must be a NOLOGIN role without SUPERUSER, CREATEROLE, CREATEDB,
	// BYPASSRLS or REPLICATION, that administers no role and is no member of
	// a dangerous role; the broker checks this at start and again at every
	// revoke. Unless the admin is a superuser, the role also needs CREATE on
	// the schemas users create objects in (PostgreSQL checks that of every
	// new owner), and on PostgreSQL 16+ the admin needs ADMIN OPTION on it.
	// Optional. Like RevocationStatements, each lease keeps the value its user
	// was issued with.
	ReassignOwnedTo string `yaml:"reassign_owned_to"`
}

// Grant is one explicit grant on tables of one schema.
type Grant struct {
	// Privileges are table privileges: SELECT, INSERT, UPDATE, DELETE,
	// TRUNCATE, REFERENCES, TRIGGER, or ALL alone. Case does not matter.
	Privileges []string `yaml:"privileges"`
	// Schema holds the tables; the user also gets USAGE on it. Required.
	Schema string `yaml:"schema"`
	// Tables are table names in Schema, or ["*"] for every table that exists
	// in it when the user is created. Required.
	Tables []string `yaml:"tables"`
}

// knownPrivileges are the table privileges a grant may name.
var knownPrivileges = []string{"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "ALL"}

// grantsWarning is the ParseRole warning for roles with explicit grants.
const grantsWarning = "grants: every issued user adds an entry to the ACL of each table a grant covers, " +
	"and grants are serialized across the cluster, so issuing gets slower as live leases pile up " +
	"(measured: from ~140/s to under 10/s by 2 000 live users) and stops altogether when a table's ACL is full " +
	"(about 2 400 users); prefer member_of with a group role that holds the grants"

// placeholder matches a {{…}} template placeholder.
var placeholder = regexp.MustCompile(`\{\{[^{}]*\}\}`)

func (r *Role) validate() (warnings []string, err error) {
	var errs []error
	if len(r.MemberOf) == 0 && len(r.Grants) == 0 && len(r.CreationStatements) == 0 {
		errs = append(errs, errors.New("one of member_of, grants or creation_statements is required"))
	}
	if len(r.CreationStatements) > 0 && (len(r.MemberOf) > 0 || len(r.Grants) > 0) {
		errs = append(errs, errors.New("creation_statements: cannot be combined with member_of or grants: "+
			"put the grants in the statements"))
	}
	for i, m := range r.MemberOf {
		switch {
		case strings.TrimSpace(m) == "":
			errs = append(errs, fmt.Errorf("member_of[%d]: empty role name", i))
		case m == markerRole:
			errs = append(errs, fmt.Errorf("member_of[%d]: %q is the marker role credbroker manages itself: "+
				"name a group role that holds the grants", i, m))
		}
	}
	if t := r.ReassignOwnedTo; t != "" {
		if err := validateReassignTarget(t); err != nil {
			errs = append(errs, fmt.Errorf("reassign_owned_to: %w", err))
		} else if slices.Contains(r.MemberOf, t) {
			errs = append(errs, fmt.Errorf("reassign_owned_to: %q is also in member_of: every holder could use what revoked users leave; "+
				"name a NOLOGIN role no issued user is a member of", t))
		}
	}
	for i := range r.Grants {
		errs = append(errs, r.Grants[i].validate(fmt.Sprintf("grants[%d]", i)))
	}
	if len(r.Grants) > 0 {
		warnings = append(warnings, grantsWarning)
	}
	errs = append(errs, validateStatements("creation_statements", r.CreationStatements,
		[]string{"name", "username", "password", "expiration"}))
	if len(r.CreationStatements) > 0 {
		all := strings.Join(r.CreationStatements, "\n")
		if !strings.Contains(all, "{{name}}") && !strings.Contains(all, "{{username}}") {
			errs = append(errs, errors.New("creation_statements: no statement uses {{name}}: they must create the issued user"))
		}
		if !strings.Contains(all, "{{password}}") {
			errs = append(errs, errors.New("creation_statements: no statement uses {{password}}: the issued password would not work"))
		}
		if !strings.Contains(all, "{{expiration}}") {
			warnings = append(warnings, "creation_statements: no statement uses {{expiration}}: "+
				"PostgreSQL will not expire the user by itself, only the broker's reaper will")
		}
	}
	errs = append(errs, validateStatements("revocation_statements", r.RevocationStatements,
		[]string{"name", "username"}))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// What Revoke needs is kept beside every lease, which holds only so much.
	if _, err := stateOf(r).encode(); err != nil {
		return nil, fmt.Errorf("revocation_statements: too long: %w", err)
	}
	return warnings, nil
}

// validateReassignTarget checks what can be known of a reassign_owned_to
// role without the server: it is a plausible role name of the operator's
// own, neither the marker role nor a predefined role.
func validateReassignTarget(t string) error {
	switch {
	case strings.TrimSpace(t) == "" || strings.ContainsRune(t, 0):
		return fmt.Errorf("%q is not a role name: name a NOLOGIN role, or leave it out to drop what users own", t)
	case len(t) > 63:
		return fmt.Errorf("%q is %d bytes: PostgreSQL role names hold 63", t, len(t))
	case t == markerRole:
		return fmt.Errorf("%q is the marker role: name a NOLOGIN role of your own", t)
	case strings.HasPrefix(t, "pg_"):
		return fmt.Errorf("%q is a predefined role: name a NOLOGIN role of your own", t)
	}
	return nil
}

func (g *Grant) validate(field string) error {
	var errs []error
	if len(g.Privileges) == 0 {
		errs = append(errs, fmt.Errorf("%s.privileges: required, e.g. [SELECT]", field))
	}
	for i, p := range g.Privileges {
		norm := strings.ToUpper(strings.TrimSpace(p))
		if norm == "ALL PRIVILEGES" {
			norm = "ALL"
		}
		if !slices.Contains(knownPrivileges, norm) {
			errs = append(errs, fmt.Errorf("%s.privileges[%d]: unknown privilege %q (known: %s)",
				field, i, p, strings.Join(knownPrivileges, ", ")))
			continue
		}
		if norm == "ALL" && len(g.Privileges) > 1 {
			errs = append(errs, fmt.Errorf("%s.privileges[%d]: ALL cannot be combined with other privileges", field, i))
		}
		g.Privileges[i] = norm
	}
	if strings.TrimSpace(g.Schema) == "" {
		errs = append(errs, fmt.Errorf("%s.schema: required, e.g. public", field))
	}
	if len(g.Tables) == 0 {
		errs = append(errs, fmt.Errorf(`%s.tables: required: table names, or ["*"] for all tables in the schema`, field))
	}
	for i, t := range g.Tables {
		switch {
		case t == "*" && len(g.Tables) > 1:
			errs = append(errs, fmt.Errorf(`%s.tables[%d]: "*" already means every table: list it alone`, field, i))
		case strings.TrimSpace(t) == "":
			errs = append(errs, fmt.Errorf("%s.tables[%d]: empty table name", field, i))
		case strings.Contains(t, "."):
			errs = append(errs, fmt.Errorf("%s.tables[%d]: %q: give the table name only, and its schema as schema", field, i, t))
		}
	}
	return errors.Join(errs...)
}

// validateStatements checks that statements are non-empty and use only the
// allowed placeholders.
func validateStatements(field string, statements []string, allowed []string) error {
	var errs []error
	for i, s := range statements {
		if strings.TrimSpace(s) == "" {
			errs = append(errs, fmt.Errorf("%s[%d]: empty statement", field, i))
		}
		for _, p := range placeholder.FindAllString(s, -1) {
			if !slices.Contains(allowed, strings.Trim(p, "{}")) {
				errs = append(errs, fmt.Errorf("%s[%d]: unknown placeholder %q (allowed: {{%s}})",
					field, i, p, strings.Join(allowed, "}}, {{")))
			}
		}
	}
	return errors.Join(errs...)
}
