package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"

	goredis "github.com/redis/go-redis/v9"

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
// broker rotated.
func (Driver) WithAdminPassword(c *Connection, password secret.Value) (*Connection, error) {
	return plugins.CopyWithAdminPassword(c, password, func(c *Connection) { c.adminPassword = password })
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
// added, and the old one keeps working. req.Retire, when the user has it, is
// taken away with the old one; other passwords the user has are left
// alone. Connections already open stay logged in.
//
// req.NewPassword may be the password the plugin logged in with: the
// broker's recovery asks for that after a rotation was abandoned. Then the
// password is added where a node lacks it, req.Retire (the password of
// before that rotation, which a broker that died after step 1 left beside
// the new one) is taken away, and ACL SAVE keeps it so, so that neither a
// restart of a node brings the old password back nor an old password stays
// valid.
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
	if err := p.rotateRoot(ctx, req.NewPassword, req.Retire); err != nil {
		// Redis quotes a rule it refuses, so the hashes are redacted too.
		redact := []secret.Value{req.NewPassword, secret.New(passwordHash(req.NewPassword)[1:]), secret.New(passwordHash(p.password)[1:])}
		if !req.Retire.IsZero() {
			redact = append(redact, req.Retire, secret.New(passwordHash(req.Retire)[1:]))
		}
		return plugins.RotateRootResponse{}, plugins.Sanitize(fmt.Errorf("rotate root: %w", err), redact...)
	}
	return plugins.RotateRootResponse{}, nil
}

func (p *Plugin) rotateRoot(ctx context.Context, newPassword, retire secret.Value) error {
	switch {
	case newPassword.IsZero():
		return fmt.Errorf("%w: the new password is empty", plugins.ErrRotateRefused)
	case p.username == "" || p.username == "default":
		return fmt.Errorf("%w: the admin is Redis's default user, whose password (requirepass) every client that "+
			"authenticates with a password alone shares: rotating it would lock them out. Create an ACL user for "+
			"the broker and set connection.username", plugins.ErrRotateRefused)
	case p.password.IsZero():
		return fmt.Errorf("%w: the admin user %q logs in without a password: there is none to rotate", plugins.ErrRotateRefused, p.username)
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
			return fmt.Errorf("%w: %s keeps its users in no ACL file, so a new password would be lost when it restarts "+
				"and the broker locked out: configure aclfile (ACL SAVE then keeps users there)", plugins.ErrRotateRefused, n.addr)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if newPassword.Reveal() == p.password.Reveal() {
		// Never add and then drop the same password: that would leave the
		// user with none.
		return p.reassertRoot(ctx, nodes, retire)
	}

	if retire.Reveal() == p.password.Reveal() {
		retire = secret.Value{} // dropped below as the old password
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
		rules, err := p.retireRule(ctx, n, retire, newPassword)
		if err != nil {
			return err
		}
		if err := n.client.ACLSetUser(ctx, p.username, append(rules, drop)...).Err(); err != nil {
			return fmt.Errorf("ACL SETUSER %s (remove the old password; the new one works): %w", p.username, err)
		}
		return saveACL(ctx, n.client)
	})
}

// reassertRoot makes every node what a finished rotation to the password
// the plugin logged in with leaves: the admin has it, retire is gone, and
// the ACL file says so.
func (p *Plugin) reassertRoot(ctx context.Context, nodes []node, retire secret.Value) error {
	return p.each(ctx, nodes, func(ctx context.Context, _ int, n node) error {
		rules, err := p.retireRule(ctx, n, retire, p.password)
		if err != nil {
			return err
		}
		// Adding a password the user has already changes nothing.
		if err := n.client.ACLSetUser(ctx, p.username, append([]string{passwordHash(p.password)}, rules...)...).Err(); err != nil {
			return fmt.Errorf("ACL SETUSER %s (keep the current password, drop an earlier one): %w", p.username, err)
		}
		return saveACL(ctx, n.client)
	})
}

// retireRule returns the rule that takes retire away from the admin on n,
// when the admin has it there and it is not keep; Redis refuses to remove
// a password the user does not have.
func (p *Plugin) retireRule(ctx context.Context, n node, retire, keep secret.Value) ([]string, error) {
	if retire.IsZero() || retire.Reveal() == keep.Reveal() {
		return nil, nil
	}
	v, err := n.client.Do(ctx, "acl", "getuser", p.username).Result()
	if err != nil {
		return nil, fmt.Errorf("ACL GETUSER %s: %w", p.username, err)
	}
	passwords, ok := aclField(v, "passwords")
	if !ok {
		return nil, fmt.Errorf("ACL GETUSER %s: the reply has no passwords list", p.username)
	}
	hash := passwordHash(retire)[1:]
	if !slices.Contains(passwords, hash) {
		return nil, nil
	}
	return []string{"!" + hash}, nil
}

// aclField returns the strings of field in an ACL GETUSER reply (a map in
// RESP3, a flat list of names and values in RESP2), and whether the reply
// has the field as a list.
func aclField(reply any, field string) ([]string, bool) {
	var v any
	switch r := reply.(type) {
	case map[any]any:
		v = r[field]
	case map[string]any:
		v = r[field]
	case []any:
		for i := 0; i+1 < len(r); i += 2 {
			if name, _ := r[i].(string); name == field {
				v = r[i+1]
			}
		}
	}
	list, ok := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out, ok
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

// AdminPassword returns the admin password the plugin logs in with: the
// connection's reference's, or the one the broker rotated.
func (p *Plugin) AdminPassword() secret.Value { return p.password }
