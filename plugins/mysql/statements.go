package mysql

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// placeholder matches a {{…}} template placeholder.
var placeholder = regexp.MustCompile(`\{\{[^{}]*\}\}`)

const passwordPlaceholder = "{{password}}"

// The forms {{password}} may take in creation statements. Each is rewritten
// to hand the server the mysql_native_password hash instead of the
// plaintext. Group 1 and 2 are the quotes around the placeholder, which must
// match.
var (
	// IDENTIFIED BY '{{password}}', and MySQL's IDENTIFIED WITH
	// mysql_native_password BY '{{password}}'.
	identifiedBy = regexp.MustCompile("(?i)\\bIDENTIFIED\\s+(?:WITH\\s+[`'\"]?mysql_native_password[`'\"]?\\s+)?BY\\s+(['\"]?)\\{\\{password\\}\\}(['\"]?)")
	// MariaDB's IDENTIFIED VIA mysql_native_password USING PASSWORD('{{password}}').
	identifiedVia = regexp.MustCompile("(?i)\\bIDENTIFIED\\s+(?:VIA|WITH)\\s+[`'\"]?mysql_native_password[`'\"]?\\s+USING\\s+PASSWORD\\s*\\(\\s*(['\"]?)\\{\\{password\\}\\}(['\"]?)\\s*\\)")
)

// passwordForms is how an error names the accepted forms of {{password}}.
const passwordForms = "IDENTIFIED BY '{{password}}', IDENTIFIED WITH mysql_native_password BY '{{password}}' " +
	"or IDENTIFIED VIA mysql_native_password USING PASSWORD('{{password}}')"

// passwordClause is one accepted use of {{password}} in a statement.
type passwordClause struct {
	start, end int
	via        bool // the MariaDB VIA … USING PASSWORD(…) form
}

// passwordClauses finds the uses of {{password}} in stmt. It fails when one
// of them is in no accepted form, or quoted unevenly.
func passwordClauses(stmt string) ([]passwordClause, error) {
	var found []passwordClause
	for _, re := range []*regexp.Regexp{identifiedBy, identifiedVia} {
		for _, m := range re.FindAllStringSubmatchIndex(stmt, -1) {
			if stmt[m[2]:m[3]] != stmt[m[4]:m[5]] {
				return nil, fmt.Errorf("%q: the quotes around {{password}} do not match", stmt[m[0]:m[1]])
			}
			found = append(found, passwordClause{start: m[0], end: m[1], via: re == identifiedVia})
		}
	}
	if n := strings.Count(stmt, passwordPlaceholder); n != len(found) {
		return nil, fmt.Errorf("{{password}} may only appear as %s: credbroker puts a mysql_native_password hash "+
			"there, so the plaintext password never reaches the server", passwordForms)
	}
	slices.SortFunc(found, func(a, b passwordClause) int { return a.start - b.start })
	return found, nil
}

// validateCreation checks creation statements: each is well-formed, they
// create the user ({{name}}) with the password ({{password}}), and the
// password appears only where it can be sent as a hash.
func validateCreation(statements []string) error {
	const field = "creation_statements"
	if len(statements) == 0 {
		return nil
	}
	errs := []error{validateStatements(field, statements, []string{"name", "username", "password"})}
	all := strings.Join(statements, "\n")
	if !strings.Contains(all, "{{name}}") && !strings.Contains(all, "{{username}}") {
		errs = append(errs, errors.New(field+": no statement uses {{name}}: they must create the issued user"))
	}
	if !strings.Contains(all, passwordPlaceholder) {
		errs = append(errs, errors.New(field+": no statement uses {{password}}: the issued password would not work"))
	}
	for i, s := range statements {
		if _, err := passwordClauses(s); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", field, i, err))
		}
	}
	return errors.Join(errs...)
}

// validateStatements checks that every entry holds at least one statement,
// its quotes are closed, and it uses only the allowed placeholders.
func validateStatements(field string, statements []string, allowed []string) error {
	var errs []error
	for i, s := range statements {
		parts, err := splitStatements(s)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s[%d]: %w", field, i, err))
		case len(parts) == 0:
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

// splitStatements splits s at the semicolons outside quotes ('…', "…", `…`),
// as Vault does with its statements, and drops the empty pieces.
func splitStatements(s string) ([]string, error) {
	var parts []string
	var quote byte
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == '\\' && quote != '`':
			i++ // an escaped character inside a string
		case quote != 0 && c == quote:
			quote = 0 // a doubled quote closes and reopens: still right
		case quote != 0:
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == ';':
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed %c quote", quote)
	}
	parts = append(parts, s[start:])
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// render substitutes the placeholders in stmt. {{name}} (and its Vault alias
// {{username}}) becomes the user name as a string literal, or inside
// backticks when the statement put it there; '{{name}}' and "{{name}}" keep
// one pair of single quotes. Each accepted {{password}} clause becomes
// hashClause(via) for the clause's form (see passwordClauses); render is
// given only statements validateCreation accepted.
func render(stmt, name string, hashClause func(via bool) string) (string, error) {
	if hashClause != nil {
		clauses, err := passwordClauses(stmt)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		last := 0
		for _, c := range clauses {
			b.WriteString(stmt[last:c.start])
			b.WriteString(hashClause(c.via))
			last = c.end
		}
		b.WriteString(stmt[last:])
		stmt = b.String()
	}
	lit := quoteString(name)
	return strings.NewReplacer(
		"'{{name}}'", lit, `"{{name}}"`, lit, "`{{name}}`", quoteIdent(name), "{{name}}", lit,
		"'{{username}}'", lit, `"{{username}}"`, lit, "`{{username}}`", quoteIdent(name), "{{username}}", lit,
	).Replace(stmt), nil
}

// renderAll renders statements and splits them into single statements,
// each named for errors ("creation_statements[0]", "creation_statements[0]#2").
func renderAll(field string, statements []string, name string, hashClause func(via bool) string) ([]step, error) {
	var steps []step
	for i, s := range statements {
		rendered, err := render(s, name, hashClause)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		parts, err := splitStatements(rendered)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		for j, p := range parts {
			what := fmt.Sprintf("%s[%d]", field, i)
			if len(parts) > 1 {
				what += fmt.Sprintf("#%d", j+1)
			}
			steps = append(steps, step{what: what, sql: p})
		}
	}
	return steps, nil
}
