package mysql

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// defaultMaxConns is the admin pool size when max_conns is not set.
const defaultMaxConns = 4

// defaultAccountHost is the host part of issued accounts when a role does not
// set one: any host.
const defaultAccountHost = "%"

// Connection is a backend's `connection:` section.
type Connection struct {
	// DSN references (env:NAME or file:/path) the admin DSN in
	// go-sql-driver/mysql form, such as root:pw@tcp(127.0.0.1:3306)/. The
	// admin needs CREATE USER, PROCESS, CONNECTION ADMIN (or SUPER), SELECT
	// on the mysql database, on MySQL 8 SET_ANY_DEFINER or SET_USER_ID, and
	// every privilege the roles grant, with GRANT OPTION; where a role grants
	// CREATE ROUTINE, CREATE VIEW, TRIGGER or EVENT, also ALTER ROUTINE,
	// DROP, TRIGGER or EVENT there, to drop what holders leave. Off loopback,
	// give it tls=true. Required; resolved when the backend is opened, never
	// when parsed.
	DSN secret.Ref `yaml:"dsn"`
	// Host and Port are what issued credentials point at, for when workloads
	// reach the server by another address than the broker does. Default: the
	// admin DSN's TCP address. An admin DSN over a Unix socket names no TCP
	// address, so it needs Host (Port then defaults to 3306).
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// MaxConns is the size of the admin connection pool. Default 4.
	MaxConns int `yaml:"max_conns"`

	// adminPassword, when set, replaces the DSN's password: the admin
	// password the broker rotated (see [Driver.WithAdminPassword]).
	adminPassword secret.Value
}

