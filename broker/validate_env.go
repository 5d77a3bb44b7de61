package broker

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/external"
	"github.com/credbroker/credbroker/secret"
)

// This file keeps environments apart: secrets divided by environment with
// no shared credentials, no "master secret", no policy or issuer that
// reaches across environments, and TTL ceilings per environment. Like the
// rest of validation it runs without resolving a secret (config check runs
// in CI, which has none), so it compares what the config says:
//
//   - an admin secret is any secret.Ref field of a backend's parsed
//     connection (dsn, password …), compared as a reference (env:NAME,
//     file:/path), never by value;
//   - an admin's server and user are compared where the plugin's parsed
//     connection tells them in literal fields ([plugins.AdminIdentifier]:
//     redis, rabbitmq, mqtt); a server and user inside a DSN reference
//     (postgres, mysql) cannot be known, and such backends are compared by
//     their reference alone;
//   - a backend with plugin: external is compared by neither: its program's
//     env: are not known to be its admin's.
//
// The rules, errors unless noted:
//
//   - every backend has an owner and an environment;
//   - two backends of different environments share no admin secret
//     reference, and no admin server and user;
//   - one admin secret reference serves at most checks.max_backends_per_secret
//     backends (a warning);
//   - a policy grants roles of one environment only (a warning), and only of
//     the environments its issuer lists in environments:, if it lists any;
//   - a role's max_ttl is at most checks.max_ttl of its backend's
//     environment, where one is set.

// DefaultMaxBackendsPerSecret is checks.max_backends_per_secret's default.
const DefaultMaxBackendsPerSecret = 3

// environments runs the checks above; every other section is validated by
// then, so names resolve where they can.
func (c *validation) environments() {
	c.checks()
	envs := map[string]bool{}
	for i, b := range c.Backends {
		path := fmt.Sprintf("backends[%d]", i)
		if strings.TrimSpace(b.Owner) == "" {
			c.add(path+".owner", "required: the team that answers for this backend, e.g. owner: team-orders")
		}
		if strings.TrimSpace(b.Environment) == "" {
			c.add(path+".environment", "required: the environment this backend belongs to, e.g. environment: prod (or dev, staging …); backends of different environments may not share admin credentials")
		} else {
			envs[b.Environment] = true
		}
	}
	c.sharedSecrets()
	c.sharedAdmins()
	c.roleCeilings()
	c.policyEnvironments()
	for _, env := range slices.Sorted(maps.Keys(c.Checks.MaxTTL)) {
		if !envs[env] && len(c.Backends) > 0 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("checks.max_ttl.%s: no backend has environment: %s, so this ceiling applies to nothing (a misspelt environment?)", env, env))
		}
	}
}

// checks validates the checks section itself.
func (c *validation) checks() {
	if c.Checks.MaxBackendsPerSecret < 0 {
		c.add("checks.max_backends_per_secret", "%d: must be at least 1 (default %d)", c.Checks.MaxBackendsPerSecret, DefaultMaxBackendsPerSecret)
	}
	for _, env := range slices.Sorted(maps.Keys(c.Checks.MaxTTL)) {
		if d := c.Checks.MaxTTL[env]; d <= 0 {
			c.add("checks.max_ttl."+env, "%s: write the longest max_ttl a role of environment %s may have, e.g. 1h", d, env)
		}
	}
}

// secretUse is one admin secret reference of a backend.
type secretUse struct {
	backend int    // index in Backends
	path    string // backends[i].connection.dsn
	ref     secret.Ref
}

// sharedSecrets reports admin secret references shared across environments
// (errors) or by more than checks.max_backends_per_secret backends (a
// warning).
func (c *validation) sharedSecrets() {
	byRef := map[string][]secretUse{}
	var order []string
	for i, b := range c.Backends {
		if b.connection == nil || b.Plugin == external.Backend {
			continue
		}
		for _, u := range secretRefs(reflect.ValueOf(b.connection), fmt.Sprintf("backends[%d].connection", i)) {
			u.backend = i
			key := u.ref.String()
			if _, ok := byRef[key]; !ok {
				order = append(order, key)
			}
			byRef[key] = append(byRef[key], u)
		}
	}
	for _, key := range order {
		uses := byRef[key]
		for j, u := range uses {
			if o, ok := c.otherEnvironment(uses[:j], u.backend); ok {
				other := c.Backends[o.backend]
				c.add(u.path, "%s is also the admin secret of backends[%d] (%s, environment %s), but this backend is in environment %s: environments must not share credentials; give this backend an admin user and secret of its own",
					u.ref, o.backend, other.Name, other.Environment, c.Backends[u.backend].Environment)
			}
		}
		var names []string
		for _, u := range uses {
			if name := c.Backends[u.backend].Name; !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
		if limit := c.Checks.MaxBackendsPerSecret; limit > 0 && len(names) > limit {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: %s is the admin secret of %d backends (%s), more than checks.max_backends_per_secret (%d): one leaked secret would open them all; give each backend (or each few) an admin of its own, or raise the threshold",
				uses[0].path, uses[0].ref, len(names), strings.Join(names, ", "), limit))
		}
	}
}

