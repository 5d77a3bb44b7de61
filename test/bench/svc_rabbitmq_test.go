package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	rabbithole "github.com/michaelklishin/rabbit-hole/v2"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
)

// The RabbitMQ raw baseline makes, with rabbit-hole v2 on a transport like
// the plugin's (http.DefaultTransport's clone; rabbit-hole closes the
// connection after every request), the management API calls of
// plugins/rabbitmq Plugin.Create and Plugin.Revoke:
//
//	issue:  GET /api/users/<name> (404 expected)
//	        PUT /api/users/<name> {password_hash: base64(salt ‖ sha256(salt ‖ pw)), tags: credbroker}
//	        PUT /api/permissions/<vhost>/<name>
//	        PUT /api/topic-permissions/<vhost>/<name>
//	revoke: GET /api/users/<name> (tag check), DELETE /api/users/<name>,
//	        GET /api/connections/username/<name> (or GET /api/connections on a
//	        server without it), DELETE /api/connections/<each>
type rawRabbit struct {
	base      rabbithole.Client
	transport *http.Transport
	prefix    string
	vhost     string
	perm      rabbithole.Permissions
	topic     rabbithole.TopicPermissions
}

// rabbitMarker is the tag the plugin gives every user it makes.
const rabbitMarker = "credbroker"

// rabbitCtxTransport binds every request to ctx, as the plugin's
// ctxTransport does: rabbit-hole's methods take no context.
type rabbitCtxTransport struct {
	ctx  context.Context
	base http.RoundTripper
}

func (t rabbitCtxTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.base.RoundTrip(req.WithContext(t.ctx))
}

// client is a copy of the base client bound to ctx (Plugin.client).
func (r *rawRabbit) client(ctx context.Context) *rabbithole.Client {
	c := r.base
	c.SetTransport(rabbitCtxTransport{ctx: ctx, base: r.transport})
	return &c
}

// rabbitDone is the plugin's done: the call's error, then a 2xx status; the
// body is drained and closed.
func rabbitDone(res *http.Response, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return res.StatusCode, fmt.Errorf("unexpected answer: %s", res.Status)
	}
	return res.StatusCode, nil
}

func rabbitGone(res *http.Response, err error) error {
	status, err := rabbitDone(res, err)
	if status == http.StatusNotFound {
		return nil
	}
	return err
}

func rabbitNotFound(err error) bool {
	var apiErr rabbithole.ErrorResponse
	return errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusNotFound
}

// rabbitHash is plugins/rabbitmq passwordHash: rabbit_password_hashing_sha256
// with a fresh 4-byte salt.
func rabbitHash(password string) string {
	salt := make([]byte, 4)
	_, _ = rand.Read(salt)
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(password))
	return base64.StdEncoding.EncodeToString(append(salt, h.Sum(nil)...))
}

func (r *rawRabbit) issue(ctx context.Context) (leaseRef, error) {
	username := r.prefix + randText(10)
	password := plugins.NewPassword()
	c := r.client(ctx)
	switch _, err := c.GetUser(username); {
	case err == nil:
		return leaseRef{}, fmt.Errorf("user %s exists", username)
	case !rabbitNotFound(err):
		return leaseRef{}, fmt.Errorf("look up the user: %w", err)
	}
	status, err := rabbitDone(c.PutUser(username, rabbithole.UserSettings{
		Name:             username,
		Tags:             rabbithole.UserTags{rabbitMarker},
		PasswordHash:     rabbitHash(password.Reveal()),
		HashingAlgorithm: rabbithole.HashingAlgorithmSHA256,
	}))
	if err == nil && status != http.StatusCreated {
		err = fmt.Errorf("PUT user: status %d, want 201", status)
	}
	if err == nil {
		_, err = rabbitDone(c.UpdatePermissionsIn(r.vhost, username, r.perm))
	}
	if err == nil {
		_, err = rabbitDone(c.UpdateTopicPermissionsIn(r.vhost, username, r.topic))
	}
	if err != nil {
		return leaseRef{}, fmt.Errorf("raw issue %s: %w", username, err)
	}
	return leaseRef{username: username}, nil
}

