package mysql

import (
	"fmt"
	"slices"
	"strings"
)

// What no role may grant, and why. Holders are untrusted: a privilege that
// lets one make or change accounts, read other accounts' secrets or reach
// the server itself would let it outlive its lease (a holder with INSERT on
// mysql.* wrote mysql.global_priv and left itself a superuser the sweep
// cannot see). ParseRole refuses these in grants and in the GRANT statements
// of creation_statements, so `credbroker config check` does too.

// refusedPrivileges are privileges refused on every object, with the reason.
// Names are as normalizePrivilege returns them; MySQL's dynamic privileges
// (CONNECTION_ADMIN …) are refused as unknown, since only the allow-list in
// privileges is accepted.
var refusedPrivileges = map[string]string{
	"GRANT OPTION": "it lets a holder give its privileges to other accounts, which outlive the lease",
	"SUPER":        "it is administrative: it kills other sessions, changes global settings and skips read_only",
	"FILE":         "it reads and writes files on the server host, the data directory included",
	"PROCESS":      "it shows every session's statements, which can hold other accounts' passwords",
	"SHUTDOWN":     "it stops the server",
	"CREATE USER":  "it lets a holder make accounts the sweep does not know, which outlive the lease",
	"RELOAD":       "it flushes privileges, logs and caches server-wide",
	"PROXY":        "it lets a holder log in as another account",
	"REPLICATION SLAVE": "it reads the binary log, which holds every change made on the server, " +
		"password hashes of new accounts included",
	"REPLICATION REPLICA": "it reads the binary log, which holds every change made on the server, " +
		"password hashes of new accounts included",
	"REPLICATION CLIENT": "on MariaDB 10.5+ it is BINLOG MONITOR, which reads the binary log (SHOW BINLOG EVENTS), " +
		"password hashes of new accounts included",
	"BINLOG MONITOR":           "it reads the binary log (SHOW BINLOG EVENTS), password hashes of new accounts included",
	"BINLOG ADMIN":             "it purges and reconfigures the binary log",
	"BINLOG REPLAY":            "it replays binary log events, as any account",
	"CREATE TABLESPACE":        "it changes storage server-wide",
	"CONNECTION ADMIN":         "it kills other accounts' sessions and skips connection limits",
	"FEDERATED ADMIN":          "it makes servers for FEDERATED tables, reaching other hosts as the server",
	"READ_ONLY ADMIN":          "it writes while the server is read_only",
	"REPLICATION MASTER ADMIN": "it administers replication",
	"REPLICATION SLAVE ADMIN":  "it administers replication",
	"REPLICA MONITOR":          "it shows replication state, relay logs included",
	"SLAVE MONITOR":            "it shows replication state, relay logs included",
	"SET USER":                 "it makes objects that run as another account (DEFINER = someone else)",
	"CREATE ROLE":              "it lets a holder make roles, which outlive the lease",
	"DROP ROLE":                "it lets a holder drop roles other accounts rely on",
}

// everythingPrivileges are the privileges a role may hold on "*.*": they
// show names and view definitions, never data nor the accounts (USAGE is no
// privilege at all; Vault's statements use it to set account options).
var everythingPrivileges = []string{"SHOW DATABASES", "SHOW VIEW", "USAGE"}

// systemSchemas are the schemas no role may hold any privilege on, with why.
var systemSchemas = map[string]string{
	"mysql": "it holds the accounts and their privileges (mysql.global_priv, mysql.user): writing it makes a " +
		"superuser the sweep cannot see, reading it shows every account's password hash",
	"sys":                "its routines and views run as mysql.sys and show other sessions' statements",
	"performance_schema": "it shows other sessions' statements, which can hold passwords",
	"information_schema": "the server manages it",
}

// systemSchema returns the system schema db names (or, when pattern, that
// the GRANT pattern db matches), case-insensitively, or "".
func systemSchema(db string, pattern bool) string {
	for _, s := range []string{"information_schema", "mysql", "performance_schema", "sys"} {
		if pattern && likeMatch(strings.ToLower(db), s) || !pattern && strings.EqualFold(db, s) {
			return s
		}
	}
	return ""
}

// likeMatch reports whether the LIKE pattern p (_ one character, % any,
// backslash escapes) matches s.
func likeMatch(p, s string) bool {
	pr, sr := []rune(p), []rune(s)
	var match func(i, j int) bool
	match = func(i, j int) bool {
		for i < len(pr) {
			switch c := pr[i]; {
			case c == '%':
				for i < len(pr) && pr[i] == '%' {
					i++
				}
				for k := j; k <= len(sr); k++ {
					if match(i, k) {
						return true
					}
				}
				return false
			case c == '_':
				if j >= len(sr) {
					return false
				}
			case c == '\\' && i+1 < len(pr):
				i++
				if j >= len(sr) || sr[j] != pr[i] {
					return false
				}
			default:
				if j >= len(sr) || sr[j] != c {
					return false
				}
			}
			i++
			j++
		}
		return j == len(sr)
	}
	return match(0, 0)
}

// objectName renders db and table for an error message: "*.*", "db.*" or
// "db.table".
func objectName(db, table string) string {
	if db == "*" {
		return "*.*"
	}
	return db + "." + table
}

// checkPrivilege checks the normalized privilege priv on db.table ("*" the
// wildcard); pattern says db is a GRANT pattern (_ and % are wildcards), as
// in creation statements. The error names the privilege, the object and why.
func checkPrivilege(priv, db, table string, pattern bool) error {
	on := objectName(db, table)
	if why, ok := refusedPrivileges[priv]; ok {
		return fmt.Errorf("%s on %s is refused: %s", priv, on, why)
	}
	lvl, ok := privileges[priv]
	if !ok {
		return fmt.Errorf("unknown privilege %q (known: %s)", priv, knownPrivileges())
	}
	if s := systemSchema(db, pattern); s != "" && db != "*" {
		what := s + " is a system schema"
		if !strings.EqualFold(db, s) {
			what = fmt.Sprintf("%q matches the system schema %s (_ and %% are wildcards in GRANT … ON db.*: escape them as \\_ and \\%%)", db, s)
		}
		return fmt.Errorf("%s on %s is refused: %s: %s; grant on the application's databases instead",
			priv, on, what, systemSchemas[s])
	}
	if db == "*" && !slices.Contains(everythingPrivileges, priv) {
		return fmt.Errorf(`%s on *.* is refused: "*.*" includes the mysql system schema, so it would let a holder %s; `+
			`grant it on the databases the role needs ("orders.*") instead (only %s may be granted on *.*)`,
			priv, everythingHarm(priv), strings.Join(everythingPrivileges, ", "))
	}
	switch {
	case lvl == globalLevel && db != "*":
		return fmt.Errorf(`%s is a global privilege: it needs on: "*.*"`, priv)
	case lvl == databaseLevel && table != "*":
		return fmt.Errorf(`%s is granted on databases, not tables: use on: "%s.*"`, priv, db)
	}
	return nil
}

// everythingHarm says what priv on *.* would let a holder do.
func everythingHarm(priv string) string {
	switch priv {
	case "SELECT":
		return "read every account's password hash (mysql.global_priv) and every other database"
	case "EXECUTE":
		return "run every stored routine with its definer's rights, the admin's included"
	case "SHOW VIEW", "SHOW DATABASES":
		return "see every database"
	default:
		return "rewrite the accounts (mysql.global_priv) and leave itself a superuser the sweep cannot see"
	}
}
