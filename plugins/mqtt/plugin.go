package mqtt

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// Plugin issues and removes the dynsec clients of one Mosquitto broker. It
// is safe for concurrent use; make one with [Driver.Open].
type Plugin struct {
	endpoint       endpoint
	username       string // the admin's
	password       secret.Value
	tlsConfig      *tls.Config // nil for plain text
	clientIDPrefix string

	dialing chan struct{} // holds a token while a connection is dialled

	mu     sync.Mutex
	conn   *conn // nil until the first call, and after it was lost
	closed bool
}

var (
	_ plugins.TypedPlugin[*Role] = (*Plugin)(nil)
	_ plugins.Warner             = (*Plugin)(nil)
	_ plugins.SecretHolder       = (*Plugin)(nil)
)

// undoTimeout bounds removing what a failed Create made, which runs even
// when the Create's context is done.
const undoTimeout = 30 * time.Second

// open connects with c, whose password is pw, and proves the admin can run
// dynsec commands.
func open(ctx context.Context, c *Connection, pw secret.Value) (*Plugin, error) {
	e, err := c.validate()
	if err != nil {
		return nil, err
	}
	p := &Plugin{
		endpoint:       e,
		username:       c.Username,
		password:       pw,
		clientIDPrefix: c.ClientIDPrefix,
		dialing:        make(chan struct{}, 1),
	}
	if p.clientIDPrefix == "" {
		p.clientIDPrefix = defaultClientIDPrefix
	}
	if e.tls {
		if p.tlsConfig, err = tlsConfig(c.TLS, e.host); err != nil {
			return nil, fmt.Errorf("open: tls: %w", err)
		}
	}
	if err := p.Check(ctx); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("open: %w", err)
	}
	return p, nil
}