func (r *rawRabbit) revoke(ctx context.Context, l leaseRef) error {
	c := r.client(ctx)
	u, err := c.GetUser(l.username)
	switch {
	case rabbitNotFound(err):
	case err != nil:
		return fmt.Errorf("look up the user: %w", err)
	case !slices.Contains(u.Tags, rabbitMarker):
		return fmt.Errorf("user %s is not tagged %s", l.username, rabbitMarker)
	default:
		if err := rabbitGone(c.DeleteUser(l.username)); err != nil {
			return fmt.Errorf("delete the user: %w", err)
		}
	}
	names, err := r.trackedConnections(ctx, l.username)
	if errors.Is(err, errNoConnectionsByUser) {
		var all []rabbithole.ConnectionInfo
		if all, err = c.ListConnections(); err == nil {
			names = rabbitUserConnections(all, l.username)
		}
	}
	if err != nil {
		return fmt.Errorf("list connections: %w", err)
	}
	for _, name := range names {
		if err := rabbitGone(c.CloseConnection(name)); err != nil {
			return fmt.Errorf("close connection %q: %w", name, err)
		}
	}
	return nil
}

var errNoConnectionsByUser = errors.New("no GET /api/connections/username/{name}")

// trackedConnections is the plugin's: GET
// /api/connections/username/{name}?columns=name,user, which rabbit-hole does
// not wrap, with Close set as rabbit-hole sets it.
func (r *rawRabbit) trackedConnections(ctx context.Context, username string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		r.base.Endpoint+"/api/connections/username/"+url.PathEscape(username)+"?columns=name,user", nil)
	if err != nil {
		return nil, err
	}
	req.Close = true
	req.SetBasicAuth(r.base.Username, r.base.Password)
	res, err := (&http.Client{Transport: r.transport}).Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
		return nil, errNoConnectionsByUser
	default:
		return nil, fmt.Errorf("GET connections of %s: %s", username, res.Status)
	}
	var conns []rabbithole.ConnectionInfo
	if err := json.NewDecoder(res.Body).Decode(&conns); err != nil {
		return nil, err
	}
	return rabbitUserConnections(conns, username), nil
}

func rabbitUserConnections(conns []rabbithole.ConnectionInfo, username string) []string {
	var names []string
	for _, c := range conns {
		if c.User == username {
			names = append(names, c.Name)
		}
	}
	return names
}

func (r *rawRabbit) side() sideOps {
	return sideOps{issue: r.issue, revoke: r.revoke}
}

// rabbitUsers returns this run's users on the node (either side's).
func rabbitUsers(c *rabbithole.Client) ([]string, error) {
	all, err := c.ListUsers()
	if err != nil {
		return nil, err
	}
	var mine []string
	for _, u := range all {
		if strings.HasPrefix(u.Name, userPrefix) {
			mine = append(mine, u.Name)
		}
	}
	return mine, nil
}

