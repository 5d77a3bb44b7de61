package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/authn"
	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/external"
	"github.com/credbroker/credbroker/secret"
)

// DefaultListen is where the server listens when the config names nowhere.
const DefaultListen = "127.0.0.1:8420"

// Config is the server's configuration file (DESIGN.md §3). Every secret in it
// is a [secret.Ref]; none is written inline.
type Config struct {
	// Listen is host:port; default 127.0.0.1:8420. Without TLS it must be a
	// loopback address.
	Listen string `yaml:"listen"`
	// TLS serves HTTPS when set.
	TLS *TLSConfig `yaml:"tls"`
	// Store is the PostgreSQL database that holds leases.
	Store StoreConfig `yaml:"store"`
	// Reaper tunes revocation of expired and abandoned leases.
	Reaper ReaperConfig `yaml:"reaper"`
	// Limits protects the backends and the store from a single noisy
	// identity or connection.
	Limits LimitsConfig `yaml:"limits"`
	// MetricsListen is host:port of a separate listener that serves only
	// Prometheus /metrics. Default "": metrics are not served. Without tls it
	// must be a loopback address.
	MetricsListen string `yaml:"metrics_listen"`
	// Issuers are the identity-token issuers the broker trusts.
	Issuers []authn.IssuerConfig `yaml:"issuers"`
	// Backends are the databases and queues credentials are issued for.
	Backends []BackendConfig `yaml:"backends"`
	// Roles are what a caller asks for: a backend plus that backend's grants.
	Roles []RoleConfig `yaml:"roles"`
	// Policies say which identities may request which roles.
	Policies []PolicyConfig `yaml:"policies"`

	// Warnings are what validation found that works but will hurt; filled in
	// by [ParseConfig].
	Warnings []string `yaml:"-"`

	drivers map[string]plugins.Driver
	policy  *Policy
	catalog *catalog // compiled with policy, from a valid config
	// external are the drivers of the backends with plugin: external.
	external []*external.Driver
}

// TLSConfig names the server certificate and key files, and optionally the
// certificate authorities of client certificates (mTLS).
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile is a PEM file of the certificate authorities whose client
	// certificates are accepted. Default "": no client certificates.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is "require" (every connection presents a valid client
	// certificate) or "verify_if_given"; default "require" when
	// client_ca_file is set.
	ClientAuth string `yaml:"client_auth"`
}

// StoreConfig locates the lease store.
type StoreConfig struct {
	// DSN is a reference to a PostgreSQL connection string.
	DSN secret.Ref `yaml:"dsn"`
	// MaxConns caps the store's connection pool for API calls; default 10.
	MaxConns int32 `yaml:"max_conns"`
	// ReaperMaxConns caps the reaper's own pool, which API calls never
	// use, so callers exhausting max_conns cannot stop expiry; default 2,
	// at least 2 (a sweep holds one for its lock).
	ReaperMaxConns int32 `yaml:"reaper_max_conns"`
}

// ReaperConfig tunes the reaper. Zero values take the defaults shown.
type ReaperConfig struct {
	// Interval between reaper passes; default 5s.
	Interval time.Duration `yaml:"interval"`
	// PendingGrace is how old a PENDING lease must be before it is treated as
	// an abandoned issue and revoked; default 2m.
	PendingGrace time.Duration `yaml:"pending_grace"`
	// SweepInterval is how often backends are swept for users no lease
	// accounts for; default 10m.
	SweepInterval time.Duration `yaml:"sweep_interval"`
}

// LimitsConfig holds request limits.
type LimitsConfig struct {
	// IssueRate is how many credentials one identity may be issued per second;
	// default 20.
	IssueRate float64 `yaml:"issue_rate"`
	// IssueBurst is how many it may be issued at once; default 40.
	IssueBurst int `yaml:"issue_burst"`
	// RequestRate is how many calls of any kind (issue, renew, revoke, get,
	// list …) one identity may make per second, checked before policy and
	// before anything is written; default 50.
	RequestRate float64 `yaml:"request_rate"`
	// RequestBurst is how many calls it may make at once; default 100.
	RequestBurst int `yaml:"request_burst"`
	// MaxConnections caps the open client connections of the API listener;
	// default 1024.
	MaxConnections int `yaml:"max_connections"`
	// ReadTimeout bounds reading a whole request, body included; default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// IdleTimeout closes a keep-alive connection idle this long; default 2m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConcurrentStreams caps the HTTP/2 streams of one connection;
	// default 100.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`
}

