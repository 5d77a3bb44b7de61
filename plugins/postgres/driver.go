package postgres

import (
	"context"
	"errors"

	"github.com/credbroker/credbroker/plugins"
)

// Driver is the "postgres" backend kind, written in the plugin's own types.
// The zero value is ready to use; the broker uses it through [New].
type Driver struct{}

var (
	_ plugins.TypedDriver[*Connection, *Role] = Driver{}
	_ plugins.Describer                       = Driver{}
)

// New returns the "postgres" driver as the broker uses it: [Driver] behind
// [plugins.Typed], which does the one type assertion of its connection and
// role values.
func New() plugins.Driver { return plugins.Typed(Driver{}) }

// Name returns "postgres", the value of `plugin:` and the key of the role
// section this driver parses.
func (Driver) Name() string { return "postgres" }

// UsernameLimit returns 63, the longest identifier PostgreSQL keeps whole
// (NAMEDATALEN-1 bytes).
func (Driver) UsernameLimit() int { return 63 }

// envNames are the variables [Plugin.Create] puts in a credential's Env, in
// the order they are best shown. psql and every libpq client read them.
var envNames = []string{"PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSSLMODE"}

// Describe declares psql as the backend's client (it reads the PG*
// variables of the credential, so it needs no arguments) and the names of
// those variables. The demo backend of `credbroker dev` is not declared
// here: it needs the broker's own store and is set up by the dev command.
func (Driver) Describe() plugins.Metadata {
	return plugins.Metadata{
		Clients: []plugins.Client{{Command: "psql"}},
		Env:     append([]string(nil), envNames...),
	}
}

// ParseConnection decodes and validates a `connection:` section, filling
// defaults. It neither resolves the DSN reference nor touches the network.
func (Driver) ParseConnection(decode plugins.Decoder) (*Connection, error) {
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

// ParseRole decodes and validates a role's `postgres:` section. Privilege
// names come back upper case. It warns when explicit grants are used, whose
// cost grows with every live lease.
func (Driver) ParseRole(decode plugins.Decoder) (*Role, []string, error) {
	if decode == nil {
		return nil, nil, errors.New("one of member_of, grants or creation_statements is required")
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

// Open resolves the DSN reference, connects, and makes sure the marker role
// credbroker_managed exists. A server that cannot be reached is an error
// matching [plugins.ErrUnavailable]; no error quotes the DSN or its
// password.
func (Driver) Open(ctx context.Context, c *Connection) (plugins.TypedPlugin[*Role], error) {
	if c == nil {
		return nil, errors.New("open: no connection given")
	}
	conn := *c
	if err := conn.validate(); err != nil {
		return nil, err
	}
	return open(ctx, &conn, nil)
}
