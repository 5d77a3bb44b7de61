package rabbitmq

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	rabbithole "github.com/michaelklishin/rabbit-hole/v2"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// Plugin issues and removes users of one RabbitMQ cluster through its
// management HTTP API. It is safe for concurrent use; make one with
// [Driver.Open].
type Plugin struct {
	// admin is the management API client, copied for each call with a
	// transport bound to its context, and the admin's passwords: the one it
	// logs in with, and those it had before RotateRoot changed it, for
	// Secrets. RotateRoot replaces it.
	admin     atomic.Pointer[admin]
	transport *http.Transport
	target    target
	mgmtURL   string // Connection.ManagementURL, without credentials
}

// admin is what Plugin.admin points at.
type admin struct {
	base    rabbithole.Client
	secrets []secret.Value
}

var (
	_ plugins.TypedPlugin[*Role] = (*Plugin)(nil)
	_ plugins.Warner             = (*Plugin)(nil)
	_ plugins.SecretHolder       = (*Plugin)(nil)
)

const (
	// callTimeout bounds each method's requests to the management API, in
	// addition to the caller's context.
	callTimeout = 30 * time.Second
	// undoTimeout bounds deleting a half-made user, which runs even when the
	// caller's context has ended.
	undoTimeout = 30 * time.Second
	// administratorTag is the tag the admin needs to manage users.
	administratorTag = "administrator"
	// maxIdleConns is how many idle connections to the management API the
	// plugin keeps for reuse. net/http keeps 2 by default, so at the
	// broker's concurrency most requests would open a connection anew.
	maxIdleConns = 32
	// idleConnTimeout closes a connection idle this long, before the
	// management API's HTTP server (cowboy: a minute or more unless
	// configured otherwise) or a proxy in front of it does, so a request is
	// seldom sent on a connection the server is closing.
	idleConnTimeout = 30 * time.Second
)

// open resolves c's password and opens the plugin with it.
func open(ctx context.Context, c *Connection) (*Plugin, error) {
	if !c.adminPassword.IsZero() {
		return openWith(ctx, c, c.adminPassword)
	}
	password, err := c.Password.Resolve()
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	return openWith(ctx, c, password)
}

// openWith builds the HTTP transport and checks the admin, who logs in with
// password. Its errors are sanitized here, with the admin's password: the
// decorator of plugins.Open has no plugin to ask for it yet.
func openWith(ctx context.Context, c *Connection, password secret.Value) (*Plugin, error) {
	tgt, err := parseAMQPURL(c.AMQPURL)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	transport, err := newTransport(c.TLS)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	base, err := rabbithole.NewTLSClient(c.ManagementURL, c.Username, password.Reveal(), transport)
	if err != nil {
		return nil, plugins.Sanitize(fmt.Errorf("open: management_url: %w", urlError(err)), password)
	}
	p := &Plugin{transport: transport, target: tgt, mgmtURL: c.ManagementURL}
	p.admin.Store(&admin{base: *base, secrets: []secret.Value{password}})
	if err := p.Check(ctx); err != nil {
		transport.CloseIdleConnections()
		return nil, plugins.Sanitize(fmt.Errorf("open: %w", err), password)
	}
	return p, nil
}

// newTransport returns the HTTP transport of the management API: the
// defaults of net/http but for more and shorter-lived idle connections,
// TLS 1.2 or later, and cfg's roots and server name.
func newTransport(cfg *TLS) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = maxIdleConns
	t.IdleConnTimeout = idleConnTimeout
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg == nil {
		return t, nil
	}
	t.TLSClientConfig.ServerName = cfg.ServerName
	if cfg.CAFile != "" {
		roots, err := plugins.CAPool(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		t.TLSClientConfig.RootCAs = roots
	}
	return t, nil
}

// client returns a management API client whose requests end with ctx or
// after callTimeout; call the returned function when done with it.
// rabbit-hole's methods take no context, hence a client per call.
func (p *Plugin) client(ctx context.Context) (*rabbithole.Client, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	c := p.admin.Load().base
	c.SetTransport(ctxTransport{ctx: ctx, base: p.transport})
	return &c, cancel
}

// Secrets returns the admin's password, which the decorator of
// [plugins.Open] redacts from every error and warning.
func (p *Plugin) Secrets() []secret.Value { return slices.Clone(p.admin.Load().secrets) }

