package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"slices"

	rabbithole "github.com/michaelklishin/rabbit-hole/v2"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

var (
	_ plugins.TypedAdminPassworder[*Connection] = Driver{}
	_ plugins.RootRotator                       = (*Plugin)(nil)
	_ plugins.AdminPassworded                   = (*Plugin)(nil)
)

// WithAdminPassword returns a copy of c that [Driver.Open] opens with
// password in place of the one its reference names: the admin password the
// broker rotated. The plugin opens no AMQP connection, so the management
// API's password is the only one.
func (Driver) WithAdminPassword(c *Connection, password secret.Value) (*Connection, error) {
	return plugins.CopyWithAdminPassword(c, password, func(c *Connection) { c.adminPassword = password })
}

// RotateRoot sets the admin user's password to req.NewPassword through the
// management API: GET /api/users/{admin} for its tags, then PUT
// /api/users/{admin} with those tags and a salted SHA-256 hash of the new
// password (as Create does), so the plaintext never travels to the server
// and the user stays an administrator with its other tags. Permissions and
// limits are kept by RabbitMQ: PUT changes neither. RabbitMQ keeps one
// password per user, so the old one stops working at once; RotateRoot then
// checks the new one with GET /api/whoami; this plugin's own calls use
// it from then on, until the broker reopens the backend.
func (p *Plugin) RotateRoot(ctx context.Context, req plugins.RotateRootRequest) (plugins.RotateRootResponse, error) {
	if err := p.rotateRoot(ctx, req.NewPassword); err != nil {
		return plugins.RotateRootResponse{}, plugins.Sanitize(fmt.Errorf("rotate root: %w", err), req.NewPassword)
	}
	return plugins.RotateRootResponse{}, nil
}

func (p *Plugin) rotateRoot(ctx context.Context, newPassword secret.Value) error {
	if newPassword.IsZero() {
		return errors.New("the new password is empty")
	}
	c, cancel := p.client(ctx)
	defer cancel()
	name := c.Username
	user, err := c.GetUser(name)
	if err != nil {
		return fmt.Errorf("look up the admin user %q: %w", name, classify(err))
	}
	if !slices.Contains(user.Tags, administratorTag) {
		return fmt.Errorf("%w: the admin user %q is not tagged %s", plugins.ErrRotateRefused, name, administratorTag)
	}
	hash := passwordHash(newPassword.Reveal())
	_, err = done(c.PutUser(name, rabbithole.UserSettings{
		Name:             name,
		Tags:             slices.Clone(user.Tags),
		PasswordHash:     hash,
		HashingAlgorithm: rabbithole.HashingAlgorithmSHA256,
	}))
	if err != nil {
		return plugins.Sanitize(fmt.Errorf("put user %q: %w", name, classify(err)), secret.New(hash))
	}
	// The server has the new password: the old one no longer logs in.
	old := p.admin.Load()
	next := &admin{base: old.base, secrets: append(slices.Clone(old.secrets), newPassword)}
	next.base.Password = newPassword.Reveal()
	p.admin.Store(next)
	check := *c
	check.Password = newPassword.Reveal()
	if _, err := check.Whoami(); err != nil {
		return fmt.Errorf("the management API took the new password, but GET /api/whoami with it failed: %w", classify(err))
	}
	return nil
}

// AdminPassword returns the admin password the plugin logs in with: the
// connection's reference's, or the one the broker rotated.
func (p *Plugin) AdminPassword() secret.Value { return secret.New(p.admin.Load().base.Password) }
