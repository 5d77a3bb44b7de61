package broker

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/authn"
	"github.com/credbroker/credbroker/leases"
)

// Subject and claim globs are segment-aware: a segment is a run of
// characters between the separators ':' and '/'.
//
//   - `*` matches any run of characters within one segment;
//   - `**` matches any run of characters, separators included;
//   - `*` that is a whole last segment (`repo:org/app:*`,
//     `system:serviceaccount:orders:*`, or `*` alone) matches everything
//     under what precedes it, like `**`;
//   - `?` matches one character that is not a separator.
//
// Everything else is literal. So `repo:org/app*` matches `repo:org/app-x`
// but never `repo:org/app-evil:ref:…` nor `repo:org/app:ref:…`.
const globSeparators = ":/"

// glob is a compiled subject or claim pattern.
type glob struct {
	re *regexp.Regexp
}

// compileGlob compiles a pattern. A run of three or more `*` is refused:
// it means nothing `**` does not.
func compileGlob(pattern string) (glob, error) {
	var b strings.Builder
	b.WriteString("^")
	seg := "[^" + regexp.QuoteMeta(globSeparators) + "]"
	for i := 0; i < len(pattern); {
		switch c := pattern[i]; {
		case c == '*':
			n := 1
			for i+n < len(pattern) && pattern[i+n] == '*' {
				n++
			}
			switch {
			case n > 2:
				return glob{}, fmt.Errorf("%q: %s is not a pattern: write ** (any depth) or * (within one segment)", pattern, strings.Repeat("*", n))
			case n == 2, i+1 == len(pattern) && (i == 0 || strings.IndexByte(globSeparators, pattern[i-1]) >= 0):
				b.WriteString(".*")
			default:
				b.WriteString(seg + "*")
			}
			i += n
		case c == '?':
			b.WriteString(seg)
			i++
		default:
			j := i
			for j < len(pattern) && pattern[j] != '*' && pattern[j] != '?' {
				j++
			}
			b.WriteString(regexp.QuoteMeta(pattern[i:j]))
			i = j
		}
	}
	b.WriteString("$")
	return glob{re: regexp.MustCompile(b.String())}, nil
}

func (g glob) match(s string) bool { return g.re.MatchString(s) }

// globWarning says what a subject pattern that ends in a bare `*` right
// after a name (`repo:org/app*`, a letter, digit or '@' before the `*`)
// matches now, and what to write instead; "" for any other pattern. After
// '-' or '_' (`orders:api-*`) the `*` is taken to mean the rest of the name.
func globWarning(pattern string) string {
	if !strings.HasSuffix(pattern, "*") || strings.HasSuffix(pattern, "**") || len(pattern) < 2 {
		return ""
	}
	prev := pattern[len(pattern)-2]
	if !('a' <= prev && prev <= 'z' || 'A' <= prev && prev <= 'Z' || '0' <= prev && prev <= '9' || prev == '@') {
		return ""
	}
	name := pattern[:len(pattern)-1]
	return fmt.Sprintf("%q ends in a bare * after a name: * stops at ':' and '/', so it matches %q but nothing under it "+
		"(before issue 7 it also matched %q). For everything under %s write %q (or %q); write ** only where a match across segments is really meant",
		pattern, name+"-x", name+"-evil:ref:refs/heads/main", name, name+":*", name+"/*")
}

// ClaimValues is what a policy wants of one token claim: one value or a list
// of values (any of them), each a glob with the segment rules of subjects.
// In YAML it is a string or a list of strings.
type ClaimValues []string

// UnmarshalYAML takes a single scalar or a list of scalars.
func (v *ClaimValues) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*v = ClaimValues{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(ClaimValues, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return errClaimValues
			}
			out = append(out, item.Value)
		}
		*v = out
		return nil
	default:
		return errClaimValues
	}
}

var errClaimValues = errors.New(`want a string or a list of strings (any of them), e.g. "sre" or [sre, dba]`)

// claimRule is one compiled `claims:` entry.
type claimRule struct {
	name string
	want []glob
}

// claimMatches reports whether a token claim is a string one of want
// matches, or a list holding such a string. Nothing else matches: not a
// number or a boolean that prints as a wanted value, not an object, and not
// a list nested in a list, so a token cannot satisfy `groups: sre` with
// `[["sre"]]`, `true` or `{"sre": 1}`.
func claimMatches(claim any, want []glob) bool {
	match := func(s string) bool { return slices.ContainsFunc(want, func(g glob) bool { return g.match(s) }) }
	switch v := claim.(type) {
	case string:
		return match(v)
	case []any:
		return slices.ContainsFunc(v, func(e any) bool { s, ok := e.(string); return ok && match(s) })
	case []string:
		return slices.ContainsFunc(v, match)
	default:
		return false
	}
}

