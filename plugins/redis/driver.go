package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"

	"github.com/credbroker/credbroker/plugins"
)

// usernameLimit is the longest username the plugin makes. Redis itself has
// no limit; 64 bytes leave room for a readable role name beside the prefix
// and the random suffix, and keep ACL LIST, ACL LOG and the ACL file legible.
const usernameLimit = 64

// Driver is the "redis" backend kind. The zero value is ready to use.
type Driver struct{}

var _ plugins.Driver = Driver{}

// Name returns "redis", the value of `plugin:` and the key of the role
// section this driver parses.
func (Driver) Name() string { return "redis" }

// UsernameLimit returns 64, a limit credbroker chooses: Redis has none.
func (Driver) UsernameLimit() int { return usernameLimit }

// ParseConnection decodes and validates a `connection:` section into a
// *Connection. It neither resolves the password reference, nor reads the CA
// file, nor touches the network.
func (Driver) ParseConnection(decode plugins.Decoder) (any, error) {
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

// ParseRole decodes and validates a role's `redis:` section into a *Role.
// Selectors come back with single blanks between their rules. A rule that
// would weaken or undo the credential, or that grants a command with which
// the holder could make users, read passwords or outlive its lease (by name
// or through a category, as Redis 7.0 files its commands), is an error
// naming its index. There are no warnings.
func (Driver) ParseRole(decode plugins.Decoder) (any, []string, error) {
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
// the first seed that lists the cluster's nodes. connection is what
// ParseConnection returned. A server that cannot be reached is an error
// matching [plugins.ErrUnavailable].
func (Driver) Open(ctx context.Context, connection any) (plugins.Plugin, error) {
	c, err := asConnection(connection)
	if err != nil {
		return nil, err
	}
	// go-redis writes plain text ("failed to dial …") to stderr through a
	// package-level logger, into the broker's JSON log; the plugin returns
	// those errors anyway, so silence it.
	silenceDriverLog.Do(func() { goredis.SetLogger(&logging.VoidLogger{}) })
	return open(ctx, c, nil)
}

var silenceDriverLog sync.Once

func asConnection(v any) (*Connection, error) {
	var c Connection
	switch v := v.(type) {
	case *Connection:
		if v == nil {
			return nil, errors.New("open: no connection given")
		}
		c = *v
	case Connection:
		c = v
	default:
		return nil, fmt.Errorf("open: connection is %T, want *redis.Connection from ParseConnection", v)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// asRole returns the rules of v, checked again: a Role can be built by hand.
func asRole(v any) ([]string, error) {
	r, ok := v.(*Role)
	if !ok || r == nil {
		return nil, fmt.Errorf("role is %T, want *redis.Role from ParseRole", v)
	}
	return r.check()
}