// otherEnvironment returns the first of earlier whose backend has an
// environment other than backend i's; none when either has no environment
// (reported on its own).
func (c *validation) otherEnvironment(earlier []secretUse, i int) (secretUse, bool) {
	env := c.Backends[i].Environment
	if env == "" {
		return secretUse{}, false
	}
	for _, o := range earlier {
		if e := c.Backends[o.backend].Environment; e != "" && e != env {
			return o, true
		}
	}
	return secretUse{}, false
}

// secretRefs returns the non-zero secret.Ref fields of v, a parsed
// connection (a struct or a pointer to one), each with its path by yaml key.
func secretRefs(v reflect.Value, path string) []secretUse {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Type() == refType {
		if r := v.Interface().(secret.Ref); !r.IsZero() {
			return []secretUse{{path: path, ref: r}}
		}
		return nil
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	var out []secretUse
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch key {
		case "-":
			continue
		case "":
			key = strings.ToLower(f.Name)
		}
		out = append(out, secretRefs(v.Field(i), path+"."+key)...)
	}
	return out
}

// sharedAdmins reports two backends of different environments whose
// connections name the same server and admin user.
func (c *validation) sharedAdmins() {
	type admin struct {
		backend int
		id      plugins.AdminIdentity
	}
	var seen []admin
	for i, b := range c.Backends {
		ider, ok := b.connection.(plugins.AdminIdentifier)
		if !ok || b.connection == nil || b.Environment == "" {
			continue
		}
		id := ider.AdminIdentity()
		if id.User == "" || len(id.Addrs) == 0 {
			continue
		}
		for _, o := range seen {
			other := c.Backends[o.backend]
			if other.Environment == b.Environment || o.id.User != id.User {
				continue
			}
			if addr := firstCommon(o.id.Addrs, id.Addrs); addr != "" {
				c.add(fmt.Sprintf("backends[%d].connection", i), "logs in to %s as admin user %q, as backends[%d] (%s, environment %s) does, but this backend is in environment %s: environments must not share credentials; give each environment's backend an admin user of its own",
					addr, id.User, o.backend, other.Name, other.Environment, b.Environment)
				break
			}
		}
		seen = append(seen, admin{backend: i, id: id})
	}
}

func firstCommon(a, b []string) string {
	for _, x := range a {
		if slices.Contains(b, x) {
			return x
		}
	}
	return ""
}

// roleCeilings reports roles whose max_ttl exceeds checks.max_ttl of their
// backend's environment.
func (c *validation) roleCeilings() {
	for i, r := range c.Roles {
		b := c.backendNames[r.Backend]
		if b == nil {
			continue // reported on the role
		}
		ceiling, ok := c.Checks.MaxTTL[b.Environment]
		if !ok || ceiling <= 0 || r.MaxTTL <= ceiling {
			continue
		}
		c.add(fmt.Sprintf("roles[%d].max_ttl", i), "%s is longer than %s, the ceiling of environment %s (checks.max_ttl.%s; backend %s): lower max_ttl, or raise the ceiling if this is meant",
			r.MaxTTL, ceiling, b.Environment, b.Environment, b.Name)
	}
}

// policyEnvironments reports policies that grant roles of more than one
// environment (a warning) or of an environment their issuer may not reach
// (an error).
func (c *validation) policyEnvironments() {
	issuers := map[string]int{}
	for i, is := range c.Issuers {
		if _, ok := issuers[is.Name]; !ok {
			issuers[is.Name] = i
		}
	}
	roleEnv := map[string]string{}
	for _, r := range c.Roles {
		if b := c.backendNames[r.Backend]; b != nil && b.Environment != "" {
			roleEnv[r.Name] = b.Environment
		}
	}
	for i, p := range c.Policies {
		path := fmt.Sprintf("policies[%d]", i)
		var allowed []string
		ii, hasIssuer := issuers[p.Issuer]
		if hasIssuer {
			allowed = c.Issuers[ii].Environments
		}
		byEnv := map[string][]string{}
		for _, list := range []struct {
			key   string
			roles []string
		}{{"roles", p.Roles}, {"break_glass_roles", p.BreakGlassRoles}} {
			for j, role := range list.roles {
				env, ok := roleEnv[role]
				if !ok {
					continue // an unknown role, or one without an environment: reported already
				}
				if !slices.Contains(byEnv[env], role) {
					byEnv[env] = append(byEnv[env], role)
				}
				if len(allowed) > 0 && !slices.Contains(allowed, env) {
					c.add(fmt.Sprintf("%s.%s[%d]", path, list.key, j), "role %s is in environment %s, but issuer %s may only be granted roles of %s (issuers[%d].environments): remove the role from this policy, or grant it to an issuer of environment %s",
						role, env, p.Issuer, strings.Join(allowed, ", "), ii, env)
				}
			}
		}
		if len(byEnv) > 1 {
			var parts []string
			for _, env := range slices.Sorted(maps.Keys(byEnv)) {
				parts = append(parts, fmt.Sprintf("%s: %s", env, strings.Join(byEnv[env], ", ")))
			}
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: grants roles of more than one environment (%s): write one policy per environment, so a mistake in one cannot reach another",
				path, strings.Join(parts, "; ")))
		}
	}
}
