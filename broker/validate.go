package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/external"
)

// This file validates a decoded config, one function per section; the
// schema (the types) and loading are config.go's, the compiled lookups
// catalog.go's.

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// validation is one run of validate: the config, the problems found so far
// (every one is reported, each with its path) and the names each section
// declares for the sections after it.
type validation struct {
	*Config
	errs     []error
	reported map[string]bool // paths with a decoding problem already

	issuerNames  map[string]bool
	backendNames map[string]*BackendConfig
	roleNames    map[string]bool
}

// add records a problem at path, unless decoding already reported one there.
func (c *validation) add(path, format string, a ...any) {
	if !c.reported[path] {
		c.errs = append(c.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, a...)})
	}
}

// validate checks what decoding cannot: required fields, references between
// sections, TTLs, and each plugin's sections. Paths that already have a
// decoding problem (in found) are not reported twice. A valid config gets
// its catalog and policies compiled.
func (c *Config) validate(found []error) []error {
	v := &validation{
		Config:       c,
		reported:     map[string]bool{},
		issuerNames:  map[string]bool{},
		backendNames: map[string]*BackendConfig{},
		roleNames:    map[string]bool{},
	}
	for _, e := range found {
		if fe, ok := e.(*FieldError); ok {
			v.reported[fe.Path] = true
		}
	}
	v.listeners()
	v.store()
	v.limits()
	v.issuers()
	v.backends()
	v.roles()
	v.policies()
	v.environments()
	if len(v.errs) == 0 {
		c.catalog = compileCatalog(c)
		c.policy = compilePolicy(c.catalog)
	}
	return v.errs
}

// listeners checks listen, tls and metrics_listen.
func (c *validation) listeners() {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		c.add("listen", "%q is not host:port", c.Listen)
	} else if c.TLS == nil && !isLoopback(host) {
		c.add("listen", "%s is not a loopback address: without tls the server listens on loopback only; configure tls: {cert_file, key_file}", c.Listen)
	}
	if c.TLS != nil {
		if c.TLS.CertFile == "" {
			c.add("tls.cert_file", "required when tls is set")
		}
		if c.TLS.KeyFile == "" {
			c.add("tls.key_file", "required when tls is set")
		}
		switch c.TLS.ClientAuth {
		case "", ClientAuthRequire, ClientAuthVerifyIfGiven:
			if c.TLS.ClientAuth != "" && c.TLS.ClientCAFile == "" {
				c.add("tls.client_auth", "%q needs tls.client_ca_file: the PEM file of the certificate authorities whose client certificates are accepted", c.TLS.ClientAuth)
			}
		default:
			c.add("tls.client_auth", "unknown value %q: write %s (every connection presents a client certificate; the default with client_ca_file) or %s", c.TLS.ClientAuth, ClientAuthRequire, ClientAuthVerifyIfGiven)
		}
	}
	if c.MetricsListen != "" {
		host, _, err := net.SplitHostPort(c.MetricsListen)
		switch {
		case err != nil:
			c.add("metrics_listen", "%q is not host:port, e.g. 127.0.0.1:9420", c.MetricsListen)
		case c.TLS == nil && !isLoopback(host):
			c.add("metrics_listen", "%s is not a loopback address: metrics name every role and backend, so without tls they are served on loopback only; write e.g. 127.0.0.1:9420, or configure tls", c.MetricsListen)
		case c.MetricsListen == c.Listen:
			c.add("metrics_listen", "%s is the API's listen address: metrics need a port of their own, e.g. 127.0.0.1:9420", c.MetricsListen)
		}
	}
}

// store checks store.
func (c *validation) store() {
	if c.Store.DSN.IsZero() {
		c.add("store.dsn", `required: a reference to the lease store's PostgreSQL DSN, e.g. env:CREDBROKER_DATABASE_URL`)
	}
	if c.Store.MaxConns < 1 {
		c.add("store.max_conns", "%d: must be at least 1 (default 10)", c.Store.MaxConns)
	}
	seenKEK := map[string]bool{}
	for i, r := range c.Store.KEK {
		if seenKEK[r.String()] {
			c.add(fmt.Sprintf("store.kek[%d]", i), "%s is listed twice", r)
		}
		seenKEK[r.String()] = true
	}
	if c.Store.ReaperMaxConns < 2 {
		c.add("store.reaper_max_conns", "%d: must be at least 2, one for a sweep's lock and one for the rest (default 2)", c.Store.ReaperMaxConns)
	}
}