// BackendConfig is one database or queue.
type BackendConfig struct {
	Name        string `yaml:"name"`
	Plugin      string `yaml:"plugin"`
	Environment string `yaml:"environment"`
	Owner       string `yaml:"owner"`
	// Sweep is whether the reaper sweeps this backend for users no lease
	// accounts for; default true. Turn it off where another credbroker
	// deployment, with its own store, issues users on the same server.
	Sweep *bool `yaml:"sweep"`
	// Connection is decoded by the plugin.
	Connection yaml.Node `yaml:"connection"`
	// Command is, with plugin: external, the backend's program and its
	// arguments: [/absolute/path, args…]. The broker starts it and talks to
	// it over a private unix socket (docs/plugins.md).
	Command []string `yaml:"command"`
	// SHA256 is the hex SHA-256 of Command[0]; required with plugin:
	// external. The broker refuses to start a program that hashes
	// otherwise.
	SHA256 string `yaml:"sha256"`
	// Env are, with plugin: external, the variables the program gets, each a
	// secret reference the broker resolves; the program gets nothing else
	// of the broker's environment.
	Env map[string]secret.Ref `yaml:"env"`

	connection any
	// driver parsed the backend's sections and opens it: the built-in
	// plugin's, or the backend's own program's with plugin: external.
	driver plugins.Driver
}

// RoleConfig is one role: a backend plus the grants its users get.
type RoleConfig struct {
	Name       string        `yaml:"name"`
	Backend    string        `yaml:"backend"`
	Owner      string        `yaml:"owner"`
	DefaultTTL time.Duration `yaml:"default_ttl"`
	MaxTTL     time.Duration `yaml:"max_ttl"`
	// Renewable is whether leases of the role may be renewed; default true.
	Renewable *bool `yaml:"renewable"`
	// BreakGlassMaxTTL caps a break-glass lease of the role, renewals
	// included; default 15m (and never more than max_ttl).
	BreakGlassMaxTTL time.Duration `yaml:"break_glass_max_ttl"`
	// Sections holds the plugin section (`postgres:` …), decoded by the plugin.
	Sections map[string]yaml.Node `yaml:",inline"`

	spec any
}

// PolicyConfig grants roles (or admin rights) to identities.
type PolicyConfig struct {
	Name string `yaml:"name"`
	// Issuer is the name of one of the configured issuers.
	Issuer string `yaml:"issuer"`
	// Subject is the token's sub, exactly or as a segment-aware glob: `*`
	// matches within one segment (it stops at ':' and '/'), `**` across
	// segments, `?` one character that is not a separator, and a `*` that
	// is a whole last segment (`repo:org/app:*`) everything under it.
	Subject string `yaml:"subject"`
	// Claims must each match the token's claim (a string, or a list of
	// strings one of which matches). A value is a string or a list (any of
	// them), each a glob with the rules of subject.
	Claims map[string]ClaimValues `yaml:"claims"`
	Roles  []string               `yaml:"roles"`
	// BreakGlassRoles may be requested only with a break-glass reason, which
	// is recorded and audited; such leases end after the role's
	// break_glass_max_ttl.
	BreakGlassRoles []string `yaml:"break_glass_roles"`
	// Admin may see and revoke every lease.
	Admin bool `yaml:"admin"`

	subject glob
	claims  map[string][]glob
}

// LoadConfig reads and validates the config file at path, then reads every
// issuer's jwks_file or spiffe.bundle_file as the server does: a key file
// that cannot be read or holds no usable signing key is an error.
func LoadConfig(path string, drivers []plugins.Driver) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(data, drivers)
	if err != nil {
		return nil, err
	}
	var errs []error
	for i, is := range cfg.Issuers {
		if err := is.CheckKeyFile(); err != nil {
			errs = append(errs, &FieldError{Path: fmt.Sprintf("issuers[%d]", i), Msg: err.Error()})
		}
	}
	if len(errs) > 0 {
		return nil, errorList(errs)
	}
	return cfg, nil
}

