package broker

import (
	"regexp"
	"slices"
	"strings"

	"github.com/credbroker/credbroker/authn"
)

// globPattern compiles a subject glob: `*` matches any run of characters
// (slashes and colons included), `?` one character; everything else is literal.
func globPattern(glob string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, r := range glob {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// matches reports whether the policy applies to id.
func (p *PolicyConfig) matches(id authn.Identity) bool {
	if p.Issuer != id.Issuer || !p.subject.MatchString(id.Subject) {
		return false
	}
	for name, want := range p.Claims {
		if !claimHas(id.Claims[name], want) {
			return false
		}
	}
	return true
}

// claimHas reports whether a token claim is the string want, or a list that
// holds the string want. Nothing else matches: not a number or a boolean
// that prints as want, not an object, and not a list nested in a list, so a
// token cannot satisfy `groups: sre` with `[["sre"]]`, `true` or `{"sre": 1}`.
func claimHas(claim any, want string) bool {
	switch v := claim.(type) {
	case string:
		return v == want
	case []any:
		return slices.ContainsFunc(v, func(e any) bool { s, ok := e.(string); return ok && s == want })
	case []string:
		return slices.Contains(v, want)
	default:
		return false
	}
}

// Allowed reports whether some policy grants role to id. Deny by default.
func (c *Config) Allowed(id authn.Identity, role string) bool {
	for i := range c.Policies {
		p := &c.Policies[i]
		if slices.Contains(p.Roles, role) && p.matches(id) {
			return true
		}
	}
	return false
}

// BreakGlassAllowed reports whether some policy lets id request role with a
// break-glass reason.
func (c *Config) BreakGlassAllowed(id authn.Identity, role string) bool {
	for i := range c.Policies {
		p := &c.Policies[i]
		if slices.Contains(p.BreakGlassRoles, role) && p.matches(id) {
			return true
		}
	}
	return false
}

// IsAdmin reports whether an admin policy matches id.
func (c *Config) IsAdmin(id authn.Identity) bool {
	for i := range c.Policies {
		if c.Policies[i].Admin && c.Policies[i].matches(id) {
			return true
		}
	}
	return false
}
