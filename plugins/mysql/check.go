package mysql

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// This file checks creation_statements as far as they can be read: GRANT
// statements are tokenised and held to the same rules as grants (refuse.go),
// and account statements may name only the issued account ({{name}}).
// Statements of other kinds are the operator's SQL and run as the admin:
// ParseRole warns that it did not check them.

// tokenKind is what a token of a statement is.
type tokenKind int

const (
	tokWord        tokenKind = iota // a keyword or unquoted name
	tokString                       // '…' or "…" (a name under ANSI_QUOTES)
	tokIdent                        // `…`
	tokPunct                        // one of , ( ) . @ * = ;
	tokPlaceholder                  // {{name}} or {{username}}, quoted or not
)

type token struct {
	kind tokenKind
	text string // as written; a quoted token's content unquoted
	word string // a tokWord upper-cased, for comparing with keywords
	// double is set for a tokString in double quotes.
	double bool
}

// errComment is why a statement holding a comment is not checked: a comment
// can hide any SQL (/*! executable comments */).
var errComment = errors.New("it holds a comment, which credbroker does not read")

// lex splits one statement into tokens.
func lex(stmt string) ([]token, error) {
	var toks []token
	for i := 0; i < len(stmt); {
		c := stmt[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '#' || strings.HasPrefix(stmt[i:], "/*") || strings.HasPrefix(stmt[i:], "--"):
			return nil, errComment
		case strings.HasPrefix(stmt[i:], "{{"):
			end := strings.Index(stmt[i:], "}}")
			if end < 0 {
				return nil, errors.New("an unclosed {{")
			}
			toks = append(toks, placeholderToken(stmt[i:i+end+2]))
			i += end + 2
		case c == '\'' || c == '"' || c == '`':
			var b strings.Builder
			j := i + 1
			for ; j < len(stmt); j++ {
				if stmt[j] == '\\' && c != '`' {
					// '\'' ends the string under the NO_BACKSLASH_ESCAPES
					// sql_mode and not without it: the server might read
					// the statement otherwise than this check.
					return nil, errors.New("a backslash in a quoted string, whose meaning depends on the NO_BACKSLASH_ESCAPES sql_mode")
				}
				if stmt[j] == c {
					if j+1 < len(stmt) && stmt[j+1] == c {
						b.WriteByte(c)
						j++
						continue
					}
					break
				}
				b.WriteByte(stmt[j])
			}
			if j >= len(stmt) {
				return nil, fmt.Errorf("unclosed %c quote", c)
			}
			t := token{kind: tokString, text: b.String(), double: c == '"'}
			if c == '`' {
				t.kind = tokIdent
			}
			if p := placeholderToken(t.text); p.kind == tokPlaceholder {
				t = p
			}
			toks = append(toks, t)
			i = j + 1
		case strings.IndexByte(",().@*=;", c) >= 0:
			toks = append(toks, token{kind: tokPunct, text: string(c)})
			i++
		case isWordByte(c):
			j := i
			for j < len(stmt) && isWordByte(stmt[j]) {
				j++
			}
			toks = append(toks, token{kind: tokWord, text: stmt[i:j], word: strings.ToUpper(stmt[i:j])})
			i = j
		default:
			return nil, fmt.Errorf("%q is not read by credbroker's checks", string(c))
		}
	}
	return toks, nil
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

// placeholderToken returns s as a placeholder token when it is {{name}} or
// {{username}}, else as a word.
func placeholderToken(s string) token {
	if s == "{{name}}" || s == "{{username}}" {
		return token{kind: tokPlaceholder, text: s}
	}
	return token{kind: tokWord, text: s, word: strings.ToUpper(s)}
}

// tokens walks a statement's tokens.
type tokens struct {
	t []token
	i int
}

func (ts *tokens) peek() (token, bool) {
	if ts.i >= len(ts.t) {
		return token{}, false
	}
	return ts.t[ts.i], true
}

func (ts *tokens) next() (token, bool) {
	t, ok := ts.peek()
	if ok {
		ts.i++
	}
	return t, ok
}

// isWord reports whether the next token is one of words.
func (ts *tokens) isWord(words ...string) bool {
	t, ok := ts.peek()
	return ok && t.kind == tokWord && slices.Contains(words, t.word)
}

// acceptWords consumes the words in order if they come next.
func (ts *tokens) acceptWords(words ...string) bool {
	if ts.i+len(words) > len(ts.t) {
		return false
	}
	for k, w := range words {
		t := ts.t[ts.i+k]
		if t.kind != tokWord || t.word != w {
			return false
		}
	}
	ts.i += len(words)
	return true
}

func (ts *tokens) isPunct(p string) bool {
	t, ok := ts.peek()
	return ok && t.kind == tokPunct && t.text == p
}

// statementKind names the account and privilege statements checkStatement
// reads, by their leading words; anything else is not checked.
func statementKind(ts *tokens) string {
	for _, kind := range [][]string{
		{"GRANT"}, {"REVOKE"},
		{"CREATE", "OR", "REPLACE", "USER"}, {"CREATE", "USER"}, {"ALTER", "USER"}, {"DROP", "USER"}, {"RENAME", "USER"},
		{"CREATE", "OR", "REPLACE", "ROLE"}, {"CREATE", "ROLE"}, {"DROP", "ROLE"},
		{"SET", "DEFAULT", "ROLE"}, {"SET", "ROLE"}, {"SET", "PASSWORD"},
	} {
		if ts.acceptWords(kind...) {
			return strings.Join(kind, " ")
		}
	}
	return ""
}

// leadingKind is statementKind of a statement that does not lex: its
// leading words, read loosely.
func leadingKind(stmt string) string {
	words := strings.Fields(strings.ToUpper(stmt))
	toks := make([]token, 0, 4)
	for _, w := range words[:min(4, len(words))] {
		w = strings.Trim(w, "('`\",;")
		toks = append(toks, token{kind: tokWord, text: w, word: w})
	}
	return statementKind(&tokens{t: toks})
}

// checkCreationStatements checks every statement of creation statements
// that it can read and returns a warning for each it cannot, and the grants
// on databases and tables it read (for CheckRole).
func checkCreationStatements(statements []string) (grants []Grant, warnings []string, err error) {
	return checkStatements("creation_statements", statements)
}

// checkRevocationStatements holds revocation statements to the rules of
// creation statements: they run as the admin at every revoke, and must not
// make accounts or grant what a role may not. What it cannot read passes
// without a warning: revocation statements give the user, dropped next,
// nothing.
func checkRevocationStatements(statements []string) error {
	_, _, err := checkStatements("revocation_statements", statements)
	return err
}

func checkStatements(field string, statements []string) (grants []Grant, warnings []string, err error) {
	var errs []error
	for i, s := range statements {
		parts, err := splitStatements(s)
		if err != nil {
			continue // validateStatements reports it
		}
		for j, p := range parts {
			what := fmt.Sprintf("%s[%d]", field, i)
			if len(parts) > 1 {
				what += fmt.Sprintf("#%d", j+1)
			}
			grant, checked, err := checkStatement(p)
			if grant != nil {
				grant.source = what
				grants = append(grants, *grant)
			}
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("%s: %w", what, err))
			case !checked:
				warnings = append(warnings, what+": NOT CHECKED: credbroker reads only GRANT, REVOKE and account "+
					"statements; this one runs as the admin at every issue, so make sure it gives the issued user nothing on "+
					"the system schemas or on *.* and makes no other account")
			}
		}
	}
	return grants, warnings, errors.Join(errs...)
}

