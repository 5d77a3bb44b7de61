package broker

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
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
	// Checks tunes the checks that keep environments apart (validate_env.go).
	Checks ChecksConfig `yaml:"checks"`

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
	// KEK references the key-encryption keys of the admin secrets the
	// store keeps, newest first; each is 32 random bytes or their base64.
	// Default none: the store keeps no admin secrets and root rotation is
	// off. See [KEKRefs].
	KEK KEKRefs `yaml:"kek"`
}

// ReaperConfig tunes the reaper. Zero values take the defaults shown.
type ReaperConfig struct {
	// Interval is the longest the reaper sleeps between passes; default
	// 5s. It sleeps until the next lease is due, and a lease this replica
	// writes that is due sooner wakes it, so the interval is only the safety
	// net for leases other replicas write.
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

// ChecksConfig holds the thresholds of the checks that keep environments
// apart; the rules themselves always apply (see validate_env.go).
type ChecksConfig struct {
	// MaxBackendsPerSecret is how many backends one admin secret reference
	// may serve before validation warns of a "master secret": one secret
	// whose leak opens many backends. Default 3.
	MaxBackendsPerSecret int `yaml:"max_backends_per_secret"`
	// MaxTTL caps, by environment name, the max_ttl of the roles of that
	// environment's backends, e.g. {prod: 1h, staging: 8h}; a role above its
	// ceiling is an error. Default: no ceiling for any environment.
	MaxTTL map[string]time.Duration `yaml:"max_ttl"`
}

// BackendConfig is one database or queue.
type BackendConfig struct {
	Name   string `yaml:"name"`
	Plugin string `yaml:"plugin"`
	// Environment is the environment the backend belongs to (dev, staging,
	// prod …); required. Backends of different environments may not share
	// an admin secret or admin user, and an issuer's environments: restrict
	// the roles its policies may grant by it.
	Environment string `yaml:"environment"`
	// Owner is the team that answers for the backend; required.
	Owner string `yaml:"owner"`
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

	// Rotate is connection.rotate: the broker rotates the backend's admin
	// password every Rotate.Period; nil when it does not.
	Rotate *RotateConfig `yaml:"-"`

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
		return nil, &ConfigError{Errs: errs, Warnings: cfg.Warnings}
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
		return nil, &ConfigError{Errs: errs, Warnings: cfg.Warnings}
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
	c.Checks.MaxBackendsPerSecret = cmp.Or(c.Checks.MaxBackendsPerSecret, DefaultMaxBackendsPerSecret)
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

// Role returns the role named name, from the compiled catalog.
func (c *Config) Role(name string) (*RoleConfig, bool) {
	return c.catalog.role(name)
}

// Backend returns the backend named name, from the compiled catalog.
func (c *Config) Backend(name string) (*BackendConfig, bool) {
	b := c.catalog.backend(name)
	return b, b != nil
}