func (c *Connection) validate() error {
	var errs []error
	if c.DSN.IsZero() {
		errs = append(errs, errors.New(`dsn: required: a reference such as "env:MYSQL_ADMIN_DSN"`))
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
	if strings.ContainsAny(c.Host, " \t\r\n/@") {
		errs = append(errs, fmt.Errorf("host: %q: give a host name or IP address only", c.Host))
	}
	return errors.Join(errs...)
}

// Role is a role's `mysql:` section: what an issued user may do. Exactly one
// of Grants and CreationStatements is used.
type Role struct {
	// Grants are the privileges of the issued account, one GRANT statement
	// each.
	Grants []Grant `yaml:"grants"`
	// CreationStatements are Vault-style statements that create the account,
	// with {{name}} (alias {{username}}) and {{password}} placeholders. An
	// entry may hold several statements separated by semicolons. GRANT
	// statements are held to the rules of Grants (nothing on the system
	// schemas, only SHOW DATABASES, SHOW VIEW and USAGE on *.*, no administrative
	// privilege, no WITH GRANT OPTION, no roles or PROXY); CREATE, ALTER and
	// DROP USER, REVOKE and SET PASSWORD may name only '{{name}}'; RENAME
	// USER and role statements are refused. Other statements are not
	// checked, and ParseRole warns about each. {{password}}
	// is accepted only in IDENTIFIED BY '{{password}}' and its
	// mysql_native_password variants, which are rewritten to send a hash of
	// the password instead of the password (see the package documentation).
	// Excludes Grants and Host.
	CreationStatements []string `yaml:"creation_statements"`
	// RevocationStatements run before the built-in revocation, with the
	// {{name}} placeholder. Optional: DROP USER removes every privilege of the
	// account without them. Their GRANT and account statements are held to
	// the rules of CreationStatements. Create keeps them in the lease's
	// State, so a user revokes with the statements its role had when it was
	// made, also once the role is changed or removed; together they must fit
	// in [plugins.MaxStateSize] bytes.
	RevocationStatements []string `yaml:"revocation_statements"`
	// Host is the host part of the issued account ('name'@'host'), a host
	// name, IP address or pattern. Default "%", any host. Only with Grants:
	// creation statements name the host themselves.
	Host string `yaml:"host"`

	// statementGrants are the grants the GRANT statements of
	// CreationStatements give on databases and tables, for CheckRole.
	statementGrants []Grant
}

// Grant is one GRANT of privileges on a database, a table or everything.
type Grant struct {
	// Privileges are MySQL privilege names such as SELECT or INSERT, or ALL
	// alone; case does not matter. SHOW DATABASES, the one global privilege
	// accepted, needs on "*.*", and database privileges (EXECUTE, LOCK
	// TABLES …) a database. Refused everywhere: GRANT OPTION, SUPER, FILE,
	// PROCESS, SHUTDOWN, CREATE USER, RELOAD, PROXY, the replication and
	// binary log privileges and MariaDB's other administrative ones, since
	// each lets a holder make accounts, read other accounts' secrets or
	// reach the server itself.
	Privileges []string `yaml:"privileges"`
	// On is what the privileges apply to: "db.table", "db.*" or "*.*". No
	// privilege is accepted on the system schemas (mysql, sys,
	// performance_schema, information_schema, in any case), and on "*.*"
	// only SHOW DATABASES, SHOW VIEW and USAGE. A name
	// holding a dot or a backtick is written in backticks ("`my.db`.*").
	// Names are always quoted when rendered, and the wildcards _ and % in a
	// database name are escaped, so "orders_db.*" never matches ordersXdb.
	// Required.
	On string `yaml:"on"`

	// db and table are On parsed; "*" is the wildcard.
	db, table string
	// source names a grant read from creation_statements in errors.
	source string
}

// level is how wide a privilege's scope may be.
type level int

const (
	tableLevel    level = iota // on db.table, db.* or *.*
	databaseLevel              // on db.* or *.*
	globalLevel                // on *.* only
)

// privileges are the privileges a grant may name, by the narrowest object
// they can be granted on: an allow-list. refusedPrivileges (refuse.go) says
// why the administrative ones are not here.
var privileges = map[string]level{
	"ALL":                     tableLevel,
	"ALTER":                   tableLevel,
	"CREATE":                  tableLevel,
	"CREATE VIEW":             tableLevel,
	"DELETE":                  tableLevel,
	"DELETE HISTORY":          tableLevel, // MariaDB only
	"DROP":                    tableLevel,
	"INDEX":                   tableLevel,
	"INSERT":                  tableLevel,
	"REFERENCES":              tableLevel,
	"SELECT":                  tableLevel,
	"SHOW VIEW":               tableLevel,
	"TRIGGER":                 tableLevel,
	"UPDATE":                  tableLevel,
	"USAGE":                   tableLevel, // no privilege at all: GRANT USAGE ON *.* … REQUIRE SSL
	"ALTER ROUTINE":           databaseLevel,
	"CREATE ROUTINE":          databaseLevel,
	"CREATE TEMPORARY TABLES": databaseLevel,
	"EVENT":                   databaseLevel,
	"EXECUTE":                 databaseLevel,
	"LOCK TABLES":             databaseLevel,
	"SHOW DATABASES":          globalLevel,
}

// knownPrivileges returns the names of privileges, sorted, for error messages.
func knownPrivileges() string {
	names := make([]string, 0, len(privileges))
	for p := range privileges {
		names = append(names, p)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// maxIdentifier is the longest database or table name MySQL accepts, in
// characters.
const maxIdentifier = 64

// hostPattern is what an account host may hold: host names, IP addresses,
// netmasks and the wildcards % and _. No quotes or backslashes, so a host is
// always safe inside a string literal.
var hostPattern = regexp.MustCompile(`^[A-Za-z0-9.%_:/-]{1,255}$`)

func (r *Role) validate() (warnings []string, err error) {
	var errs []error
	switch {
	case len(r.Grants) == 0 && len(r.CreationStatements) == 0:
		errs = append(errs, errors.New("one of grants or creation_statements is required"))
	case len(r.Grants) > 0 && len(r.CreationStatements) > 0:
		errs = append(errs, errors.New("creation_statements: cannot be combined with grants: put the grants in the statements"))
	}
	if r.Host != "" {
		if len(r.CreationStatements) > 0 {
			errs = append(errs, errors.New("host: applies to grants only: creation_statements name the account's host themselves"))
		} else if !hostPattern.MatchString(r.Host) {
			errs = append(errs, fmt.Errorf("host: %q: give a host name, IP address, netmask or pattern such as 10.0.%% (letters, digits and .%%_:/- only)", r.Host))
		}
	}
	for i := range r.Grants {
		field := fmt.Sprintf("grants[%d]", i)
		errs = append(errs, r.Grants[i].validate(field))
		if r.Grants[i].db == "*" {
			warnings = append(warnings, field+`.on: "*.*" applies the privileges to every database, the mysql system database included`)
		}
	}
	errs = append(errs, validateCreation(r.CreationStatements))
	statementGrants, unchecked, err := checkCreationStatements(r.CreationStatements)
	r.statementGrants = statementGrants
	errs = append(errs, err)
	warnings = append(warnings, unchecked...)
	errs = append(errs, validateStatements("revocation_statements", r.RevocationStatements, []string{"name", "username"}))
	errs = append(errs, checkRevocationStatements(r.RevocationStatements))
	if n := len(newState(r)); n > plugins.MaxStateSize {
		errs = append(errs, fmt.Errorf("revocation_statements: %d bytes as the lease's state, which holds them: "+
			"at most %d fit", n, plugins.MaxStateSize))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return warnings, nil
}

// host returns the host part of issued accounts.
func (r *Role) host() string {
	if r.Host == "" {
		return defaultAccountHost
	}
	return r.Host
}

// database returns the database issued credentials name: the first grant's,
// when it is one database, else "".
func (r *Role) database() string {
	if len(r.Grants) == 0 || r.Grants[0].db == "*" {
		return ""
	}
	return r.Grants[0].db
}

func (g *Grant) validate(field string) error {
	var errs []error
	if strings.TrimSpace(g.On) == "" {
		errs = append(errs, fmt.Errorf(`%s.on: required: "db.table", "db.*" or "*.*"`, field))
	} else if db, table, err := parseOn(g.On); err != nil {
		errs = append(errs, fmt.Errorf("%s.on: %q: %w", field, g.On, err))
	} else {
		g.db, g.table = db, table
	}
	if len(g.Privileges) == 0 {
		errs = append(errs, fmt.Errorf("%s.privileges: required, e.g. [SELECT]", field))
	}
	seen := map[string]bool{}
	for i, p := range g.Privileges {
		norm := normalizePrivilege(p)
		path := fmt.Sprintf("%s.privileges[%d]", field, i)
		switch {
		case norm == "ALL" && len(g.Privileges) > 1:
			errs = append(errs, fmt.Errorf("%s: ALL cannot be combined with other privileges", path))
		case seen[norm]:
			errs = append(errs, fmt.Errorf("%s: %s is listed twice", path, norm))
		case g.db == "": // on is invalid: reported above, but a refused privilege is refused anywhere
			if why, ok := refusedPrivileges[norm]; ok {
				errs = append(errs, fmt.Errorf("%s: %s is refused: %s", path, norm, why))
			} else if _, ok := privileges[norm]; !ok {
				errs = append(errs, fmt.Errorf("%s: unknown privilege %q (known: %s)", path, p, knownPrivileges()))
			}
		default:
			if err := checkPrivilege(norm, g.db, g.table, false); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", path, err))
			}
		}
		seen[norm] = true
		g.Privileges[i] = norm
	}
	return errors.Join(errs...)
}

// normalizePrivilege upper-cases p and collapses its blanks; ALL PRIVILEGES
// becomes ALL.
func normalizePrivilege(p string) string {
	norm := strings.Join(strings.Fields(strings.ToUpper(p)), " ")
	if norm == "ALL PRIVILEGES" {
		return "ALL"
	}
	return norm
}

// parseOn parses "db.table", "db.*" or "*.*", where a name may be written in
// backticks (with “ for a backtick inside). "*" stands for every database or
// table; a database wildcard needs a table wildcard.
func parseOn(on string) (db, table string, err error) {
	on = strings.TrimSpace(on)
	db, rest, dbStar, err := parseName(on)
	if err != nil {
		return "", "", err
	}
	if !strings.HasPrefix(rest, ".") {
		return "", "", errors.New(`want "db.table", "db.*" or "*.*"`)
	}
	table, rest, tableStar, err := parseName(rest[1:])
	if err != nil {
		return "", "", err
	}
	if rest != "" {
		return "", "", fmt.Errorf(`unexpected %q after the table: want "db.table", "db.*" or "*.*"`, rest)
	}
	if dbStar && !tableStar {
		return "", "", errors.New(`"*" as the database needs "*" as the table: "*.*"`)
	}
	if dbStar {
		db = "*"
	}
	if tableStar {
		table = "*"
	}
	return db, table, nil
}

// parseName reads one name from the start of s: `quoted`, the wildcard *, or
// a plain name up to the next dot. It returns the name, what follows it, and
// whether it was the wildcard.
func parseName(s string) (name, rest string, star bool, err error) {
	switch {
	case strings.HasPrefix(s, "*"):
		return "", s[1:], true, nil
	case strings.HasPrefix(s, "`"):
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			if s[i] != '`' {
				b.WriteByte(s[i])
				continue
			}
			if i+1 < len(s) && s[i+1] == '`' {
				b.WriteByte('`')
				i++
				continue
			}
			name, rest = b.String(), s[i+1:]
			return name, rest, false, checkIdentifier(name)
		}
		return "", "", false, errors.New("unterminated backtick")
	default:
		end := strings.IndexByte(s, '.')
		if end < 0 {
			end = len(s)
		}
		name, rest = s[:end], s[end:]
		if strings.ContainsAny(name, "`*") {
			return "", "", false, fmt.Errorf("%q: write a name holding ` or * in backticks", name)
		}
		return name, rest, false, checkIdentifier(name)
	}
}

// checkIdentifier applies MySQL's rules for database and table names.
func checkIdentifier(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case name == "*":
		// It could not be told from the wildcard once parsed.
		return errors.New("a name that is just * is not supported: * means every database or table")
	case utf8.RuneCountInString(name) > maxIdentifier:
		return fmt.Errorf("%q is longer than %d characters", name, maxIdentifier)
	case strings.ContainsRune(name, 0):
		return errors.New("a name holds a NUL byte")
	case strings.HasSuffix(name, " "):
		return fmt.Errorf("%q ends with a space, which MySQL does not allow", name)
	case !utf8.ValidString(name):
		return errors.New("a name is not valid UTF-8")
	}
	return nil
}

// renderOn returns the grant's object for a GRANT statement, names always in
// backticks. A database-level grant escapes the LIKE wildcards _ and % in the
// database name, which GRANT would otherwise match as patterns.
func (g *Grant) renderOn() string {
	switch {
	case g.db == "*":
		return "*.*"
	case g.table == "*":
		return quoteIdent(escapeWildcards(g.db)) + ".*"
	default:
		return quoteIdent(g.db) + "." + quoteIdent(g.table)
	}
}

// escapeWildcards escapes \, _ and % with a backslash, as GRANT … ON db.*
// needs for a literal database name.
func escapeWildcards(s string) string {
	return strings.NewReplacer(`\`, `\\`, `_`, `\_`, `%`, `\%`).Replace(s)
}
