package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

var (
	_ plugins.TypedAdminPassworder[*Connection] = Driver{}
	_ plugins.RootRotator                       = (*Plugin)(nil)
	_ plugins.AdminPassworded                   = (*Plugin)(nil)
)

// WithAdminPassword returns a copy of c that [Driver.Open] opens with
// password in place of the DSN's: the admin password the broker rotated.
func (Driver) WithAdminPassword(c *Connection, password secret.Value) (*Connection, error) {
	return plugins.CopyWithAdminPassword(c, password, func(c *Connection) { c.adminPassword = password })
}

// RotateRoot sets the admin's own password to req.NewPassword with ALTER
// ROLE SESSION_USER PASSWORD and the password's SCRAM-SHA-256 verifier, so
// the plaintext never travels to the server (nor into its log, should it
// log statements). SESSION_USER is the role that logged in, whatever SET
// ROLE or a SECURITY DEFINER function made CURRENT_USER. Sessions already
// open, this plugin's pool among them, stay logged in; new ones need the
// new password. No special privilege is needed: every role may set its own
// password.
func (p *Plugin) RotateRoot(ctx context.Context, req plugins.RotateRootRequest) (plugins.RotateRootResponse, error) {
	if req.NewPassword.IsZero() {
		return plugins.RotateRootResponse{}, errors.New("rotate root: the new password is empty")
	}
	verifier := SCRAMVerifier(req.NewPassword.Reveal())
	if _, err := p.pool.Exec(ctx, "ALTER ROLE SESSION_USER PASSWORD "+quoteLiteral(verifier)); err != nil {
		return plugins.RotateRootResponse{}, fmt.Errorf("rotate root: %w", classify(err))
	}
	return plugins.RotateRootResponse{}, nil
}

// AdminPassword returns the admin password the plugin logs in with: the
// connection's reference's, or the one the broker rotated.
func (p *Plugin) AdminPassword() secret.Value { return secret.New(p.base.ConnConfig.Password) }