// checkStatement checks one creation statement. checked is false for a
// statement of a kind it does not read; grant is what an accepted GRANT on a
// database or table gives.
func checkStatement(stmt string) (grant *Grant, checked bool, err error) {
	toks, lexErr := lex(stmt)
	if lexErr != nil {
		if kind := leadingKind(stmt); kind != "" {
			return nil, true, fmt.Errorf("%s statement not checked: %w: write it plainly, as %s", kind, lexErr, exampleFor(kind))
		}
		return nil, false, nil
	}
	ts := &tokens{t: toks}
	kind := statementKind(ts)
	switch kind {
	case "":
		if s := mentionsSystemSchema(toks); s != "" {
			return nil, true, fmt.Errorf("the statement names the system schema %s, which %s: give the issued user privileges with GRANT on the application's databases", s, systemSchemas[s])
		}
		return nil, false, nil
	case "GRANT":
		grant, err := checkGrantStatement(ts)
		return grant, true, err
	case "REVOKE":
		for !ts.isWord("FROM") {
			if _, ok := ts.next(); !ok {
				return nil, true, errors.New("REVOKE without FROM: write REVOKE … FROM '{{name}}'@'%'")
			}
		}
		ts.next()
		return nil, true, checkAccounts(ts, kind)
	case "CREATE USER", "CREATE OR REPLACE USER", "ALTER USER", "DROP USER":
		_ = ts.acceptWords("IF", "NOT", "EXISTS") || ts.acceptWords("IF", "EXISTS")
		for _, t := range toks {
			if t.kind == tokWord && t.word == "ROLE" {
				return nil, true, fmt.Errorf("%s … DEFAULT ROLE is refused: roles carry privileges credbroker cannot check; grant the privileges instead", kind)
			}
		}
		return nil, true, checkAccounts(ts, kind)
	case "SET PASSWORD":
		if !ts.isWord("FOR") {
			return nil, true, errors.New("SET PASSWORD without FOR changes the admin's own password: name '{{name}}'")
		}
		ts.next()
		acct, err := accountName(ts)
		if err != nil {
			return nil, true, fmt.Errorf("SET PASSWORD: %w", err)
		}
		if acct != "" {
			return nil, true, fmt.Errorf("SET PASSWORD FOR %s is refused: creation statements may change only the issued account '{{name}}'", acct)
		}
		return nil, true, nil
	case "RENAME USER":
		return nil, true, errors.New("RENAME USER is refused: it would make an account that is not the issued one, which the sweep cannot see")
	default: // roles
		return nil, true, fmt.Errorf("%s is refused: roles carry privileges credbroker cannot check, and outlive the lease; grant the privileges to '{{name}}' instead", kind)
	}
}

