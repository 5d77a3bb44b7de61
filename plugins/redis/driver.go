package redis

import (
	"context"
	"errors"
	"slices"
	"sync"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"

	"github.com/credbroker/credbroker/plugins"
)

// usernameLimit is the longest username the plugin makes. Redis itself has
// no limit; 64 bytes leave room for a readable role name beside the prefix
// and the random suffix, and keep ACL LIST, ACL LOG and the ACL file legible.
const usernameLimit = 64

// Driver is the "redis" backend kind, in the plugin's own types. The zero
// value is ready to use; the broker takes it as [New] returns it.
type Driver struct{}

var (
	_ plugins.TypedDriver[*Connection, *Role] = Driver{}
	_ plugins.Describer                       = Driver{}
)

// New returns the "redis" driver as the broker lists it.
func New() plugins.Driver { return plugins.Typed(Driver{}) }

// Name returns "redis", the value of `plugin:` and the key of the role
// section this driver parses.
func (Driver) Name() string { return "redis" }

// UsernameLimit returns 64, a limit credbroker chooses: Redis has none.
func (Driver) UsernameLimit() int { return usernameLimit }

// ParseConnection decodes and validates a `connection:` section. It neither
// resolves the password reference, nor reads the CA file, nor touches the
// network.
func (Driver) ParseConnection(decode plugins.Decoder) (*Connection, error) {
	if decode == nil {
		return nil, errors.New("connection: required: at least addr or addrs")
	}
	var c Connection
	if err := decode(&c); err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// ParseRole decodes and validates a role's `redis:` section. Selectors come
// back with single blanks between their rules. A rule that would weaken or
// undo the credential, or that grants a command with which the holder could
// make users, read passwords or outlive its lease (by name or through a
// category, as Redis 7.0 files its commands), is an error naming its index.
// There are no warnings.
func (Driver) ParseRole(decode plugins.Decoder) (*Role, []string, error) {
	if decode == nil {
		return nil, nil, errors.New(`rules: required: ACL rules such as ["~orders:*", "+@read"]`)
	}
	var r Role
	if err := decode(&r); err != nil {
		return nil, nil, err
	}
	rules, err := r.check()
	if err != nil {
		return nil, nil, err
	}
	r.Rules = rules
	return &r, nil, nil
}

// Open resolves the password reference, reads the CA file and connects:
// with addr, to the server, which must not be a cluster node; with addrs, to
// the first seed that lists the cluster's nodes. A server that cannot be
// reached is an error matching [plugins.ErrUnavailable]. Callers use
// [plugins.Open], which wraps the plugin in the sanitizing decorator.
func (Driver) Open(ctx context.Context, connection *Connection) (plugins.TypedPlugin[*Role], error) {
	if connection == nil {
		return nil, errors.New("open: no connection given")
	}
	c := *connection
	if err := c.validate(); err != nil { // a Connection can be built by hand
		return nil, err
	}
	// go-redis writes plain text ("failed to dial …") to stderr through a
	// package-level logger, into the broker's JSON log; the plugin returns
	// those errors anyway, so silence it.
	silenceDriverLog.Do(func() { goredis.SetLogger(&logging.VoidLogger{}) })
	p, err := open(ctx, &c, nil)
	if err != nil {
		return nil, err // not a nil *Plugin in a non-nil interface
	}
	return p, nil
}

var silenceDriverLog sync.Once

// rulesOf returns the rules of r, checked again: a Role can be built by
// hand.
func rulesOf(r *Role) ([]string, error) {
	if r == nil {
		return nil, errors.New("no role given")
	}
	return r.check()
}

// envNames are the variables of a credential's Env, in the order they are
// best shown.
var envNames = []string{"REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDISCLI_AUTH", "REDIS_URL"}

// Describe declares redis-cli as the client of `credbroker connect` (it
// reads the password from REDISCLI_AUTH, and needs the username given), the
// names of the credential's variables, and the demo backend of `credbroker
// dev`: the Redis at $CREDBROKER_DEV_REDIS_ADDR (default 127.0.0.1:6379),
// with a role that may read and write demo:* keys.
func (Driver) Describe() plugins.Metadata {
	return plugins.Metadata{
		Clients: []plugins.Client{{
			Command: "redis-cli",
			Args: func(env map[string]string) []string {
				return []string{"-h", env["REDIS_HOST"], "-p", env["REDIS_PORT"], "--user", env["REDIS_USERNAME"]}
			},
		}},
		Demo: &plugins.Demo{Prepare: prepareDemo},
		Env:  slices.Clone(envNames),
	}
}