// limits checks reaper and limits.
func (c *validation) limits() {
	if c.Reaper.Interval < 100*time.Millisecond {
		c.add("reaper.interval", "must be at least 100ms")
	}
	if c.Limits.IssueRate < 0 || c.Limits.IssueBurst < 1 {
		c.add("limits", "issue_rate must be positive and issue_burst at least 1")
	}
	if c.Limits.RequestRate < 0 || c.Limits.RequestBurst < 1 {
		c.add("limits", "request_rate must be positive and request_burst at least 1")
	}
	if c.Limits.MaxConnections < 0 {
		c.add("limits.max_connections", "must be positive")
	}
	if c.Limits.ReadTimeout < 0 || c.Limits.IdleTimeout < 0 {
		c.add("limits", "read_timeout and idle_timeout must be positive durations")
	}
	if c.Limits.MaxConcurrentStreams < 0 {
		c.add("limits.max_concurrent_streams", "must be positive")
	}
}

// issuers checks issuers and records their names.
func (c *validation) issuers() {
	if len(c.Issuers) == 0 {
		c.add("issuers", "at least one issuer is required")
	}
	for i, is := range c.Issuers {
		path := fmt.Sprintf("issuers[%d]", i)
		if c.issuerNames[is.Name] {
			c.add(path+".name", "duplicate issuer %q", is.Name)
		}
		c.issuerNames[is.Name] = true
		for _, err := range is.Validate() {
			c.add(path, "%v", err)
		}
		for _, w := range is.Warnings() {
			c.Warnings = append(c.Warnings, path+"."+w)
		}
	}
}

// backends checks backends, records their names, and has each one's driver
// parse its connection (a plugin: external backend's program is started for
// it).
func (c *validation) backends() {
	for i := range c.Backends {
		b := &c.Backends[i]
		path := fmt.Sprintf("backends[%d]", i)
		c.validateRotate(b, path)
		checkName(path+".name", b.Name, c.add)
		if c.backendNames[b.Name] != nil {
			c.add(path+".name", "duplicate backend %q", b.Name)
		}
		c.backendNames[b.Name] = b
		var d plugins.Driver
		if b.Plugin == external.Backend {
			if d = c.externalDriver(b, path, c.add); d == nil {
				continue
			}
		} else {
			for key, set := range map[string]bool{"command": len(b.Command) > 0, "sha256": b.SHA256 != "", "env": len(b.Env) > 0} {
				if set {
					c.add(path+"."+key, "only with plugin: external, for a backend run as a separate program")
				}
			}
			var ok bool
			if d, ok = c.drivers[b.Plugin]; !ok {
				c.add(path+".plugin", "unknown plugin %q (this binary has: %s; or external, for a backend run as a separate program)", b.Plugin, c.driverNames())
				continue
			}
		}
		b.driver = d
		if b.Connection.Kind == 0 {
			c.add(path+".connection", "required")
			continue
		}
		conn, err := d.ParseConnection(c.decoder(&b.Connection, path+".connection", &c.errs))
		if err != nil && !errors.Is(err, errDecoded) {
			// A plugin joins its errors (errors.Join) a line each: each gets the path.
			for _, msg := range strings.Split(err.Error(), "\n") {
				c.add(path+".connection", "%s", msg)
			}
		}
		b.connection = conn
	}
}

// roles checks roles, records their names, and has the driver of each one's
// backend parse its plugin section.
func (c *validation) roles() {
	for i := range c.Roles {
		r := &c.Roles[i]
		path := fmt.Sprintf("roles[%d]", i)
		checkName(path+".name", r.Name, c.add)
		if c.roleNames[r.Name] {
			c.add(path+".name", "duplicate role %q", r.Name)
		}
		c.roleNames[r.Name] = true
		switch {
		case r.DefaultTTL <= 0:
			c.add(path+".default_ttl", "required and positive, e.g. 15m")
		case r.MaxTTL <= 0:
			c.add(path+".max_ttl", "required and positive, e.g. 1h")
		case r.DefaultTTL > r.MaxTTL:
			c.add(path+".default_ttl", "%s is longer than max_ttl %s", r.DefaultTTL, r.MaxTTL)
		}
		if r.BreakGlassMaxTTL < 0 {
			c.add(path+".break_glass_max_ttl", "must be positive, e.g. 15m")
		}
		b := c.backendNames[r.Backend]
		if b == nil {
			c.add(path+".backend", "unknown backend %q", r.Backend)
			continue
		}
		d := b.driver
		if d == nil {
			continue // reported on the backend
		}
		for key := range r.Sections {
			if key != d.Name() {
				c.add(path+"."+key, "unknown key (backend %s uses plugin %s, so its section is %s:)", b.Name, d.Name(), d.Name())
			}
		}
		sec, ok := r.Sections[d.Name()]
		if !ok {
			c.add(path, "missing the %s: section that says what the role's users may do", d.Name())
			continue
		}
		spec, warnings, err := d.ParseRole(c.decoder(&sec, path+"."+d.Name(), &c.errs))
		if err != nil && !errors.Is(err, errDecoded) {
			for _, msg := range strings.Split(err.Error(), "\n") {
				c.add(path+"."+d.Name(), "%s", msg)
			}
		}
		for _, w := range warnings {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s.%s: %s", path, d.Name(), w))
		}
		r.spec = spec
	}
}