func tlsConfig(t TLS, host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if t.CAFile == "" {
		return cfg, nil
	}
	pool, err := plugins.CAPool(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// Secrets returns the admin password. The decorator [plugins.Open] puts
// around the plugin redacts it from every error and warning.
func (p *Plugin) Secrets() []secret.Value { return []secret.Value{p.password} }

// state is what Create returns as the lease's State: the name of the
// client's own dynsec role.
type state struct {
	V    int    `json:"v"`
	Role string `json:"role"`
}

// stateVersion is the version of state this plugin writes and reads.
const stateVersion = 1

// guardPriority puts the denials of $CONTROL above every ACL a role may
// list (see [MaxPriority]).
const guardPriority = MaxPriority + 1

// guard are the ACLs every issued client's own role starts with: no
// publishing to $CONTROL (a holder could administer the broker), no
// subscribing there and no receiving from there (a holder could read the
// answers to every admin's commands). The receive denial closes the
// delivery side whatever the subscribe check lets through: that check does
// not see through a shared subscription ($share/<group>/$CONTROL/…, which
// a subscribePattern of # grants). The client's own role comes before
// every other role it has, so no existing role can undo them.
var guard = []aclJSON{
	{ACLType: PublishClientSend, Topic: controlLevel + "/#", Priority: guardPriority, Allow: false},
	{ACLType: SubscribePattern, Topic: controlLevel + "/#", Priority: guardPriority, Allow: false},
	{ACLType: PublishClientReceive, Topic: controlLevel + "/#", Priority: guardPriority, Allow: false},
}

// Create makes, all or nothing, a dynsec role named after the user with the
// guard ACLs and req.Spec's ACLs, then a client with the username and
// password whose roles are that role, first, and req.Spec's roles in their
// order. If making the client fails, the role is deleted again (and the
// client, when its fate is unknown). State names the role. req.ExpiresAt is
// unused: dynsec clients do not expire.
func (p *Plugin) Create(ctx context.Context, req plugins.CreateOf[*Role]) (plugins.CreateResponse, error) {
	st, err := p.create(ctx, req)
	if err != nil {
		return plugins.CreateResponse{}, fmt.Errorf("create client %q: %w", req.Username, err)
	}
	return plugins.CreateResponse{Credential: p.credential(req.Username, req.Password), State: st}, nil
}

func (p *Plugin) create(ctx context.Context, req plugins.CreateOf[*Role]) ([]byte, error) {
	if req.Spec == nil {
		return nil, errors.New("no role spec given")
	}
	if _, err := req.Spec.check(); err != nil {
		return nil, err
	}
	if err := checkUsername(req.Username); err != nil {
		return nil, err
	}
	if req.Password.IsZero() {
		return nil, errors.New("no password given")
	}
	role := req.Username // clients and roles are apart in dynsec
	st, err := json.Marshal(state{V: stateVersion, Role: role})
	if err != nil {
		return nil, err
	}

	acls := slices.Clone(guard)
	for _, a := range req.Spec.ACLs {
		acls = append(acls, aclJSON{ACLType: a.Type, Topic: a.Topic, Priority: a.Priority, Allow: a.Allow})
	}
	text := "credbroker: " + req.Role
	_, err = p.run1(ctx, command{Command: "createRole", Rolename: role, Textname: text, ACLs: acls})
	var ce *CommandError
	switch {
	case errors.As(err, &ce):
		return nil, err // nothing was made; "Role already exists" is not ours to undo
	case err != nil:
		return nil, p.undo(ctx, err, "", role)
	}

	// The client's own role comes first, then the existing roles in order.
	roles := []clientRole{{Rolename: role, Priority: len(req.Spec.Roles)}}
	for i, r := range req.Spec.Roles {
		roles = append(roles, clientRole{Rolename: r, Priority: len(req.Spec.Roles) - 1 - i})
	}
	_, err = p.run1(ctx, command{
		Command: "createClient", Username: req.Username, Password: req.Password.Reveal(),
		Textname: text, Textdescription: "issued by credbroker; deleted when its lease ends", Roles: roles,
	})
	switch {
	case errors.As(err, &ce):
		return nil, p.undo(ctx, err, "", role) // the client was not made
	case err != nil:
		return nil, p.undo(ctx, err, req.Username, role) // it may have been
	}
	return st, nil
}

// undo deletes what a failed Create may have made: client (if not empty)
// and role. It runs even when ctx is done. It returns cause, joined with
// the undo's own failure, after which the broker's Revoke retries.
func (p *Plugin) undo(ctx context.Context, cause error, client, role string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	if err := p.remove(ctx, client, role); err != nil {
		return errors.Join(cause, fmt.Errorf("and removing what it made failed, Revoke will retry: %w", err))
	}
	return cause
}

// remove deletes the client (if not empty), which disconnects its sessions,
// then the role (if not empty), in one round trip. What does not exist is
// success.
func (p *Plugin) remove(ctx context.Context, client, role string) error {
	var cmds []command
	if client != "" {
		cmds = append(cmds, command{Command: "deleteClient", Username: client})
	}
	if role != "" {
		cmds = append(cmds, command{Command: "deleteRole", Rolename: role})
	}
	rs, err := p.run(ctx, cmds...)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rs {
		if err := r.err(); err != nil && !isNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// credential is what a workload needs to log in as username.
func (p *Plugin) credential(username string, password secret.Value) plugins.Credential {
	scheme, tlsOn := "mqtt", "0"
	if p.endpoint.tls {
		scheme, tlsOn = "mqtts", "1"
	}
	u := url.URL{Scheme: scheme, User: url.UserPassword(username, password.Reveal()), Host: p.endpoint.addr()}
	uri := secret.New(u.String())
	return plugins.Credential{
		Username: username,
		Password: password,
		URI:      uri,
		Env: map[string]secret.Value{
			"MQTT_URL":      uri,
			"MQTT_HOST":     secret.New(p.endpoint.host),
			"MQTT_PORT":     secret.New(p.endpoint.port),
			"MQTT_TLS":      secret.New(tlsOn), // "1" over TLS, "0" in plain text
			"MQTT_USERNAME": secret.New(username),
			"MQTT_PASSWORD": password,
		},
		Fields: map[string]string{
			"host":     p.endpoint.host,
			"port":     p.endpoint.port,
			"username": username,
			"tls":      fmt.Sprint(p.endpoint.tls),
		},
	}
}

// Renew does nothing: dynsec clients do not expire, so the reaper alone
// removes them when their lease ends.
func (p *Plugin) Renew(context.Context, plugins.RenewOf[*Role]) (plugins.RenewResponse, error) {
	return plugins.RenewResponse{}, nil
}

// Revoke deletes the client, which disconnects every session it has open,
// then its own role, named by req.State or, without a State (an orphan
// the sweep found, a Create that failed), the username. What is already
// gone is success. A username or role without the managed prefix is
// refused with [ErrNotManaged].
func (p *Plugin) Revoke(ctx context.Context, req plugins.RevokeOf[*Role]) (plugins.RevokeResponse, error) {
	if err := p.revoke(ctx, req); err != nil {
		return plugins.RevokeResponse{}, fmt.Errorf("revoke client %q: %w", req.Username, err)
	}
	return plugins.RevokeResponse{}, nil
}

func (p *Plugin) revoke(ctx context.Context, req plugins.RevokeOf[*Role]) error {
	if err := checkManaged(req.Username); err != nil {
		return err
	}
	role := req.Username
	if req.State != nil {
		var st state
		if err := json.Unmarshal(req.State, &st); err != nil {
			return fmt.Errorf("the lease's state is not this plugin's: %w", err)
		}
		if st.V != stateVersion {
			return fmt.Errorf("the lease's state has version %d; this plugin reads version %d", st.V, stateVersion)
		}
		if err := checkManaged(st.Role); err != nil {
			return fmt.Errorf("the lease's state names role %q: %w", st.Role, err)
		}
		role = st.Role
	}
	return p.remove(ctx, req.Username, role)
}

// ListManaged returns the clients, and the roles without a client, whose
// names start with [plugins.ManagedPrefix], sorted. A role is left without
// its client only when a Create or a Revoke failed half-way; revoking its
// name removes it. dynsec does not record when a client was made, so
// CreatedAt is zero.
func (p *Plugin) ListManaged(ctx context.Context) ([]plugins.ManagedUser, error) {
	users, err := p.listManaged(ctx)
	if err != nil {
		return nil, fmt.Errorf("list managed clients: %w", err)
	}
	return users, nil
}

func (p *Plugin) listManaged(ctx context.Context) ([]plugins.ManagedUser, error) {
	rs, err := p.run(ctx,
		command{Command: "listClients", Verbose: ptr(false), Count: ptr(-1)},
		command{Command: "listRoles", Verbose: ptr(false), Count: ptr(-1)})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range rs {
		if err := r.err(); err != nil {
			return nil, err
		}
		var l listed
		if err := json.Unmarshal(r.Data, &l); err != nil {
			return nil, fmt.Errorf("dynsec %s: %w", r.Command, err)
		}
		for _, n := range slices.Concat(l.Clients, l.Roles) {
			if strings.HasPrefix(n, plugins.ManagedPrefix) {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	users := make([]plugins.ManagedUser, len(names))
	for i, n := range names {
		users[i] = plugins.ManagedUser{Username: n}
	}
	return users, nil
}

// CheckRole checks role against the broker: every existing dynsec role it
// names exists, and none lets a holder publish to a $CONTROL topic or
// subscribe to one by name. (The client's own role denies both before any
// other role is asked, so this is the second line, not the first.)
func (p *Plugin) CheckRole(ctx context.Context, role *Role) error {
	if role == nil {
		return errors.New("check role: no role spec given")
	}
	if _, err := role.check(); err != nil {
		return fmt.Errorf("check role: %w", err)
	}
	if len(role.Roles) == 0 {
		return nil
	}
	cmds := make([]command, len(role.Roles))
	for i, r := range role.Roles {
		cmds[i] = command{Command: "getRole", Rolename: r}
	}
	rs, err := p.run(ctx, cmds...)
	if err != nil {
		return fmt.Errorf("check role: %w", err)
	}
	var errs []error
	for i, r := range rs {
		name := role.Roles[i]
		if err := r.err(); err != nil {
			if isNotFound(err) {
				errs = append(errs, fmt.Errorf("roles[%d]: there is no dynsec role %q on the broker", i, name))
			} else {
				errs = append(errs, fmt.Errorf("roles[%d]: %q: %w", i, name, err))
			}
			continue
		}
		var d roleData
		if err := json.Unmarshal(r.Data, &d); err != nil {
			errs = append(errs, fmt.Errorf("roles[%d]: %q: dynsec getRole: %w", i, name, err))
			continue
		}
		for _, a := range d.Role.ACLs {
			if !a.Allow || !isControl(a.Topic) {
				continue
			}
			switch {
			case strings.EqualFold(a.ACLType, PublishClientSend):
				errs = append(errs, fmt.Errorf("roles[%d]: dynsec role %q allows publishClientSend %q: a holder could "+
					"administer the broker through $CONTROL", i, name, a.Topic))
			case strings.EqualFold(a.ACLType, SubscribeLiteral), strings.EqualFold(a.ACLType, SubscribePattern):
				errs = append(errs, fmt.Errorf("roles[%d]: dynsec role %q allows %s %q: a holder could read the "+
					"answers to every admin's commands", i, name, a.ACLType, a.Topic))
			}
		}
	}
	return errors.Join(errs...)
}

// Check runs one dynsec command (listClients, for one client), which
// proves the broker answers, the admin logs in and may administer dynsec.
func (p *Plugin) Check(ctx context.Context) error {
	if _, err := p.run1(ctx, command{Command: "listClients", Verbose: ptr(false), Count: ptr(1)}); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	return nil
}

// Warnings reports an admin connection in plain text to a broker off
// loopback, and default ACL access that lets every issued client publish or
// subscribe where its ACLs say nothing.
func (p *Plugin) Warnings(ctx context.Context) []string {
	var out []string
	if w := plainTextWarning(p.endpoint); w != "" {
		out = append(out, w)
	}
	data, err := p.run1(ctx, command{Command: "getDefaultACLAccess"})
	if err != nil {
		return append(out, fmt.Sprintf("could not read the broker's default ACL access: %v", err))
	}
	var d struct {
		ACLs []struct {
			ACLType string `json:"acltype"`
			Allow   bool   `json:"allow"`
		} `json:"acls"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return append(out, fmt.Sprintf("could not read the broker's default ACL access: %v", err))
	}
	for _, a := range d.ACLs {
		var what string
		switch {
		case !a.Allow:
			continue
		case strings.EqualFold(a.ACLType, PublishClientSend):
			what = "publish to"
		case strings.EqualFold(a.ACLType, "subscribe"):
			what = "subscribe to"
		default:
			continue
		}
		out = append(out, fmt.Sprintf("the broker's default ACL access allows %s: every issued client may %s "+
			"any topic its roles say nothing about (mosquitto_ctrl dynsec setDefaultACLAccess %s deny)",
			a.ACLType, what, a.ACLType))
	}
	return out
}

// plainTextWarning warns about an admin connection in plain text off
// loopback; "" when there is nothing to say.
func plainTextWarning(e endpoint) string {
	if e.tls || plugins.IsLoopback(e.host) {
		return ""
	}
	return fmt.Sprintf("the admin connection to %s is plain text: the admin's password and every issued "+
		"password cross the network readable; use ssl:// or mqtts://", e.addr())
}

// Close disconnects the admin connection. Calls after Close fail.
func (p *Plugin) Close() error {
	p.mu.Lock()
	c := p.conn
	p.conn, p.closed = nil, true
	p.mu.Unlock()
	if c != nil {
		c.close()
	}
	return nil
}

// usernameLimit is the longest username the plugin makes. dynsec has no
// limit of its own (MQTT strings hold up to 65535 bytes); 64 bytes leave
// room for a readable role name beside the prefix and the random suffix and
// keep the dynsec JSON, mosquitto_ctrl's listings and the broker's log
// legible. The username also names the client's own role.
const usernameLimit = 64

// checkUsername accepts the names [plugins.NewUsername] makes: the managed
// prefix, then letters, digits, '_', '-' and '.', at most usernameLimit
// bytes.
func checkUsername(name string) error {
	if err := checkManaged(name); err != nil {
		return err
	}
	if len(name) > usernameLimit {
		return fmt.Errorf("the username is %d bytes: credbroker makes dynsec clients of at most %d", len(name), usernameLimit)
	}
	if i := strings.IndexFunc(name, notIDChar); i >= 0 {
		r, _ := utf8.DecodeRuneInString(name[i:])
		return fmt.Errorf("the username holds %q: use letters, digits, '_', '-' and '.'", r)
	}
	return nil
}

// checkManaged refuses names credbroker did not make.
func checkManaged(name string) error {
	if !strings.HasPrefix(name, plugins.ManagedPrefix) {
		return ErrNotManaged
	}
	return nil
}