// ParseConfig decodes and validates a config file without touching the
// network or resolving secrets. It reports every problem at once, each with
// its path.
func ParseConfig(data []byte, drivers []plugins.Driver) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, errorList([]error{&FieldError{Msg: fmt.Sprintf("not valid YAML: %v", err)}})
	}
	if root.Kind == 0 {
		return nil, errorList([]error{&FieldError{Msg: "the config file is empty"}})
	}
	cfg := &Config{drivers: map[string]plugins.Driver{}}
	for _, d := range drivers {
		cfg.drivers[d.Name()] = d
	}
	errs := decodeStrict(&root, cfg, "")
	cfg.setDefaults()
	errs = append(errs, cfg.validate(errs)...)
	cfg.stopValidators()
	if len(errs) > 0 {
		return nil, errorList(errs)
	}
	return cfg, nil
}

func (c *Config) setDefaults() {
	c.Listen = cmp.Or(c.Listen, DefaultListen)
	c.Store.MaxConns = cmp.Or(c.Store.MaxConns, 10)
	c.Store.ReaperMaxConns = cmp.Or(c.Store.ReaperMaxConns, 2)
	c.Reaper.Interval = cmp.Or(c.Reaper.Interval, 5*time.Second)
	c.Reaper.PendingGrace = cmp.Or(c.Reaper.PendingGrace, 2*time.Minute)
	c.Reaper.SweepInterval = cmp.Or(c.Reaper.SweepInterval, 10*time.Minute)
	c.Limits.IssueRate = cmp.Or(c.Limits.IssueRate, 20)
	c.Limits.IssueBurst = cmp.Or(c.Limits.IssueBurst, 40)
	c.Limits.RequestRate = cmp.Or(c.Limits.RequestRate, 50)
	c.Limits.RequestBurst = cmp.Or(c.Limits.RequestBurst, 100)
	c.Limits.MaxConnections = cmp.Or(c.Limits.MaxConnections, 1024)
	c.Limits.ReadTimeout = cmp.Or(c.Limits.ReadTimeout, 30*time.Second)
	c.Limits.IdleTimeout = cmp.Or(c.Limits.IdleTimeout, 2*time.Minute)
	c.Limits.MaxConcurrentStreams = cmp.Or(c.Limits.MaxConcurrentStreams, 100)
	for i := range c.Roles {
		if c.Roles[i].Renewable == nil {
			c.Roles[i].Renewable = new(true)
		}
		c.Roles[i].BreakGlassMaxTTL = cmp.Or(c.Roles[i].BreakGlassMaxTTL, 15*time.Minute)
	}
	for i := range c.Backends {
		if c.Backends[i].Sweep == nil {
			c.Backends[i].Sweep = new(true)
		}
	}
}

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// validate checks what decoding cannot: required fields, references between
// sections, TTLs, and each plugin's sections. Paths that already have a
// decoding problem (in found) are not reported twice.
func (c *Config) validate(found []error) []error {
	var errs []error
	reported := map[string]bool{}
	for _, e := range found {
		if fe, ok := e.(*FieldError); ok {
			reported[fe.Path] = true
		}
	}
	add := func(path, format string, a ...any) {
		if !reported[path] {
			errs = append(errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, a...)})
		}
	}

	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		add("listen", "%q is not host:port", c.Listen)
	} else if c.TLS == nil && !isLoopback(host) {
		add("listen", "%s is not a loopback address: without tls the server listens on loopback only; configure tls: {cert_file, key_file}", c.Listen)
	}
	if c.TLS != nil {
		if c.TLS.CertFile == "" {
			add("tls.cert_file", "required when tls is set")
		}
		if c.TLS.KeyFile == "" {
			add("tls.key_file", "required when tls is set")
		}
		switch c.TLS.ClientAuth {
		case "", ClientAuthRequire, ClientAuthVerifyIfGiven:
			if c.TLS.ClientAuth != "" && c.TLS.ClientCAFile == "" {
				add("tls.client_auth", "%q needs tls.client_ca_file: the PEM file of the certificate authorities whose client certificates are accepted", c.TLS.ClientAuth)
			}
		default:
			add("tls.client_auth", "unknown value %q: write %s (every connection presents a client certificate; the default with client_ca_file) or %s", c.TLS.ClientAuth, ClientAuthRequire, ClientAuthVerifyIfGiven)
		}
	}
	if c.MetricsListen != "" {
		host, _, err := net.SplitHostPort(c.MetricsListen)
		switch {
		case err != nil:
			add("metrics_listen", "%q is not host:port, e.g. 127.0.0.1:9420", c.MetricsListen)
		case c.TLS == nil && !isLoopback(host):
			add("metrics_listen", "%s is not a loopback address: metrics name every role and backend, so without tls they are served on loopback only; write e.g. 127.0.0.1:9420, or configure tls", c.MetricsListen)
		case c.MetricsListen == c.Listen:
			add("metrics_listen", "%s is the API's listen address: metrics need a port of their own, e.g. 127.0.0.1:9420", c.MetricsListen)
		}
	}
	if c.Store.DSN.IsZero() {
		add("store.dsn", `required: a reference to the lease store's PostgreSQL DSN, e.g. env:CREDBROKER_DATABASE_URL`)
	}
	if c.Store.MaxConns < 1 {
		add("store.max_conns", "%d: must be at least 1 (default 10)", c.Store.MaxConns)
	}
	if c.Store.ReaperMaxConns < 2 {
		add("store.reaper_max_conns", "%d: must be at least 2, one for a sweep's lock and one for the rest (default 2)", c.Store.ReaperMaxConns)
	}
	if c.Reaper.Interval < 100*time.Millisecond {
		add("reaper.interval", "must be at least 100ms")
	}
	if c.Limits.IssueRate < 0 || c.Limits.IssueBurst < 1 {
		add("limits", "issue_rate must be positive and issue_burst at least 1")
	}
	if c.Limits.RequestRate < 0 || c.Limits.RequestBurst < 1 {
		add("limits", "request_rate must be positive and request_burst at least 1")
	}
	if c.Limits.MaxConnections < 0 {
		add("limits.max_connections", "must be positive")
	}
	if c.Limits.ReadTimeout < 0 || c.Limits.IdleTimeout < 0 {
		add("limits", "read_timeout and idle_timeout must be positive durations")
	}
	if c.Limits.MaxConcurrentStreams < 0 {
		add("limits.max_concurrent_streams", "must be positive")
	}

	issuers := map[string]bool{}
	if len(c.Issuers) == 0 {
		add("issuers", "at least one issuer is required")
	}
	for i, is := range c.Issuers {
		path := fmt.Sprintf("issuers[%d]", i)
		if issuers[is.Name] {
			add(path+".name", "duplicate issuer %q", is.Name)
		}
		issuers[is.Name] = true
		for _, err := range is.Validate() {
			add(path, "%v", err)
		}
		for _, w := range is.Warnings() {
			c.Warnings = append(c.Warnings, path+"."+w)
		}
	}

	backends := map[string]*BackendConfig{}
	for i := range c.Backends {
		b := &c.Backends[i]
		path := fmt.Sprintf("backends[%d]", i)
		checkName(path+".name", b.Name, add)
		if backends[b.Name] != nil {
			add(path+".name", "duplicate backend %q", b.Name)
		}
		backends[b.Name] = b
		var d plugins.Driver
		if b.Plugin == external.Backend {
			if d = c.externalDriver(b, path, add); d == nil {
				continue
			}
		} else {
			for key, set := range map[string]bool{"command": len(b.Command) > 0, "sha256": b.SHA256 != "", "env": len(b.Env) > 0} {
				if set {
					add(path+"."+key, "only with plugin: external, for a backend run as a separate program")
				}
			}
			var ok bool
			if d, ok = c.drivers[b.Plugin]; !ok {
				add(path+".plugin", "unknown plugin %q (this binary has: %s; or external, for a backend run as a separate program)", b.Plugin, c.driverNames())
				continue
			}
		}
		b.driver = d
		if b.Connection.Kind == 0 {
			add(path+".connection", "required")
			continue
		}
		conn, err := d.ParseConnection(c.decoder(&b.Connection, path+".connection", &errs))
		if err != nil && !errors.Is(err, errDecoded) {
			// A plugin joins its errors (errors.Join) a line each: each gets the path.
			for _, msg := range strings.Split(err.Error(), "\n") {
				add(path+".connection", "%s", msg)
			}
		}
		b.connection = conn
	}

	roles := map[string]bool{}
	for i := range c.Roles {
		r := &c.Roles[i]
		path := fmt.Sprintf("roles[%d]", i)
		checkName(path+".name", r.Name, add)
		if roles[r.Name] {
			add(path+".name", "duplicate role %q", r.Name)
		}
		roles[r.Name] = true
		switch {
		case r.DefaultTTL <= 0:
			add(path+".default_ttl", "required and positive, e.g. 15m")
		case r.MaxTTL <= 0:
			add(path+".max_ttl", "required and positive, e.g. 1h")
		case r.DefaultTTL > r.MaxTTL:
			add(path+".default_ttl", "%s is longer than max_ttl %s", r.DefaultTTL, r.MaxTTL)
		}
		if r.BreakGlassMaxTTL < 0 {
			add(path+".break_glass_max_ttl", "must be positive, e.g. 15m")
		}
		b := backends[r.Backend]
		if b == nil {
			add(path+".backend", "unknown backend %q", r.Backend)
			continue
		}
		d := b.driver
		if d == nil {
			continue // reported on the backend
		}
		for key := range r.Sections {
			if key != d.Name() {
				add(path+"."+key, "unknown key (backend %s uses plugin %s, so its section is %s:)", b.Name, d.Name(), d.Name())
			}
		}
		sec, ok := r.Sections[d.Name()]
		if !ok {
			add(path, "missing the %s: section that says what the role's users may do", d.Name())
			continue
		}
		spec, warnings, err := d.ParseRole(c.decoder(&sec, path+"."+d.Name(), &errs))
		if err != nil && !errors.Is(err, errDecoded) {
			for _, msg := range strings.Split(err.Error(), "\n") {
				add(path+"."+d.Name(), "%s", msg)
			}
		}
		for _, w := range warnings {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s.%s: %s", path, d.Name(), w))
		}
		r.spec = spec
	}

	for i := range c.Policies {
		p := &c.Policies[i]
		path := fmt.Sprintf("policies[%d]", i)
		if p.Name == "" {
			add(path+".name", "required")
		}
		if !issuers[p.Issuer] {
			add(path+".issuer", "unknown issuer %q", p.Issuer)
		}
		if len(p.Roles) == 0 && len(p.BreakGlassRoles) == 0 && !p.Admin {
			add(path, "grants nothing: list roles or break_glass_roles, or set admin: true")
		}
		for j, role := range p.Roles {
			if !roles[role] {
				add(fmt.Sprintf("%s.roles[%d]", path, j), "unknown role %q", role)
			}
		}
		for j, role := range p.BreakGlassRoles {
			if !roles[role] {
				add(fmt.Sprintf("%s.break_glass_roles[%d]", path, j), "unknown role %q", role)
			}
		}
		if p.Subject == "" && len(p.Claims) == 0 {
			add(path, "matches every identity of the issuer: set subject or claims (use subject: \"*\" if that is really meant)")
		}
		var err error
		if p.subject, err = compileGlob(cmp.Or(p.Subject, "*")); err != nil {
			add(path+".subject", "%v", err)
		}
		if w := globWarning(p.Subject); w != "" {
			c.Warnings = append(c.Warnings, path+".subject: "+w)
		}
		p.claims = map[string][]glob{}
		for _, name := range slices.Sorted(maps.Keys(p.Claims)) {
			vals := p.Claims[name]
			cpath := path + ".claims." + name
			if len(vals) == 0 {
				add(cpath, "no value (null or an empty list) matches no token: write the value the claim must have, or a list of values (any of them), or remove the claim")
			}
			for j, v := range vals {
				g, err := compileGlob(v)
				if err != nil {
					add(fmt.Sprintf("%s[%d]", cpath, j), "%v", err)
				}
				p.claims[name] = append(p.claims[name], g)
			}
		}
	}
	if len(errs) == 0 {
		c.catalog = compileCatalog(c)
		c.policy = compilePolicy(c.catalog)
	}
	return errs
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

// stopValidators stops the programs that validated the sections of
// backends with plugin: external; opening such a backend starts its program
// again, for good.
func (c *Config) stopValidators() {
	for _, d := range c.external {
		_ = d.Close()
	}
}

// SetPluginLogger sends the output of the programs of backends with plugin:
// external, and their supervisors' events, to log (none until it is
// called).
func (c *Config) SetPluginLogger(log *slog.Logger) {
	for _, d := range c.external {
		d.SetLogger(log)
	}
}

// Policy returns the compiled policies: the one place that decides what an
// identity may do.
func (c *Config) Policy() *Policy { return c.policy }

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

// Role returns the role named name, from the compiled catalog.
func (c *Config) Role(name string) (*RoleConfig, bool) {
	return c.catalog.role(name)
}

// Backend returns the backend named name, from the compiled catalog.
func (c *Config) Backend(name string) (*BackendConfig, bool) {
	b := c.catalog.backend(name)
	return b, b != nil
}