// exampleFor is how an error shows a plain statement of kind.
func exampleFor(kind string) string {
	if kind == "GRANT" {
		return "GRANT SELECT ON orders.* TO '{{name}}'@'%'"
	}
	return kind + " '{{name}}'@'%' …"
}

// mentionsSystemSchema returns the system schema a statement qualifies a
// name with (mysql.user, `sys`.x), or "".
func mentionsSystemSchema(toks []token) string {
	for k := 0; k+1 < len(toks); k++ {
		t := toks[k]
		if (t.kind == tokWord || t.kind == tokIdent || t.kind == tokString && t.double) &&
			toks[k+1].kind == tokPunct && toks[k+1].text == "." {
			if s := systemSchema(t.text, false); s != "" {
				return s
			}
		}
	}
	return ""
}

// accountName reads an account ('user'@'host', user, CURRENT_USER[()]). It
// returns "" for the issued account ({{name}}), else the account as written.
func accountName(ts *tokens) (string, error) {
	t, ok := ts.next()
	if !ok {
		return "", errors.New("an account is missing")
	}
	name := t.text
	if t.kind == tokPunct {
		return "", fmt.Errorf("want an account, found %q", t.text)
	}
	if t.kind == tokWord && t.word == "CURRENT_USER" && ts.isPunct("(") {
		ts.next()
		if !ts.isPunct(")") {
			return "", errors.New("CURRENT_USER( is not closed")
		}
		ts.next()
		name = "CURRENT_USER()"
	}
	if ts.isPunct("@") {
		ts.next()
		if _, ok := ts.next(); !ok {
			return "", errors.New("an account's host is missing after @")
		}
	}
	if t.kind == tokPlaceholder {
		return "", nil
	}
	return name, nil
}

// checkAccounts reads the accounts of an account statement: the first, and
// one after each comma outside parentheses; the options between are
// skipped. Every account must be the issued one.
func checkAccounts(ts *tokens, kind string) error {
	for {
		acct, err := accountName(ts)
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		if acct != "" {
			return fmt.Errorf("%s %s is refused: creation statements may make or change only the issued account '{{name}}'", kind, acct)
		}
		depth := 0
		for {
			t, ok := ts.next()
			if !ok {
				return nil
			}
			if t.kind != tokPunct {
				continue
			}
			switch t.text {
			case "(":
				depth++
			case ")":
				depth--
			}
			if t.text == "," && depth == 0 {
				break
			}
		}
	}
}