// Create makes the user through the management API: PUT /api/users with a
// salted SHA-256 hash of the password (rabbit_password_hashing_sha256), so
// the plaintext never travels to the server, tagged with the role's tags and
// credbroker; then its permissions in each of the role's vhosts and its topic
// permissions. If a step fails, Create deletes the user before returning the
// error. It refuses a username that already exists, which PUT would
// otherwise take over. RabbitMQ has no user expiry: req.ExpiresAt is not
// used, and the broker's reaper alone removes expired users. req.Spec is
// checked again (a Role can be built by hand). The State is nil: Revoke
// needs nothing but the username.
func (p *Plugin) Create(ctx context.Context, req plugins.CreateOf[*Role]) (plugins.CreateResponse, error) {
	role, err := checked(req.Spec)
	if err == nil {
		err = checkUsername(req.Username)
	}
	if err == nil {
		err = checkPassword(req.Password)
	}
	if err == nil {
		err = p.create(ctx, req.Username, req.Password, role)
	}
	if err != nil {
		return plugins.CreateResponse{}, fmt.Errorf("create user %q: %w", req.Username, err)
	}
	return plugins.CreateResponse{Credential: p.credential(req.Username, req.Password, role.sortedVhosts()[0])}, nil
}

func (p *Plugin) create(ctx context.Context, username string, password secret.Value, role *Role) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, cancel := p.client(ctx)
	defer cancel()
	switch _, err := c.GetUser(username); {
	case err == nil:
		return errors.New("a user of that name already exists")
	case !isNotFound(err):
		return fmt.Errorf("look up the user: %w", classify(err))
	}
	status, err := done(c.PutUser(username, rabbithole.UserSettings{
		Name:             username,
		Tags:             role.userTags(),
		PasswordHash:     passwordHash(password.Reveal()),
		HashingAlgorithm: rabbithole.HashingAlgorithmSHA256,
	}))
	if err == nil && status != http.StatusCreated {
		// 204: the user appeared since the look-up and PUT updated it. It is
		// not this call's to delete.
		return errors.New("a user of that name was created at the same time")
	}
	if err != nil {
		err = fmt.Errorf("put user: %w", err)
	} else {
		err = grant(c, username, role)
	}
	if err != nil {
		return p.undo(ctx, username, err)
	}
	return nil
}

// grant sets the user's permissions in each vhost, then its topic
// permissions.
func grant(c *rabbithole.Client, username string, role *Role) error {
	for _, vhost := range role.sortedVhosts() {
		perm := role.Vhosts[vhost]
		_, err := done(c.UpdatePermissionsIn(vhost, username, rabbithole.Permissions{
			Configure: perm.Configure, Write: perm.Write, Read: perm.Read,
		}))
		if err != nil {
			return fmt.Errorf("set permissions in vhost %q: %w", vhost, err)
		}
	}
	for _, tp := range role.TopicPermissions {
		_, err := done(c.UpdateTopicPermissionsIn(tp.Vhost, username, rabbithole.TopicPermissions{
			Exchange: tp.Exchange, Write: tp.Write, Read: tp.Read,
		}))
		if err != nil {
			return fmt.Errorf("set topic permissions on exchange %q in vhost %q: %w", tp.Exchange, tp.Vhost, err)
		}
	}
	return nil
}

// undo deletes the half-made user after cause, even when ctx has ended, and
// returns cause (with the deletion's error, if that failed too).
func (p *Plugin) undo(ctx context.Context, username string, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	c, cancelClient := p.client(ctx)
	defer cancelClient()
	if err := gone(c.DeleteUser(username)); err != nil {
		return fmt.Errorf("%w; deleting the half-made user failed too: %w", cause, err)
	}
	return cause
}

// gone is done for a DELETE, where 404 (already gone) is success too.
func gone(res *http.Response, err error) error {
	status, err := done(res, err)
	if status == http.StatusNotFound {
		return nil
	}
	return err
}

func checkUsername(name string) error {
	switch {
	case name == "":
		return errors.New("no username given")
	case len(name) > usernameLimit:
		return fmt.Errorf("the username is %d bytes: the limit is %d", len(name), usernameLimit)
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("the username holds a control character")
	}
	return nil
}

func checkPassword(pw secret.Value) error {
	if pw.IsZero() {
		return errors.New("no password given")
	}
	return nil
}

