package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"

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
// USER on the account CURRENT_USER() names, written out: MariaDB (10.11 at
// least) accepts ALTER USER CURRENT_USER() … IDENTIFIED BY and silently
// changes nothing. On MariaDB the statement carries the
// mysql_native_password hash (IDENTIFIED BY PASSWORD), so the plaintext
// never reaches the server; on MySQL it carries the password
// (IDENTIFIED BY), which the account's authentication plugin hashes and the
// server rewrites out of its logs, since MySQL 8.4 has mysql_native_password
// off by default. The admin has CREATE USER, which ALTER USER needs.
// Sessions already open, this plugin's pool among them, stay logged in.
// Before it returns, RotateRoot logs in with the new password on a fresh
// connection: a server that took the statement without changing the
// password is an error, not a rotation that locks the broker out later.
func (p *Plugin) RotateRoot(ctx context.Context, req plugins.RotateRootRequest) (plugins.RotateRootResponse, error) {
	pw := req.NewPassword
	if pw.IsZero() {
		return plugins.RotateRootResponse{}, errors.New("rotate root: the new password is empty")
	}
	if strings.ContainsAny(pw.Reveal(), "'\\\x00") {
		// Never so for plugins.NewPassword; the literal below relies on it.
		return plugins.RotateRootResponse{}, errors.New("rotate root: the new password holds a quote, backslash or NUL")
	}
	var current string
	if err := p.db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&current); err != nil {
		return plugins.RotateRootResponse{}, fmt.Errorf("rotate root: find the admin's account: %w", classify(err))
	}
	at := strings.LastIndexByte(current, '@')
	if at < 0 {
		return plugins.RotateRootResponse{}, fmt.Errorf("rotate root: CURRENT_USER() is %q, not user@host", current)
	}
	// The hash is redacted from errors as well as the password.
	hash := secret.New(NativePasswordHash(pw.Reveal()))
	auth := "IDENTIFIED BY " + quoteString(pw.Reveal())
	if p.mariaDB {
		auth = "IDENTIFIED BY PASSWORD " + quoteString(hash.Reveal())
	}
	if _, err := p.db.ExecContext(ctx, "ALTER USER "+account(current[:at], current[at+1:])+" "+auth); err != nil {
		return plugins.RotateRootResponse{}, plugins.Sanitize(fmt.Errorf("rotate root: ALTER USER %s: %w", current, classify(err)), pw, hash)
	}
	if err := p.loginWith(ctx, pw); err != nil {
		return plugins.RotateRootResponse{}, plugins.Sanitize(fmt.Errorf("rotate root: ALTER USER %s succeeded, "+
			"but logging in with the new password failed: %w", current, err), pw, hash)
	}
	return plugins.RotateRootResponse{}, nil
}

// loginWith connects once as the admin with password, on a connection of
// its own.
func (p *Plugin) loginWith(ctx context.Context, password secret.Value) error {
	cfg := p.cfg.Clone()
	cfg.Passwd = password.Reveal()
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	return db.PingContext(ctx)
}

// AdminPassword returns the admin password the plugin logs in with: the
// connection's reference's, or the one the broker rotated.
func (p *Plugin) AdminPassword() secret.Value { return secret.New(p.cfg.Passwd) }
