package mysql

import (
	"context"
	"errors"
	"slices"

	"github.com/credbroker/credbroker/plugins"
)

// Driver is the "mysql" backend kind, for MySQL and MariaDB, written in the
// plugin's own types; [New] makes the [plugins.Driver] the broker uses. The
// zero value is ready to use.
type Driver struct{}

var (
	_ plugins.TypedDriver[*Connection, *Role] = Driver{}
	_ plugins.Describer                       = Driver{}
)

// New returns the "mysql" driver as the broker lists it.
func New() plugins.Driver { return plugins.Typed(Driver{}) }

// Name returns "mysql", the value of `plugin:` and the key of the role section
// this driver parses.
func (Driver) Name() string { return "mysql" }

// UsernameLimit returns 32, the longest user name MySQL 5.7 and later accept
// (MariaDB accepts 80; the smaller wins so one configuration fits both).
func (Driver) UsernameLimit() int { return usernameLimit }

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

// ParseRole decodes and validates a role's `mysql:` section. Privilege names
// come back upper case. It warns about grants on "*.*".
func (Driver) ParseRole(decode plugins.Decoder) (*Role, []string, error) {
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
// MySQL or MariaDB. c is what ParseConnection returned. A server that cannot
// be reached, or refuses the admin's login, is an error matching
// [plugins.ErrUnavailable].
func (Driver) Open(ctx context.Context, c *Connection) (plugins.TypedPlugin[*Role], error) {
	if c == nil {
		return nil, errors.New("open: no connection given")
	}
	conn := *c
	if err := conn.validate(); err != nil {
		return nil, err
	}
	p, err := open(ctx, &conn, nil)
	if err != nil {
		return nil, err // not a nil *Plugin in a non-nil interface
	}
	return p, nil
}

// credentialEnv names the variables a credential's Env holds, as the mysql
// client reads them (MYSQL_DATABASE is credbroker's own: the client takes
// the database as an argument).
var credentialEnv = []string{"MYSQL_HOST", "MYSQL_TCP_PORT", "MYSQL_USER", "MYSQL_PWD", "MYSQL_DATABASE"}

// Describe declares the mysql client for `credbroker connect`, the demo
// backend for `credbroker dev` (see demo.go) and the credential's variables.
func (Driver) Describe() plugins.Metadata {
	return plugins.Metadata{
		Clients: []plugins.Client{{Command: "mysql", Args: clientArgs}},
		Demo:    &plugins.Demo{Prepare: prepareDemo},
		Env:     slices.Clone(credentialEnv),
	}
}

// clientArgs are the mysql client's arguments for a credential: the user
// (the client reads MYSQL_HOST, MYSQL_TCP_PORT and MYSQL_PWD from the
// environment itself, but not MYSQL_USER) and the database, when the role
// names one.
func clientArgs(env map[string]string) []string {
	args := []string{"--user=" + env["MYSQL_USER"]}
	if db := env["MYSQL_DATABASE"]; db != "" {
		args = append(args, db)
	}
	return args
}