// rule is one compiled policy.
type rule struct {
	name       string
	issuer     string
	subject    glob
	claims     []claimRule // sorted by name
	roles      []string
	breakGlass []string
	admin      bool
}

func (r *rule) matches(id authn.Identity) bool {
	if r.issuer != id.Issuer || !r.subject.match(id.Subject) {
		return false
	}
	for _, c := range r.claims {
		if !claimMatches(claimAt(id.Claims, c.name), c.want) {
			return false
		}
	}
	return true
}

// Access is how an identity may request a role.
type Access int

// The kinds of access, weakest first.
const (
	// AccessNone: the role is not granted (or does not exist).
	AccessNone Access = iota
	// AccessBreakGlass: only with a break-glass reason, which is recorded;
	// the lease ends within the role's break_glass_max_ttl.
	AccessBreakGlass
	// AccessNormal: requested as usual.
	AccessNormal
)

// Grant is the answer to "may this identity have this role, and how".
type Grant struct {
	// Role is the role asked about; nil when it does not exist.
	Role   *RoleConfig
	Access Access
	// Policies are the names of the matching policies that grant the role
	// normally; BreakGlassPolicies those that grant it with a reason.
	Policies           []string
	BreakGlassPolicies []string
}

// Allowed reports whether a request with (breakGlass) or without a reason
// is granted. A role granted normally may also be requested with a reason.
func (g Grant) Allowed(breakGlass bool) bool {
	if breakGlass {
		return g.Access >= AccessBreakGlass
	}
	return g.Access == AccessNormal
}

// MaxTTL is the longest a lease of the role may live, renewals included: the
// role's max_ttl, and for a break-glass lease no more than its
// break_glass_max_ttl.
func (g Grant) MaxTTL(breakGlass bool) time.Duration {
	if g.Role == nil {
		return 0
	}
	if breakGlass {
		return min(g.Role.MaxTTL, g.Role.BreakGlassMaxTTL)
	}
	return g.Role.MaxTTL
}

// Renewable reports whether leases of the role may be renewed.
func (g Grant) Renewable() bool { return g.Role != nil && *g.Role.Renewable }

// DefaultTTL is the lease time of a request that names none: the role's
// default_ttl, within MaxTTL(breakGlass).
func (g Grant) DefaultTTL(breakGlass bool) time.Duration {
	if g.Role == nil {
		return 0
	}
	return min(g.Role.DefaultTTL, g.MaxTTL(breakGlass))
}

// TTL is the lease time (or renewal increment) for a request of requested,
// 0 for the default: capped at MaxTTL(breakGlass), which clamped reports.
func (g Grant) TTL(breakGlass bool, requested time.Duration) (ttl time.Duration, clamped bool) {
	ttl = g.DefaultTTL(breakGlass)
	if requested > 0 {
		ttl = requested
	}
	if maxTTL := g.MaxTTL(breakGlass); ttl > maxTTL {
		return maxTTL, true
	}
	return ttl, false
}

// DecideRenewal answers whether id may renew lease l, and with which grant:
// the holder renews only while a policy still grants the role the way the
// lease was issued (with or without a break-glass reason); an admin may
// renew any lease; a role that left the config, or is no longer renewable,
// renews nobody's lease. The caller has checked that id may see l at all.
func (p *Policy) DecideRenewal(id authn.Identity, l leases.Lease) (Grant, error) {
	if !l.Renewable {
		return Grant{}, errNotRenewable
	}
	g := p.Decide(id, l.Role)
	switch {
	case g.Role == nil:
		return Grant{}, errRoleGone(l.Role)
	case holds(id, l) && !g.Allowed(l.BreakGlass):
		return Grant{}, errNoLongerGranted(l.Role, l.ExpiresAt)
	case !g.Renewable():
		return Grant{}, errNotRenewable
	}
	return g, nil
}

// DecideIssue answers whether id may be issued role, with (breakGlass) or
// without a reason: the grant, or the error the caller gets. A role that
// does not exist and one the caller may not have get the same answer, so
// the error does not tell which roles exist.
func (p *Policy) DecideIssue(id authn.Identity, role string, breakGlass bool) (Grant, error) {
	g := p.Decide(id, role)
	switch {
	case g.Allowed(breakGlass):
		return g, nil
	case g.Access == AccessBreakGlass:
		return g, errBreakGlassOnly(g.Role.Name, id.Subject, g.MaxTTL(true))
	default:
		return g, errIssueDenied(role)
	}
}

// Policy is the compiled policies of one config: the one place that decides
// what an identity may do. It is built once per config, when the config is
// parsed (and so on every reload), and is safe for concurrent use.
type Policy struct {
	rules []rule
	roles *catalog // the config's roles, by name and in config order
}