// credential is what a workload needs to log in as username in vhost.
func (p *Plugin) credential(username string, password secret.Value, vhost string) plugins.Credential {
	t := p.target
	uri := t.scheme + "://" + url.UserPassword(username, password.Reveal()).String() + "@" +
		t.hostPort() + "/" + url.PathEscape(vhost)
	return plugins.Credential{
		Username: username,
		Password: password,
		URI:      secret.New(uri),
		Env: map[string]secret.Value{
			"AMQP_URL":          secret.New(uri),
			"RABBITMQ_USERNAME": secret.New(username),
			"RABBITMQ_PASSWORD": password,
			"RABBITMQ_VHOST":    secret.New(vhost),
		},
		Fields: map[string]string{
			"host":     t.host,
			"port":     t.port,
			"vhost":    vhost,
			"username": username,
		},
	}
}

// Renew checks that the user still exists and changes nothing: RabbitMQ has
// no user expiry, so the broker's reaper is the only thing that ends a
// RabbitMQ lease. A user that does not exist is an error saying so. The
// state is kept.
func (p *Plugin) Renew(ctx context.Context, req plugins.RenewOf[*Role]) (plugins.RenewResponse, error) {
	c, cancel := p.client(ctx)
	defer cancel()
	_, err := c.GetUser(req.Username)
	switch {
	case isNotFound(err):
		return plugins.RenewResponse{}, fmt.Errorf("renew user %q: the user does not exist", req.Username)
	case err != nil:
		return plugins.RenewResponse{}, fmt.Errorf("renew user %q: %w", req.Username, classify(err))
	}
	return plugins.RenewResponse{}, nil
}

// ListManaged returns the users tagged credbroker: every user this plugin
// created that still exists, sorted by name. RabbitMQ does not record when a
// user was made, so CreatedAt is zero.
func (p *Plugin) ListManaged(ctx context.Context) ([]plugins.ManagedUser, error) {
	c, cancel := p.client(ctx)
	defer cancel()
	users, err := c.ListUsers()
	if err != nil {
		return nil, fmt.Errorf("list users: %w", classify(err))
	}
	var managed []plugins.ManagedUser
	for _, u := range users {
		if slices.Contains(u.Tags, markerTag) {
			managed = append(managed, plugins.ManagedUser{Username: u.Name})
		}
	}
	slices.SortFunc(managed, func(a, b plugins.ManagedUser) int { return cmp.Compare(a.Username, b.Username) })
	return managed, nil
}

// Check reports whether the management API answers GET /api/whoami with the
// admin's credentials and the admin is tagged administrator, which managing
// users needs.
func (p *Plugin) Check(ctx context.Context) error {
	c, cancel := p.client(ctx)
	defer cancel()
	who, err := c.Whoami()
	if err != nil {
		return fmt.Errorf("check: %w", classify(err))
	}
	if !slices.Contains(who.Tags, administratorTag) {
		return fmt.Errorf("check: admin user %q is not tagged %s: it cannot create users", who.Name, administratorTag)
	}
	return nil
}

// CheckRole reports whether every vhost the role names exists; an error names
// the missing ones. The broker calls it for every role at start.
func (p *Plugin) CheckRole(ctx context.Context, role *Role) error {
	r, err := checked(role)
	if err != nil {
		return fmt.Errorf("check role: %w", err)
	}
	c, cancel := p.client(ctx)
	defer cancel()
	var missing []string
	for _, vhost := range r.sortedVhosts() {
		_, err := c.GetVhost(vhost)
		switch {
		case isNotFound(err):
			missing = append(missing, fmt.Sprintf("%q", vhost))
		case err != nil:
			return fmt.Errorf("check role: look up vhost %q: %w", vhost, classify(err))
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("check role: vhost %s does not exist", missing[0])
	default:
		return fmt.Errorf("check role: vhosts %s do not exist", strings.Join(missing, ", "))
	}
}

// Warnings reports a management_url in plain text (http://) to a host off
// loopback: the admin's password, in every request's basic auth, and the
// password hash of every user it creates cross the network readable.
func (p *Plugin) Warnings(context.Context) []string {
	u, err := url.Parse(p.mgmtURL)
	if err != nil || u.Scheme != "http" || plugins.IsLoopback(u.Hostname()) {
		return nil
	}
	return []string{fmt.Sprintf("management_url %s is plain http off loopback: the admin's password and every "+
		"user it creates cross the network readable; use https:// (the management plugin's TLS listener)", u.Redacted())}
}

// Close releases idle connections to the management API. It is safe to call
// more than once.
func (p *Plugin) Close() error {
	p.transport.CloseIdleConnections()
	return nil
}
