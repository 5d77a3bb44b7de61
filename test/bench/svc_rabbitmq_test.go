package bench

import (
	"bytes"
	"context"
	"encoding/json"
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

// The RabbitMQ raw baseline is the least an operator would send to the
// management API for the same user, with net/http over kept-alive
// connections (as many idle ones as the broker's workers), as a script with
// one HTTP session would:
//
//	issue:  PUT /api/users/<name> {"password": "<password>", "tags": ""}
//	        PUT /api/permissions/<vhost>/<name> {"configure", "write", "read"}
//	revoke: DELETE /api/users/<name>
//
// The node hashes the password itself. The broker's role has the same
// permissions on the same vhost; whatever the plugin does beyond that (a
// look-up before creating, its marker tag, closing the user's connections
// on revoke, a fresh connection per request as rabbit-hole makes them)
// counts as the broker's cost.
type rawRabbit struct {
	client   *http.Client
	endpoint string // the management API's base URL
	user     string // the administrator
	pass     string
	prefix   string
	vhost    string
	perm     []byte // the permissions body
}

// call sends method path with body (nil: none) as the administrator and
// fails unless the status is one of want.
func (r *rawRabbit) call(ctx context.Context, method, path string, body []byte, want ...int) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.endpoint+path, rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth(r.user, r.pass)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	if !slices.Contains(want, res.StatusCode) {
		return fmt.Errorf("%s %s: %s", method, path, res.Status)
	}
	return nil
}

func (r *rawRabbit) issue(ctx context.Context) (leaseRef, error) {
	username := r.prefix + randText(10)
	user, err := json.Marshal(map[string]string{"password": plugins.NewPassword().Reveal(), "tags": ""})
	if err != nil {
		return leaseRef{}, err
	}
	userPath := "/api/users/" + url.PathEscape(username)
	if err := r.call(ctx, http.MethodPut, userPath, user, http.StatusCreated); err != nil {
		return leaseRef{}, fmt.Errorf("raw issue: %w", err)
	}
	permPath := "/api/permissions/" + url.PathEscape(r.vhost) + "/" + url.PathEscape(username)
	if err := r.call(ctx, http.MethodPut, permPath, r.perm, http.StatusCreated, http.StatusNoContent); err != nil {
		return leaseRef{}, fmt.Errorf("raw issue: %w", err)
	}
	return leaseRef{username: username}, nil
}

func (r *rawRabbit) revoke(ctx context.Context, l leaseRef) error {
	return r.call(ctx, http.MethodDelete, "/api/users/"+url.PathEscape(l.username), nil, http.StatusNoContent)
}

func (r *rawRabbit) side() sideOps {
	return sideOps{issue: r.issue, revoke: r.revoke}
}

// rabbitCtxTransport binds every request to ctx: rabbit-hole's methods,
// which the setup and cleanup use, take no context.
type rabbitCtxTransport struct {
	ctx  context.Context
	base http.RoundTripper
}

func (t rabbitCtxTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.base.RoundTrip(req.WithContext(t.ctx))
}

// rabbitDone is the call's error, then a 2xx status; the body is drained
// and closed.
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

	var version string
	{
		c, cancel := admin()
		if ov, err := c.Overview(); err == nil {
			version = ov.RabbitMQVersion
		}
		cancel()
	}

	const re = `^cbbench\.`
	amqpTarget := amqpURL.Scheme + "://" + amqpURL.Host
	h := startSvcBroker(b, svcBroker{
		plugin: "rabbitmq",
		role:   svcRole("mq"),
		connection: fmt.Sprintf("management_url: %q\nusername: %q\npassword: env:CB_BENCH_RABBITMQ_PASSWORD\namqp_url: %q",
			endpoint, user, amqpTarget),
		section: fmt.Sprintf("vhosts:\n  %q: {configure: '%s', write: '%s', read: '%s'}", vhost, re, re, re),
		env:     []string{"CB_BENCH_RABBITMQ_PASSWORD=" + pass},
	})
	perm, err := json.Marshal(map[string]string{"configure": re, "write": re, "read": re})
	if err != nil {
		b.Fatal(err)
	}
	rawTransport := http.DefaultTransport.(*http.Transport).Clone()
	rawTransport.MaxIdleConnsPerHost = conns
	b.Cleanup(rawTransport.CloseIdleConnections)
	raw := &rawRabbit{client: &http.Client{Transport: rawTransport}, endpoint: endpoint, user: user, pass: pass,
		prefix: svcRawPrefix(), vhost: vhost, perm: perm}

	rep.svcInfo(scn, fmt.Sprintf("RabbitMQ %s, management API at %s; vhost %s, configure/write/read %s",
		version, endpoint, vhost, re))
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
	benchService(b, rep, scn, *flagRabbitOps, []side{{"raw", raw.side()}, {sideProto, h.proto.side(h.role)}}, count)
}