// compilePolicy compiles the policies of cat's config, which must be valid.
func compilePolicy(cat *catalog) *Policy {
	p := &Policy{roles: cat}
	for i := range cat.cfg.Policies {
		pc := &cat.cfg.Policies[i]
		r := rule{name: pc.Name, issuer: pc.Issuer, subject: pc.subject, roles: pc.Roles, breakGlass: pc.BreakGlassRoles, admin: pc.Admin}
		for name, want := range pc.claims {
			r.claims = append(r.claims, claimRule{name: name, want: want})
		}
		slices.SortFunc(r.claims, func(a, b claimRule) int { return strings.Compare(a.name, b.name) })
		p.rules = append(p.rules, r)
	}
	return p
}

// Decide answers whether id may have the role named role, how, and which
// policies say so. Deny by default: an unknown role or one no matching
// policy names gets AccessNone.
func (p *Policy) Decide(id authn.Identity, role string) Grant {
	r, ok := p.roles.role(role)
	if !ok {
		return Grant{}
	}
	return p.decide(p.matching(id), r)
}

func (p *Policy) decide(matched []*rule, role *RoleConfig) Grant {
	g := Grant{Role: role}
	for _, r := range matched {
		if slices.Contains(r.roles, role.Name) {
			g.Policies = append(g.Policies, r.name)
			g.Access = AccessNormal
		}
		if slices.Contains(r.breakGlass, role.Name) {
			g.BreakGlassPolicies = append(g.BreakGlassPolicies, r.name)
			g.Access = max(g.Access, AccessBreakGlass)
		}
	}
	return g
}

func (p *Policy) matching(id authn.Identity) []*rule {
	var out []*rule
	for i := range p.rules {
		if p.rules[i].matches(id) {
			out = append(out, &p.rules[i])
		}
	}
	return out
}

// Grants returns every role id may request (normally or with a reason), in
// config order.
func (p *Policy) Grants(id authn.Identity) []Grant {
	matched := p.matching(id)
	var out []Grant
	roles := p.roles.cfg.Roles
	for i := range roles {
		if g := p.decide(matched, &roles[i]); g.Access != AccessNone {
			out = append(out, g)
		}
	}
	return out
}

// Matched returns the names of the policies that match id, in config order.
func (p *Policy) Matched(id authn.Identity) []string {
	var out []string
	for _, r := range p.matching(id) {
		out = append(out, r.name)
	}
	return out
}

// ClaimsConsidered returns the names of the claims the policies of id's
// issuer look at, sorted.
func (p *Policy) ClaimsConsidered(issuer string) []string {
	var out []string
	for _, r := range p.rules {
		if r.issuer != issuer {
			continue
		}
		for _, c := range r.claims {
			if !slices.Contains(out, c.name) {
				out = append(out, c.name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// IsAdmin reports whether an admin policy matches id.
func (p *Policy) IsAdmin(id authn.Identity) bool {
	return slices.ContainsFunc(p.matching(id), func(r *rule) bool { return r.admin })
}

// RolePolicies returns the names of the policies that grant role normally
// and those that grant it with a break-glass reason, whoever they match.
func (p *Policy) RolePolicies(role string) (normal, breakGlass []string) {
	for _, r := range p.rules {
		if slices.Contains(r.roles, role) {
			normal = append(normal, r.name)
		}
		if slices.Contains(r.breakGlass, role) {
			breakGlass = append(breakGlass, r.name)
		}
	}
	return normal, breakGlass
}

// claimAt looks a policy's claim name up in a token's claims: the claim of
// exactly that name, or for a dotted name the value nested in objects, so
// that kubernetes.io.namespace is claim "kubernetes.io", key "namespace". A
// name that resolves in more than one way finds nothing (and so matches
// nothing).
func claimAt(claims map[string]any, name string) any {
	v, n := resolveClaim(claims, name)
	if n != 1 {
		return nil
	}
	return v
}

// resolveClaim returns the value name resolves to in claims and how many
// ways it resolves; a claim that is present counts even when it is null, so
// {"a": {"b": null}, "a.b": "x"} is ambiguous, not "x".
func resolveClaim(claims map[string]any, name string) (any, int) {
	var found any
	n := 0
	if v, ok := claims[name]; ok {
		found, n = v, 1
	}
	for i := range len(name) {
		if name[i] != '.' {
			continue
		}
		if sub, ok := claims[name[:i]].(map[string]any); ok {
			if v, m := resolveClaim(sub, name[i+1:]); m > 0 {
				found, n = v, n+m
			}
		}
	}
	return found, n
}