func benchRabbitMQ(b *testing.B, rep *report) {
	const scn = "rabbitmq"
	defer noteEnd(b, rep, scn)
	mgmtRaw := plugintest.DefaultRabbitMQManagementURL
	if v := os.Getenv(plugintest.RabbitMQManagementURLEnv); v != "" {
		mgmtRaw = v
	}
	amqpRaw := plugintest.DefaultRabbitMQURL
	if v := os.Getenv(plugintest.RabbitMQURLEnv); v != "" {
		amqpRaw = v
	}
	mgmt, err := url.Parse(strings.TrimRight(mgmtRaw, "/"))
	if err != nil || mgmt.User == nil {
		b.Fatalf("rabbitmq: %s does not parse or holds no administrator credentials", plugintest.RabbitMQManagementURLEnv)
	}
	amqpURL, err := url.Parse(amqpRaw)
	if err != nil {
		b.Fatalf("rabbitmq: %s does not parse", plugintest.RabbitMQURLEnv)
	}
	user := mgmt.User.Username()
	pass, _ := mgmt.User.Password()
	mgmt.User = nil
	endpoint := mgmt.String()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	base, err := rabbithole.NewTLSClient(endpoint, user, pass, transport)
	if err != nil {
		b.Fatalf("rabbitmq: %v", plugins.Sanitize(err))
	}
	b.Cleanup(transport.CloseIdleConnections)
	needService(b, rep, scn, mgmtRaw, func(ctx context.Context) error {
		c := *base
		c.SetTransport(rabbitCtxTransport{ctx: ctx, base: transport})
		who, err := c.Whoami()
		if err == nil && !slices.Contains(who.Tags, "administrator") {
			err = fmt.Errorf("user %s is not tagged administrator", who.Name)
		}
		return err
	})
	admin := func() (*rabbithole.Client, context.CancelFunc) {
		ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
		c := *base
		c.SetTransport(rabbitCtxTransport{ctx: ctx, base: transport})
		return &c, cancel
	}

	// Registered first, so it runs last, after the broker has stopped: every
	// user of this run that is left.
	b.Cleanup(func() {
		c, cancel := admin()
		defer cancel()
		left, err := rabbitUsers(c)
		if err != nil {
			b.Errorf("rabbitmq cleanup: list users: %v", plugins.Sanitize(err))
			return
		}
		for _, name := range left {
			if err := rabbitGone(c.DeleteUser(name)); err != nil {
				b.Errorf("rabbitmq cleanup: delete user %s: %v", name, plugins.Sanitize(err))
			}
		}
		if len(left) > 0 {
			b.Logf("rabbitmq cleanup: deleted %d users this run left behind", len(left))
		}
	})
	// The scenario's own vhost, deleted (with everything in it) at the end.
	vhost := "cbbench-" + runID + "-mq"
	{
		c, cancel := admin()
		_, err := rabbitDone(c.PutVhost(vhost, rabbithole.VhostSettings{Description: "credbroker bench " + runID}))
		cancel()
		if err != nil {
			b.Fatalf("rabbitmq: create vhost %s: %v", vhost, plugins.Sanitize(err))
		}
	}
	b.Cleanup(func() {
		c, cancel := admin()
		defer cancel()
		if err := rabbitGone(c.DeleteVhost(vhost)); err != nil {
			b.Errorf("rabbitmq cleanup: delete vhost %s: %v", vhost, plugins.Sanitize(err))
		}
	})

	var version, revokeVia string
	{
		c, cancel := admin()
		if ov, err := c.Overview(); err == nil {
			version = ov.RabbitMQVersion
		}
		cancel()
		probe := &rawRabbit{base: *base, transport: transport}
		ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
		_, err := probe.trackedConnections(ctx, userPrefix+"probe")
		cancel()
		switch {
		case err == nil:
			revokeVia = "GET /api/connections/username/<name>"
		case errors.Is(err, errNoConnectionsByUser):
			revokeVia = "GET /api/connections (no listing by user on this server)"
		default:
			b.Fatalf("rabbitmq: list connections by user: %v", plugins.Sanitize(err))
		}
	}

	const re = `^cbbench\.`
	perm := rabbithole.Permissions{Configure: re, Write: re, Read: re}
	topic := rabbithole.TopicPermissions{Exchange: "amq.topic", Write: re, Read: re}
	amqpTarget := amqpURL.Scheme + "://" + amqpURL.Host
	broker := startSvcBroker(b, svcBroker{
		plugin: "rabbitmq",
		role:   svcRole("mq"),
		connection: fmt.Sprintf("management_url: %q\nusername: %q\npassword: env:CB_BENCH_RABBITMQ_PASSWORD\namqp_url: %q",
			endpoint, user, amqpTarget),
		section: fmt.Sprintf("vhosts:\n  %q: {configure: '%s', write: '%s', read: '%s'}\n"+
			"topic_permissions:\n  - {vhost: %q, exchange: %s, write: '%s', read: '%s'}",
			vhost, re, re, re, vhost, topic.Exchange, re, re),
		env: []string{"CB_BENCH_RABBITMQ_PASSWORD=" + pass},
	})
	raw := &rawRabbit{base: *base, transport: transport, prefix: svcRawPrefix(), vhost: vhost, perm: perm, topic: topic}

	rep.svcInfo(scn, fmt.Sprintf("RabbitMQ %s, management API at %s; vhost %s (configure/write/read %s), topic permissions on amq.topic; revoke lists connections with %s",
		version, endpoint, vhost, re, revokeVia))
	count := func(tb testing.TB) int {
		tb.Helper()
		c, cancel := admin()
		defer cancel()
		users, err := rabbitUsers(c)
		if err != nil {
			tb.Fatalf("rabbitmq: list users: %v", plugins.Sanitize(err))
		}
		return len(users)
	}
	benchService(b, rep, scn, *flagRabbitOps, broker, raw.side(), count)
}
