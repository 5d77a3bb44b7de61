package rabbitmq

import (
	"context"
	"errors"
	"fmt"

	"github.com/credbroker/credbroker/plugins"
)

// usernameLimit is the longest username the plugin issues. RabbitMQ itself
// sets no practical limit; 64 bytes keep names whole in the management UI,
// in logs and in AMQP's 255-byte short strings with room to spare.
const usernameLimit = 64

// Driver is the "rabbitmq" backend kind. The zero value is ready to use.
type Driver struct{}

var _ plugins.Driver = Driver{}

// Name returns "rabbitmq", the value of `plugin:` and the key of the role
// section this driver parses.
func (Driver) Name() string { return "rabbitmq" }

// UsernameLimit returns 64. RabbitMQ has no limit of its own worth the name;
// 64 keeps issued names readable wherever they are shown.
func (Driver) UsernameLimit() int { return usernameLimit }

// ParseConnection decodes and validates a `connection:` section into a
// *Connection. It neither resolves the password reference, nor reads the CA
// file, nor touches the network.
func (Driver) ParseConnection(decode plugins.Decoder) (any, error) {
	if decode == nil {
		return nil, errors.New("connection: required: management_url, username, password and amqp_url")
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

// ParseRole decodes and validates a role's `rabbitmq:` section into a
// *Role. Every regular expression must be present ("" allows nothing) and
// compile with Go's regexp package; a configure regexp that can match a name
// starting with "amq." (RabbitMQ's own objects) and the tags administrator,
// impersonator, monitoring and policymaker are refused. It warns about read
// and write regular expressions that are not anchored.
func (Driver) ParseRole(decode plugins.Decoder) (any, []string, error) {
	if decode == nil {
		return nil, nil, errors.New("vhosts: required: a map from vhost name to {configure, write, read}")
	}
	var raw rawRole
	if err := decode(&raw); err != nil {
		return nil, nil, err
	}
	role, warnings, err := raw.role()
	if err != nil {
		return nil, nil, err
	}
	return role, warnings, nil
}

// Open resolves the password reference, reads the CA file, and checks that
// the management API answers and the admin is tagged administrator.
// connection is what ParseConnection returned. A server that cannot be
// reached is an error matching [plugins.ErrUnavailable].
func (Driver) Open(ctx context.Context, connection any) (plugins.Plugin, error) {
	c, err := asConnection(connection)
	if err != nil {
		return nil, err
	}
	return open(ctx, c)
}

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
		return nil, fmt.Errorf("open: connection is %T, want *rabbitmq.Connection from ParseConnection", v)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func asRole(v any) (*Role, error) {
	r, ok := v.(*Role)
	if !ok || r == nil {
		return nil, fmt.Errorf("role is %T, want *rabbitmq.Role from ParseRole", v)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}