// checkGrantStatement checks GRANT privileges ON [type] level TO accounts
// [REQUIRE …] [WITH options]: what checkPrivilege refuses, grants to other
// accounts, role and proxy grants, WITH GRANT OPTION.
func checkGrantStatement(ts *tokens) (*Grant, error) {
	if ts.isWord("PROXY") {
		return nil, fmt.Errorf("GRANT PROXY is refused: %s", refusedPrivileges["PROXY"])
	}
	privs, err := grantPrivileges(ts)
	if err != nil {
		return nil, err
	}
	routine := false
	switch {
	case ts.acceptWords("TABLE"):
	case ts.acceptWords("FUNCTION"), ts.acceptWords("PROCEDURE"), ts.acceptWords("PACKAGE", "BODY"), ts.acceptWords("PACKAGE"):
		routine = true
	}
	db, table, pattern, err := grantLevel(ts)
	if err != nil {
		return nil, fmt.Errorf("GRANT … ON: %w", err)
	}
	if !ts.acceptWords("TO") {
		return nil, errors.New("GRANT … ON: want TO after the object: write GRANT SELECT ON orders.* TO '{{name}}'@'%'")
	}
	var errs []error
	for _, p := range privs {
		switch {
		case routine && (p == "EXECUTE" || p == "ALTER ROUTINE"):
			if s := systemSchema(db, false); s != "" {
				errs = append(errs, fmt.Errorf("%s on a routine of %s is refused: %s", p, s, systemSchemas[s]))
			}
		case routine:
			errs = append(errs, fmt.Errorf("%s on a routine: only EXECUTE and ALTER ROUTINE are accepted there", p))
		default:
			if err := checkPrivilege(p, db, table, pattern); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Accounts, then REQUIRE and WITH.
	for {
		acct, err := accountName(ts)
		if err != nil {
			return nil, errors.Join(append(errs, fmt.Errorf("GRANT … TO: %w", err))...)
		}
		if acct != "" {
			errs = append(errs, fmt.Errorf("GRANT … TO %s is refused: creation statements may grant only to the issued account '{{name}}'", acct))
		}
		for {
			t, ok := ts.peek()
			if !ok || t.kind == tokWord && (t.word == "REQUIRE" || t.word == "WITH" || t.word == "AS") || t.kind == tokPunct && t.text == "," {
				break
			}
			ts.next()
		}
		if !ts.isPunct(",") {
			break
		}
		ts.next()
	}
	for {
		t, ok := ts.next()
		if !ok {
			break
		}
		switch {
		case t.kind == tokWord && t.word == "AS":
			errs = append(errs, errors.New("GRANT … AS is refused: it grants with another account's rights and roles"))
		case t.kind == tokWord && (t.word == "GRANT" || t.word == "ADMIN") && ts.isWord("OPTION"):
			errs = append(errs, fmt.Errorf("WITH %s OPTION is refused: %s", t.word, refusedPrivileges["GRANT OPTION"]))
		}
	}
	if err := errors.Join(errs...); err != nil || routine {
		return nil, err
	}
	return &Grant{Privileges: privs, On: objectName(db, table), db: unescapeWildcards(db, pattern), table: table}, nil
}

// unescapeWildcards returns the database a GRANT pattern names when read
// literally: \_ and \% unescaped.
func unescapeWildcards(db string, pattern bool) string {
	if !pattern {
		return db
	}
	return strings.NewReplacer(`\\`, `\`, `\_`, `_`, `\%`, `%`).Replace(db)
}

// grantPrivileges reads the privileges of a GRANT, normalized, and the ON
// after them. A GRANT that reaches TO first grants roles: refused.
func grantPrivileges(ts *tokens) ([]string, error) {
	var privs, words []string
	depth := 0
	for {
		t, ok := ts.next()
		if !ok {
			return nil, errors.New("GRANT without ON or TO: write GRANT SELECT ON orders.* TO '{{name}}'@'%'")
		}
		switch {
		case t.kind == tokPunct && t.text == "(":
			depth++
		case t.kind == tokPunct && t.text == ")":
			depth--
		case depth > 0: // a column list
		case t.kind == tokWord && (t.word == "ON" || t.word == "TO"):
			if len(words) > 0 {
				privs = append(privs, normalizePrivilege(strings.Join(words, " ")))
			}
			if t.word == "TO" {
				return nil, fmt.Errorf("GRANT %s TO … grants roles, which is refused: roles carry privileges credbroker "+
					"cannot check; grant the privileges to '{{name}}' instead", strings.Join(privs, ", "))
			}
			if len(privs) == 0 {
				return nil, errors.New("GRANT names no privilege")
			}
			return privs, nil
		case t.kind == tokPunct && t.text == ",":
			if len(words) == 0 {
				return nil, errors.New("GRANT: an empty privilege")
			}
			privs = append(privs, normalizePrivilege(strings.Join(words, " ")))
			words = nil
		case t.kind == tokWord:
			words = append(words, t.word)
		default:
			return nil, fmt.Errorf("GRANT: unexpected %q among the privileges", t.text)
		}
	}
}

// grantLevel reads the object of GRANT … ON: *.*, db.*, db.table. pattern
// says db is a LIKE pattern (db.*, where _ and % are wildcards).
func grantLevel(ts *tokens) (db, table string, pattern bool, err error) {
	name := func() (string, bool, error) {
		t, ok := ts.next()
		switch {
		case !ok:
			return "", false, errors.New("the object is missing")
		case t.kind == tokPunct && t.text == "*":
			return "*", true, nil
		case t.kind == tokWord || t.kind == tokIdent || t.kind == tokString && t.double:
			return t.text, false, nil
		}
		return "", false, fmt.Errorf("want db.* or db.table, found %q", t.text)
	}
	db, dbStar, err := name()
	if err != nil {
		return "", "", false, err
	}
	if !ts.isPunct(".") {
		return "", "", false, fmt.Errorf("%q names no database, so it means the admin's current one: write db.table or db.*", db)
	}
	ts.next()
	table, tableStar, err := name()
	if err != nil {
		return "", "", false, err
	}
	if dbStar && !tableStar {
		return "", "", false, errors.New(`"*" as the database needs "*" as the table: "*.*"`)
	}
	if dbStar {
		return "*", "*", false, nil
	}
	if tableStar {
		return db, "*", true, nil
	}
	return db, table, false, nil
}
