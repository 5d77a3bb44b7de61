package mqtt

import (
	"errors"
	"fmt"

	"github.com/credbroker/credbroker/plugins"
)

// ErrNotManaged is returned for a username or role name without
// [plugins.ManagedPrefix]: the plugin never creates, changes or deletes a
// client or role it did not make.
var ErrNotManaged = errors.New("not a name credbroker makes: it does not start with " + plugins.ManagedPrefix)

// errClosed is returned by every call after Close.
var errClosed = errors.New("the plugin is closed")

// CommandError is an error dynsec answered a command with, such as "Role
// already exists" or "Client not found".
type CommandError struct {
	// Command is the dynsec command (createClient …).
	Command string
	// Message is dynsec's error text.
	Message string
}

func (e *CommandError) Error() string { return fmt.Sprintf("dynsec %s: %s", e.Command, e.Message) }

// dynsec's error texts that the plugin acts on (Mosquitto 2.0).
const (
	msgClientNotFound = "Client not found"
	msgRoleNotFound   = "Role not found"
)

// isNotFound reports whether err is dynsec saying the client or role named
// does not exist.
func isNotFound(err error) bool {
	var ce *CommandError
	return errors.As(err, &ce) && (ce.Message == msgClientNotFound || ce.Message == msgRoleNotFound)
}
