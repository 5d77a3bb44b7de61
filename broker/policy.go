package broker

import (
	"fmt"
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

// claimHas reports whether a token claim equals want, or holds it as a member
// when the claim is a list.
func claimHas(claim any, want string) bool {
	switch v := claim.(type) {
	case nil:
		return false
	case string:
		return v == want
	case []any:
		return slices.ContainsFunc(v, func(e any) bool { return claimHas(e, want) })
	case []string:
		return slices.Contains(v, want)
	default:
		return fmt.Sprint(v) == want
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
