package mysql

import (
	"context"
	"errors"
	"fmt"

	"github.com/credbroker/credbroker/plugins"
)

// Driver is the "mysql" backend kind, for MySQL and MariaDB. The zero value is
// ready to use.
type Driver struct{}

var _ plugins.Driver = Driver{}

// Name returns "mysql", the value of `plugin:` and the key of the role section
// this driver parses.
func (Driver) Name() string { return "mysql" }

// UsernameLimit returns 32, the longest user name MySQL 5.7 and later accept
// (MariaDB accepts 80; the smaller wins so one configuration fits both).
func (Driver) UsernameLimit() int { return usernameLimit }

// ParseConnection decodes and validates a `connection:` section into a
// *Connection, filling defaults. It neither resolves the DSN reference nor
// touches the network.
func (Driver) ParseConnection(decode plugins.Decoder) (any, error) {
	if decode == nil {
		return nil, errors.New("connection: required: at least dsn")
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

// ParseRole decodes and validates a role's `mysql:` section into a *Role.
// Privilege names come back upper case. It warns about grants on "*.*".
func (Driver) ParseRole(decode plugins.Decoder) (any, []string, error) {
	if decode == nil {
		return nil, nil, errors.New("one of grants or creation_statements is required")
	}
	var r Role
	if err := decode(&r); err != nil {
		return nil, nil, err
	}
	warnings, err := r.validate()
	if err != nil {
		return nil, nil, err
	}
	return &r, warnings, nil
}

// Open resolves the DSN reference, connects and learns whether the server is
// MySQL or MariaDB. connection is what ParseConnection returned. A server
// that cannot be reached, or refuses the admin's login, is an error matching
// [plugins.ErrUnavailable].
func (Driver) Open(ctx context.Context, connection any) (plugins.Plugin, error) {
	c, err := asConnection(connection)
	if err != nil {
		return nil, err
	}
	return open(ctx, c, nil)
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
		return nil, fmt.Errorf("open: connection is %T, want *mysql.Connection from ParseConnection", v)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func asRole(v any) (*Role, error) {
	if r, ok := v.(*Role); ok && r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("role is %T, want *mysql.Role from ParseRole", v)
}
