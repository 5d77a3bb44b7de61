package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
)

// Admin commands the tests need beyond the contract: to make existing roles
// and to see what is on the broker.

// CreateDynsecRole makes a dynsec role with acls.
func (p *Plugin) CreateDynsecRole(ctx context.Context, name string, acls ...ACL) error {
	cmd := command{Command: "createRole", Rolename: name}
	for _, a := range acls {
		cmd.ACLs = append(cmd.ACLs, aclJSON{ACLType: a.Type, Topic: a.Topic, Priority: a.Priority, Allow: a.Allow})
	}
	_, err := p.run1(ctx, cmd)
	return err
}

// DeleteDynsecRole deletes a dynsec role; a missing one is success.
func (p *Plugin) DeleteDynsecRole(ctx context.Context, name string) error {
	if _, err := p.run1(ctx, command{Command: "deleteRole", Rolename: name}); err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

// RemoveRoleACL removes one ACL from a dynsec role.
func (p *Plugin) RemoveRoleACL(ctx context.Context, role, aclType, topic string) error {
	_, err := p.run1(ctx, command{Command: "removeRoleACL", Rolename: role, ACLType: aclType, Topic: topic})
	return err
}

// DynsecExists reports whether the broker has the client (kind "Client")
// or the role (kind "Role") name.
func (p *Plugin) DynsecExists(ctx context.Context, kind, name string) (bool, error) {
	cmd := command{Command: "get" + kind}
	switch kind {
	case "Client":
		cmd.Username = name
	case "Role":
		cmd.Rolename = name
	default:
		return false, fmt.Errorf("DynsecExists: kind %q", kind)
	}
	_, err := p.run1(ctx, cmd)
	switch {
	case isNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// ClientRoles returns the roles of a client, in the order dynsec checks
// them, and their priorities.
func (p *Plugin) ClientRoles(ctx context.Context, username string) ([]string, []int, error) {
	data, err := p.run1(ctx, command{Command: "getClient", Username: username})
	if err != nil {
		return nil, nil, err
	}
	var d struct {
		Client struct {
			Roles []clientRole `json:"roles"`
		} `json:"client"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, nil, err
	}
	var names []string
	var prios []int
	for _, r := range d.Client.Roles {
		names = append(names, r.Rolename)
		prios = append(prios, r.Priority)
	}
	return names, prios, nil
}

// PlainTextWarning exposes plainTextWarning for a URL.
func PlainTextWarning(rawURL string) (string, error) {
	e, err := parseURL(rawURL)
	if err != nil {
		return "", err
	}
	return plainTextWarning(e), nil
}

// AdminConn returns the admin connection's client id and a channel closed
// when the connection is lost.
func (p *Plugin) AdminConn() (clientID string, lost <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return "", nil
	}
	r := p.conn.client.OptionsReader()
	return r.ClientID(), p.conn.lost
}
