package mqtt

import (
	"context"
	"errors"
	"fmt"

	"github.com/credbroker/credbroker/plugins"
)

// Driver is the "mqtt" backend kind. The zero value is ready to use.
type Driver struct{}

var (
	_ plugins.TypedDriver[*Connection, *Role] = Driver{}
	_ plugins.Describer                       = Driver{}
)

// New returns the driver as credbroker takes it.
func New() plugins.Driver { return plugins.Typed(Driver{}) }

// Name returns "mqtt", the value of `plugin:` and the key of the role
// section this driver parses.
func (Driver) Name() string { return "mqtt" }

// UsernameLimit returns 64, a limit credbroker chooses: dynsec has none.
func (Driver) UsernameLimit() int { return usernameLimit }

// ParseConnection decodes and validates a `connection:` section. It
// neither resolves the password reference, nor reads the CA file, nor
// touches the network.
func (Driver) ParseConnection(decode plugins.Decoder) (*Connection, error) {
	if decode == nil {
		return nil, errors.New("connection: required: at least url, username and password")
	}
	var c Connection
	if err := decode(&c); err != nil {
		return nil, err
	}
	if _, err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// ParseRole decodes and validates a role's `mqtt:` section. An ACL whose
// type is unknown, whose topic is not a topic filter or names $CONTROL, or
// that repeats another's type and topic is an error naming its index, and
// so is a role name starting with cb_. A role whose ACLs all deny and that
// names no roles is a warning.
func (Driver) ParseRole(decode plugins.Decoder) (*Role, []string, error) {
	if decode == nil {
		return nil, nil, errors.New("acls or roles: required")
	}
	var y roleYAML
	if err := decode(&y); err != nil {
		return nil, nil, err
	}
	return y.role()
}

// Open resolves the password reference, reads the CA file, connects as the
// admin and runs one dynsec command. A broker that cannot be reached is an
// error matching [plugins.ErrUnavailable]; one that refuses the admin is
// not.
func (Driver) Open(ctx context.Context, c *Connection) (plugins.TypedPlugin[*Role], error) {
	if c == nil {
		return nil, errors.New("open: no connection given")
	}
	pw, err := c.Password.Resolve()
	if err != nil {
		return nil, fmt.Errorf("open: password: %w", err)
	}
	p, err := open(ctx, c, pw)
	if err != nil {
		return nil, err
	}
	return p, nil
}
