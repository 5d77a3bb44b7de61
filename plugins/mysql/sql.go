package mysql

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/credbroker/credbroker/plugins"
)

// usernameLimit is the longest user name MySQL accepts, in characters
// (MariaDB accepts 80, MySQL 8 32: the smaller wins).
const usernameLimit = 32

// quoteIdent quotes a database, table or role name in backticks, doubling any
// backtick inside. The result means the same whatever the sql_mode.
func quoteIdent(name string) string {
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

// quoteString quotes s as a string literal. It is only given values checked
// to hold no quote, backslash or NUL (user names, password hashes), so the
// literal means the same with and without the NO_BACKSLASH_ESCAPES sql_mode.
func quoteString(s string) string {
	return "'" + s + "'"
}

// account renders `name`@`host`. Backticks quote account names whatever
// the sql_mode, so a host read back from mysql.user needs no checking.
func account(name, host string) string {
	return quoteIdent(name) + "@" + quoteIdent(host)
}

// checkUsername accepts what [plugins.NewUsername] makes: the managed prefix,
// then ASCII letters, digits and underscores. Revoke and Renew refuse
// anything else, so a wrong name can never touch an account the broker did
// not make, and the name is always safe inside a string literal.
func checkUsername(name string) error {
	switch {
	case name == "":
		return errors.New("no username given")
	case !strings.HasPrefix(name, plugins.ManagedPrefix):
		return fmt.Errorf("username %q does not start with %q: credbroker did not make it", name, plugins.ManagedPrefix)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("username %q holds %q: only letters, digits and _ are accepted", name, c)
		}
	}
	return nil
}

// checkNewUsername is checkUsername for Create, which also keeps within
// MySQL's 32 characters.
func checkNewUsername(name string) error {
	if n := utf8.RuneCountInString(name); n > usernameLimit {
		return fmt.Errorf("username %q is %d characters: MySQL accepts %d", name, n, usernameLimit)
	}
	return checkUsername(name)
}

// NativePasswordHash returns the mysql_native_password hash of password, as
// the server's PASSWORD() function computes it and mysql.user stores it:
//
//	'*' + upper-case hex of SHA1(SHA1(password))
//
// Given to CREATE USER … IDENTIFIED BY PASSWORD, it is stored as is, so the
// server can check logins without ever receiving the plaintext.
func NativePasswordHash(password string) string {
	first := sha1.Sum([]byte(password))
	second := sha1.Sum(first[:])
	return "*" + strings.ToUpper(hex.EncodeToString(second[:]))
}

// likeEscape is the LIKE escape character of likePrefix's patterns. It is
// named in every query (LIKE ? ESCAPE '!'), because the default, backslash,
// is no escape character at all under the NO_BACKSLASH_ESCAPES sql_mode.
const likeEscape = "!"

// likePrefix returns a LIKE pattern matching every string that starts with
// prefix, its wildcards escaped with likeEscape.
func likePrefix(prefix string) string {
	return strings.NewReplacer(likeEscape, likeEscape+likeEscape, "_", likeEscape+"_", "%", likeEscape+"%").Replace(prefix) + "%"
}

// dsnPassword returns the password of a go-sql-driver/mysql DSN
// (user:password@net(addr)/db?params) the way ParseDSN finds it, for
// redacting errors about a DSN that ParseDSN rejected.
func dsnPassword(dsn string) string {
	end := strings.LastIndexByte(dsn, '/')
	if end < 0 {
		end = len(dsn)
	}
	at := strings.LastIndexByte(dsn[:end], '@')
	if at < 0 {
		return ""
	}
	_, pw, ok := strings.Cut(dsn[:at], ":")
	if !ok {
		return ""
	}
	return pw
}
