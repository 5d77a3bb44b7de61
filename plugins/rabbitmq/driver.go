package rabbitmq

import (
	"context"
	"errors"
	"slices"

	"github.com/credbroker/credbroker/plugins"
)

// usernameLimit is the longest username the plugin issues. RabbitMQ itself
// sets no practical limit; 64 bytes keep names whole in the management UI,
// in logs and in AMQP's 255-byte short strings with room to spare.
const usernameLimit = 64

// Driver is the "rabbitmq" backend kind, in the plugin's own types. The
// zero value is ready to use; the broker takes it as [New] returns it.
type Driver struct{}

var (
	_ plugins.TypedDriver[*Connection, *Role] = Driver{}
	_ plugins.Describer                       = Driver{}
)

// New returns the "rabbitmq" driver as the broker lists it.
func New() plugins.Driver { return plugins.Typed(Driver{}) }

// Name returns "rabbitmq", the value of `plugin:` and the key of the role
// section this driver parses.
func (Driver) Name() string { return "rabbitmq" }

// UsernameLimit returns 64. RabbitMQ has no limit of its own worth the name;
// 64 keeps issued names readable wherever they are shown.
func (Driver) UsernameLimit() int { return usernameLimit }

// ParseConnection decodes and validates a `connection:` section. It neither
// resolves the password reference, nor reads the CA file, nor touches the
// network.
func (Driver) ParseConnection(decode plugins.Decoder) (*Connection, error) {
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

// ParseRole decodes and validates a role's `rabbitmq:` section. Every
// regular expression must be present ("" allows nothing) and
// compile with Go's regexp package; a configure regexp that can match a name
// starting with "amq." (RabbitMQ's own objects) and the tags administrator,
// impersonator, monitoring and policymaker are refused. It warns about read
// and write regular expressions that are not anchored.
func (Driver) ParseRole(decode plugins.Decoder) (*Role, []string, error) {
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
// the management API answers and the admin is tagged administrator. A
// server that cannot be reached is an error matching
// [plugins.ErrUnavailable]. Callers use [plugins.Open], which wraps the
// plugin in the sanitizing decorator.
func (Driver) Open(ctx context.Context, connection *Connection) (plugins.TypedPlugin[*Role], error) {
	if connection == nil {
		return nil, errors.New("open: no connection given")
	}
	c := *connection
	if err := c.validate(); err != nil { // a Connection can be built by hand
		return nil, err
	}
	p, err := open(ctx, &c)
	if err != nil {
		return nil, err // not a nil *Plugin in a non-nil interface
	}
	return p, nil
}

// checked returns r, checked again: a Role can be built by hand.
func checked(r *Role) (*Role, error) {
	if r == nil {
		return nil, errors.New("no role given")
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}

// envNames are the variables of a credential's Env, in the order they are
// best shown.
var envNames = []string{"RABBITMQ_USERNAME", "RABBITMQ_PASSWORD", "RABBITMQ_VHOST", "AMQP_URL"}

// Describe declares the names of the credential's variables and the demo
// backend of `credbroker dev`: the RabbitMQ whose management API is at
// $CREDBROKER_DEV_RABBITMQ_MANAGEMENT_URL (default
// http://guest:guest@127.0.0.1:15672) and AMQP at
// $CREDBROKER_DEV_RABBITMQ_AMQP_URL (default amqp://127.0.0.1:5672), with a
// role that may use the demo.* queues and exchanges of vhost
// credbroker-demo.
//
// It declares no client for `credbroker connect` but the user's shell
// (Shell): RabbitMQ has no interactive AMQP shell. rabbitmqctl and
// rabbitmqadmin manage the node (over Erlang distribution, or the
// management API, which an issued user may use only when its role tags it
// management), and AMQP command-line tools such as amqp-tools' take the URI
// as an argument, where ps shows the password; none logs in from the
// credential's variables as psql and redis-cli do. In the shell, and in
// programs run under `credbroker exec`, AMQP_URL holds the login.
func (Driver) Describe() plugins.Metadata {
	return plugins.Metadata{
		Shell: true,
		Demo:  &plugins.Demo{Prepare: prepareDemo},
		Env:   slices.Clone(envNames),
	}
}