// policies checks policies and compiles their subject and claim globs.
func (c *validation) policies() {
	for i := range c.Policies {
		p := &c.Policies[i]
		path := fmt.Sprintf("policies[%d]", i)
		if p.Name == "" {
			c.add(path+".name", "required")
		}
		if !c.issuerNames[p.Issuer] {
			c.add(path+".issuer", "unknown issuer %q", p.Issuer)
		}
		if len(p.Roles) == 0 && len(p.BreakGlassRoles) == 0 && !p.Admin {
			c.add(path, "grants nothing: list roles or break_glass_roles, or set admin: true")
		}
		for j, role := range p.Roles {
			if !c.roleNames[role] {
				c.add(fmt.Sprintf("%s.roles[%d]", path, j), "unknown role %q", role)
			}
		}
		for j, role := range p.BreakGlassRoles {
			if !c.roleNames[role] {
				c.add(fmt.Sprintf("%s.break_glass_roles[%d]", path, j), "unknown role %q", role)
			}
		}
		if p.Subject == "" && len(p.Claims) == 0 {
			c.add(path, "matches every identity of the issuer: set subject or claims (use subject: \"*\" if that is really meant)")
		}
		var err error
		if p.subject, err = compileGlob(cmp.Or(p.Subject, "*")); err != nil {
			c.add(path+".subject", "%v", err)
		}
		if w := globWarning(p.Subject); w != "" {
			c.Warnings = append(c.Warnings, path+".subject: "+w)
		}
		p.claims = map[string][]glob{}
		for _, name := range slices.Sorted(maps.Keys(p.Claims)) {
			vals := p.Claims[name]
			cpath := path + ".claims." + name
			if len(vals) == 0 {
				c.add(cpath, "no value (null or an empty list) matches no token: write the value the claim must have, or a list of values (any of them), or remove the claim")
			}
			for j, v := range vals {
				g, err := compileGlob(v)
				if err != nil {
					c.add(fmt.Sprintf("%s[%d]", cpath, j), "%v", err)
				}
				p.claims[name] = append(p.claims[name], g)
			}
		}
	}
}

// externalDriver returns the driver of a backend with plugin: external,
// after a handshake with its program (so the role sections can be keyed by
// the name it declares), or nil when the backend's keys are wrong or the
// program cannot start; every problem is added with its path.
func (c *Config) externalDriver(b *BackendConfig, path string, add func(path, format string, a ...any)) plugins.Driver {
	cfg := external.Config{Name: b.Name, Command: b.Command, SHA256: b.SHA256, Env: b.Env}
	d, err := external.New(cfg)
	if err != nil {
		onlyEnv := true
		for _, e := range leaves(err) {
			fe, ok := errors.AsType[*external.FieldError](e)
			if !ok {
				add(path, "%v", e)
				onlyEnv = false
				continue
			}
			add(path+"."+fe.Field, "%s", fe.Msg)
			onlyEnv = onlyEnv && strings.HasPrefix(fe.Field, "env.")
		}
		if !onlyEnv {
			return nil
		}
		// Validation runs without the env: the program can still check the
		// sections, so that every problem is reported at once.
		cfg.Env = nil
		if d, err = external.New(cfg); err != nil {
			return nil
		}
	}
	c.external = append(c.external, d)
	if err := d.Handshake(context.Background()); err != nil {
		field := path + ".command"
		if _, ok := errors.AsType[*external.ChecksumError](err); ok {
			field = path + ".sha256"
		}
		add(field, "%s", plugins.SanitizeString(err.Error()))
		return nil
	}
	return d
}

// leaves returns the errors errors.Join joined in err, or err alone.
func leaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// decoder returns a strict plugins.Decoder for node that appends its
// problems to errs and returns a short error so the plugin stops.
func (c *Config) decoder(node *yaml.Node, path string, errs *[]error) plugins.Decoder {
	return func(v any) error {
		if e := decodeStrict(node, v, path); len(e) > 0 {
			*errs = append(*errs, e...)
			return errDecoded
		}
		return nil
	}
}

// errDecoded tells a plugin that decoding failed; the problems themselves are
// already recorded with their paths.
var errDecoded = &FieldError{Msg: "see the problems above"}

func (c *Config) driverNames() string {
	names := make([]string, 0, len(c.drivers))
	for n := range c.drivers {
		names = append(names, n)
	}
	slices.Sort(names)
	return fmt.Sprint(names)
}

func checkName(path, name string, add func(path, format string, a ...any)) {
	if name == "" {
		add(path, "required")
	} else if !namePattern.MatchString(name) {
		add(path, "%q: use lower-case letters, digits, '-' and '_' (at most 63)", name)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
