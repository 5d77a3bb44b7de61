package redis

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

var (
	_ plugins.TypedAdminPassworder[*Connection] = Driver{}
	_ plugins.RootRotator                       = (*Plugin)(nil)
)

// WithAdminPassword returns a copy of c that [Driver.Open] opens with
// password in place of the one its reference names: the admin password the
// broker rotated.
func (Driver) WithAdminPassword(c *Connection, password secret.Value) (*Connection, error) {
	if c == nil {
		return nil, errors.New("open: no connection given")
	}
	if password.IsZero() {
		return nil, errors.New("open: the admin password is empty")
	}
	cp := *c
	cp.adminPassword = password
	return &cp, nil
}

// RotateRoot gives the admin's ACL user the password req.NewPassword and
// takes away the one the plugin logged in with, on every node:
//
//  1. ACL SETUSER <admin> #<SHA-256 of the new password> on every node (the
//     plaintext never reaches the server), so the user has both;
//  2. a login with the new password on a fresh connection to every node;
//  3. only then ACL SETUSER <admin> !<SHA-256 of the old password>, and
//     ACL SAVE.
//
// When step 1 or 2 fails, the new password is taken away again where it was
// added, and the old one keeps working. Other passwords the user has are
// left alone. Connections already open stay logged in.
//
// It refuses, changing nothing:
//   - the default user (connection.username unset or "default"): its
//     password is requirepass, which every client that AUTHs with a password
//     alone shares, so rotating it would lock all of them out. Give the
//     broker an ACL user of its own;
//   - an admin without a password (nopass): there is nothing to rotate;
//   - a node without an ACL file (aclfile): the new password would live in
//     memory only, and a restart would bring back the one in redis.conf,
//     which the broker no longer knows.
func (p *Plugin) RotateRoot(ctx context.Context, req plugins.RotateRootRequest) (plugins.RotateRootResponse, error) {
	if err := p.rotateRoot(ctx, req.NewPassword); err != nil {
		// Redis quotes a rule it refuses, so the hashes are redacted too.
		return plugins.RotateRootResponse{}, plugins.Sanitize(fmt.Errorf("rotate root: %w", err), req.NewPassword,
			secret.New(passwordHash(req.NewPassword)[1:]), secret.New(passwordHash(p.password)[1:]))
	}
	return plugins.RotateRootResponse{}, nil
}

func (p *Plugin) rotateRoot(ctx context.Context, newPassword secret.Value) error {
	switch {
	case newPassword.IsZero():
		return errors.New("the new password is empty")
	case p.username == "" || p.username == "default":
		return errors.New("the admin is Redis's default user, whose password (requirepass) every client that " +
			"authenticates with a password alone shares: rotating it would lock them out. Create an ACL user for " +
			"the broker and set connection.username")
	case p.password.IsZero():
		return fmt.Errorf("the admin user %q logs in without a password: there is none to rotate", p.username)
	case newPassword.Reveal() == p.password.Reveal():
		// The broker's recovery sets the current password again before it
		// rolls an abandoned rotation back. Here that is nothing to do: this
		// plugin logged in with it, and adding and then dropping the same
		// password would leave the user with none.
		return nil
	}
	nodes, err := p.nodes(ctx)
	if err != nil {
		return err
	}
	err = p.each(ctx, nodes, func(ctx context.Context, _ int, n node) error {
		file, err := n.client.ConfigGet(ctx, "aclfile").Result()
		if err != nil {
			return fmt.Errorf("CONFIG GET aclfile: %w", err)
		}
		if file["aclfile"] == "" {
			return fmt.Errorf("%s keeps its users in no ACL file, so a new password would be lost when it restarts "+
				"and the broker locked out: configure aclfile (ACL SAVE then keeps users there)", n.addr)
		}
		return nil
	})
	if err != nil {
		return err
	}

	add, drop := passwordHash(newPassword), "!"+passwordHash(p.password)[1:]
	added := make([]bool, len(nodes))
	err = p.each(ctx, nodes, func(ctx context.Context, i int, n node) error {
		if err := n.client.ACLSetUser(ctx, p.username, add).Err(); err != nil {
			return fmt.Errorf("ACL SETUSER %s (add the new password): %w", p.username, err)
		}
		added[i] = true
		return p.login(ctx, n.addr, newPassword)
	})
	if err != nil {
		undoCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		undo := "!" + add[1:]
		undoErr := p.each(undoCtx, nodes, func(ctx context.Context, i int, n node) error {
			if !added[i] {
				return nil
			}
			return n.client.ACLSetUser(ctx, p.username, undo).Err()
		})
		if undoErr != nil {
			err = errors.Join(err, fmt.Errorf("and taking the new password away again failed (it still works where it was added): %w", undoErr))
		}
		return err
	}
	return p.each(ctx, nodes, func(ctx context.Context, _ int, n node) error {
		if err := n.client.ACLSetUser(ctx, p.username, drop).Err(); err != nil {
			return fmt.Errorf("ACL SETUSER %s (remove the old password; the new one works): %w", p.username, err)
		}
		return saveACL(ctx, n.client)
	})
}

// login proves password logs the admin in at addr, on a connection of its
// own.
func (p *Plugin) login(ctx context.Context, addr string, password secret.Value) error {
	o := p.options(addr)
	o.Password = password.Reveal()
	o.PoolSize, o.MaxRetries, o.DialerRetries = 1, -1, 1
	c := goredis.NewClient(o)
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("log in with the new password: %w", err)
	}
	return nil
}
