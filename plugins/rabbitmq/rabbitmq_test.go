package rabbitmq_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rabbithole "github.com/michaelklishin/rabbit-hole/v2"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/plugins/rabbitmq"
	"github.com/credbroker/credbroker/secret"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// decoder decodes a YAML section strictly, as the broker does.
var decoder = plugintest.Decoder

// admin is the management API as the tests' administrator.
type admin struct {
	endpoint, username, password string
	client                       *rabbithole.Client
}

func newAdmin(t *testing.T) admin {
	t.Helper()
	u, err := url.Parse(plugintest.RabbitMQManagementURL(t))
	if err != nil {
		t.Fatal(err)
	}
	a := admin{username: u.User.Username()}
	a.password, _ = u.User.Password()
	u.User = nil
	a.endpoint = u.String()
	if a.client, err = rabbithole.NewClient(a.endpoint, a.username, a.password); err != nil {
		t.Fatal(err)
	}
	return a
}

// check fails the test when a rabbit-hole call that returns a response
// failed, and closes the response's body.
func check(t *testing.T, what string, res *http.Response, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	_ = res.Body.Close()
}

// addVhost creates a vhost, deleted when the test ends.
func (a admin) addVhost(t *testing.T, name string) {
	t.Helper()
	res, err := a.client.PutVhost(name, rabbithole.VhostSettings{Description: "credbroker test"})
	check(t, "create vhost "+name, res, err)
	t.Cleanup(func() { a.deleteVhost(t, name) })
}

func (a admin) deleteVhost(t *testing.T, name string) {
	t.Helper()
	res, err := a.client.DeleteVhost(name)
	check(t, "delete vhost "+name, res, err)
}

// addUser creates a user with a password and tags outside the plugin,
// deleted when the test ends.
func (a admin) addUser(t *testing.T, name, password string, tags ...string) {
	t.Helper()
	res, err := a.client.PutUser(name, rabbithole.UserSettings{Name: name, Password: password, Tags: tags})
	check(t, "create user "+name, res, err)
	t.Cleanup(func() {
		res, err := a.client.DeleteUser(name)
		check(t, "delete user "+name, res, err)
	})
}

// userExists reports whether the user exists, and its tags.
func (a admin) user(t *testing.T, name string) (exists bool, tags []string) {
	t.Helper()
	u, err := a.client.GetUser(name)
	var apiErr rabbithole.ErrorResponse
	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		t.Fatalf("look up user %s: %v", name, err)
	}
	return true, u.Tags
}

// bundle is what setup gives a test.
type bundle struct {
	admin   admin
	amqpURL string               // the AMQP listener, without credentials
	vhost   string               // a vhost of the test's own
	other   string               // a second one, sorted after vhost
	conn    *rabbitmq.Connection // the parsed connection section, as the admin
}

// setup makes two vhosts of the test's own and a connection section for the
// admin.
func setup(t *testing.T) bundle {
	t.Helper()
	a := newAdmin(t)
	u, err := url.Parse(plugintest.RabbitMQAMQPURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User, u.Path, u.RawPath = nil, "", ""
	prefix := uniqueName("cbtest")
	b := bundle{admin: a, amqpURL: u.String(), vhost: prefix + "_a", other: prefix + "_b"}
	a.addVhost(t, b.vhost)
	a.addVhost(t, b.other)
	b.conn = connection(t, a.endpoint, a.username, a.password, b.amqpURL, "")
	return b
}

func uniqueName(prefix string) string {
	return prefix + "_" + strings.ToLower(rand.Text()[:12])
}

// connection writes password to a file and parses a connection section that
// references it, plus extra YAML.
func connection(t *testing.T, managementURL, username, password, amqpURL, extra string) *rabbitmq.Connection {
	t.Helper()
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := rabbitmq.Driver{}.ParseConnection(decoder(fmt.Sprintf(
		"management_url: %s\nusername: %s\npassword: file:%s\namqp_url: %s\n%s",
		managementURL, username, file, amqpURL, extra)))
	if err != nil {
		t.Fatalf("ParseConnection: %v", err)
	}
	return c
}

func parseRole(t *testing.T, src string) *rabbitmq.Role {
	t.Helper()
	r, _, err := rabbitmq.Driver{}.ParseRole(decoder(src))
	if err != nil {
		t.Fatalf("ParseRole: %v", err)
	}
	return r
}

// open opens a plugin as the broker does, through plugins.Open and its
// sanitizing decorator, closed when the test ends.
func open(t *testing.T, conn *rabbitmq.Connection) plugins.Plugin {
	t.Helper()
	p, err := plugins.Open(t.Context(), rabbitmq.New(), conn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// create issues a user of role, revoked when the test ends. Its State is
// nil: the plugin needs nothing but the username to revoke.
func create(t *testing.T, p plugins.Plugin, role *rabbitmq.Role) plugins.Credential {
	t.Helper()
	username := plugins.NewUsername("test", rabbitmq.Driver{}.UsernameLimit())
	resp, err := p.Create(t.Context(), plugins.CreateRequest{
		Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Role: "test", Spec: role,
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = revoke(context.Background(), p, username) })
	if resp.State != nil {
		t.Errorf("Create returned the state %q, want none", resp.State)
	}
	return resp.Credential
}

// revoke revokes username as the broker does for a lease whose role left
// the config, or for an orphan: with neither spec nor state.
func revoke(ctx context.Context, p plugins.Plugin, username string) error {
	_, err := p.Revoke(ctx, plugins.RevokeRequest{Username: username})
	return err
}

// renew renews username for an hour, without spec or state.
func renew(ctx context.Context, p plugins.Plugin, username string) error {
	_, err := p.Renew(ctx, plugins.RenewRequest{Username: username, ExpiresAt: time.Now().Add(time.Hour)})
	return err
}

// dial opens an AMQP connection to uri; ctx bounds the dial and the
// handshake.
func dial(ctx context.Context, uri string) (*amqp.Connection, error) {
	return amqp.DialConfig(uri, amqp.Config{
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			deadline, ok := ctx.Deadline()
			if !ok {
				deadline = time.Now().Add(30 * time.Second)
			}
			if err := c.SetDeadline(deadline); err != nil {
				_ = c.Close()
				return nil, err
			}
			return c, nil
		},
	})
}

// grantsRole is the role of the conformance test in vhost: everything named
// cbt.* and routing keys allowed.* on the topic exchange cbt.topic.
func grantsRole(vhost string) string {
	return fmt.Sprintf(`
vhosts:
  %[1]s: {configure: '^cbt\.', write: '^cbt\.', read: '^cbt\.'}
topic_permissions:
  - {vhost: %[1]s, exchange: cbt.topic, write: '^allowed\.', read: '.*'}
`, vhost)
}

// login returns a Login for the suite whose sessions prove grantsRole, with
// other a vhost the role does not name.
func login(other string) func(ctx context.Context, c plugins.Credential) (plugintest.Session, error) {
	return func(ctx context.Context, c plugins.Credential) (plugintest.Session, error) {
		conn, err := dial(ctx, c.URI.Reveal())
		if err != nil {
			return nil, plugins.Sanitize(err, c.Password)
		}
		return &session{conn: conn, cred: c, other: other}, nil
	}
}

// session is an AMQP connection as an issued credential.
type session struct {
	conn  *amqp.Connection
	cred  plugins.Credential
	other string // a vhost the user has no permissions in
}

// Ping opens and closes a channel, which fails once the connection is gone.
func (s *session) Ping(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		ch, err := s.conn.Channel()
		if err == nil {
			err = ch.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err() // the goroutine ends when Close closes the connection
	}
}

func (s *session) Close() error { return s.conn.Close() }

// CheckGrants proves the session can do what grantsRole allows and nothing
// else it tries.
func (s *session) CheckGrants(ctx context.Context) error {
	var errs []error
	for _, c := range []struct {
		what string
		run  func(ctx context.Context) error
	}{
		{"publish and consume on cbt.* in the role's vhost", s.publishAndConsume},
		{"publish with routing key allowed.* on topic exchange cbt.topic", s.topicAllowed},
		{"publish to amq.direct, outside the write regexp", s.refused(amqp.AccessRefused, func(ch *amqp.Channel) error {
			return ch.PublishWithContext(ctx, "amq.direct", "k", false, false, amqp.Publishing{Body: []byte("no")})
		})},
		{"declare queue other.q, outside the configure regexp", s.refused(amqp.AccessRefused, func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare("other.q", false, true, false, false, nil)
			return err
		})},
		{"consume from amq.* queue, outside the read regexp", s.refused(amqp.AccessRefused, func(ch *amqp.Channel) error {
			_, err := ch.Consume("amq.nothing", "", true, false, false, false, nil)
			return err
		})},
		{"publish with routing key denied.x on cbt.topic, outside the topic write regexp", s.refused(amqp.AccessRefused, func(ch *amqp.Channel) error {
			if err := ch.ExchangeDeclare("cbt.topic", amqp.ExchangeTopic, false, false, false, false, nil); err != nil {
				return fmt.Errorf("declare cbt.topic: %w", err)
			}
			return ch.PublishWithContext(ctx, "cbt.topic", "denied.x", false, false, amqp.Publishing{Body: []byte("no")})
		})},
		{"open vhost " + s.other + ", which the role does not name", s.otherVhostRefused},
	} {
		if err := c.run(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.what, err))
		}
	}
	return errors.Join(errs...)
}

// publishAndConsume sends a message through an exchange and a queue of its
// own and receives it.
func (s *session) publishAndConsume(ctx context.Context) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	exchange, queue := uniqueName("cbt.x"), uniqueName("cbt.q")
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeDirect, false, true, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange: %w", err)
	}
	return roundTrip(ctx, ch, exchange, queue, "k", "k")
}

// topicAllowed sends a message with a routing key the topic permission
// allows and receives it.
func (s *session) topicAllowed(ctx context.Context) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.ExchangeDeclare("cbt.topic", amqp.ExchangeTopic, false, false, false, false, nil); err != nil {
		return fmt.Errorf("declare cbt.topic: %w", err)
	}
	return roundTrip(ctx, ch, "cbt.topic", uniqueName("cbt.tq"), "allowed.#", "allowed.x")
}

// roundTrip binds a new exclusive queue to exchange with bindingKey,
// publishes a message with routingKey and receives it from the queue.
func roundTrip(ctx context.Context, ch *amqp.Channel, exchange, queue, bindingKey, routingKey string) error {
	if _, err := ch.QueueDeclare(queue, false, true, true, false, nil); err != nil {
		return fmt.Errorf("declare queue: %w", err)
	}
	if err := ch.QueueBind(queue, bindingKey, exchange, false, nil); err != nil {
		return fmt.Errorf("bind queue: %w", err)
	}
	body := rand.Text()
	if err := ch.PublishWithContext(ctx, exchange, routingKey, false, false, amqp.Publishing{Body: []byte(body)}); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	deliveries, err := ch.ConsumeWithContext(ctx, queue, "", true, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	select {
	case d, ok := <-deliveries:
		if !ok {
			return errors.New("the consumer ended before a message came")
		}
		if string(d.Body) != body {
			return fmt.Errorf("received %q, want %q", d.Body, body)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no message came: %w", ctx.Err())
	}
}

// refused returns a check that runs op on a channel of its own and expects
// the server to close the channel with code. Publishing is asynchronous, so
// a synchronous call (basic.qos, which needs no permission) follows op: it
// fails once the server has refused what op did.
func (s *session) refused(code int, op func(ch *amqp.Channel) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		ch, err := s.conn.Channel()
		if err != nil {
			return err
		}
		defer ch.Close() // fails on a channel the server closed; nothing to do
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		err = op(ch)
		if err == nil {
			err = ch.Qos(1, 0, false)
		}
		if err == nil {
			return errors.New("the server allowed it")
		}
		select {
		case e := <-closed:
			if e == nil || e.Code != code {
				return fmt.Errorf("the channel closed with %v, want code %d", e, code)
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("failed with %v but the channel did not close: %w", err, ctx.Err())
		}
	}
}

// otherVhostRefused dials the vhost the role does not name: RabbitMQ
// refuses connection.open with 530 NOT_ALLOWED ("access to vhost … refused").
func (s *session) otherVhostRefused(ctx context.Context) error {
	u, err := url.Parse(s.cred.URI.Reveal())
	if err != nil {
		return plugins.Sanitize(err, s.cred.Password)
	}
	u.Path, u.RawPath = "/"+s.other, ""
	conn, err := dial(ctx, u.String())
	if err == nil {
		_ = conn.Close()
		return errors.New("logged in")
	}
	var amqpErr *amqp.Error
	if !errors.As(err, &amqpErr) || amqpErr.Code != amqp.NotAllowed || !strings.Contains(amqpErr.Reason, "access to vhost") {
		return fmt.Errorf("dial = %v, want NOT_ALLOWED: access to vhost refused", plugins.Sanitize(err, s.cred.Password))
	}
	return nil
}

func TestConformance(t *testing.T) {
	t.Parallel()
	b := setup(t)
	plugintest.Run(t, plugintest.Harness{
		Driver:     rabbitmq.New(),
		Connection: b.conn,
		Role:       parseRole(t, grantsRole(b.vhost)),
		Login:      login(b.other),
	})
}

// TestRevokeClosesConnections holds two AMQP connections of an issued user
// and proves Revoke closes both (CONNECTION_FORCED), on top of deleting the
// user.
func TestRevokeClosesConnections(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	cred := create(t, p, parseRole(t, grantsRole(b.vhost)))
	var closed []chan *amqp.Error
	for range 2 {
		conn, err := dial(t.Context(), cred.URI.Reveal())
		if err != nil {
			t.Fatalf("dial: %v", plugins.Sanitize(err, cred.Password))
		}
		t.Cleanup(func() { _ = conn.Close() })
		closed = append(closed, conn.NotifyClose(make(chan *amqp.Error, 1)))
	}
	if err := revoke(t.Context(), p, cred.Username); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	timeout := time.NewTimer(15 * time.Second)
	defer timeout.Stop()
	for i, c := range closed {
		select {
		case e := <-c:
			if e == nil || e.Code != amqp.ConnectionForced {
				t.Errorf("connection %d closed with %v, want CONNECTION_FORCED", i+1, e)
			}
		case <-timeout.C:
			t.Fatalf("connection %d is still open after Revoke", i+1)
		}
	}
	if exists, _ := b.admin.user(t, cred.Username); exists {
		t.Error("the user exists after Revoke")
	}
}

// TestCreateHalfMade removes a vhost of the role between CheckRole and
// Create: Create fails, naming the vhost, and leaves no user behind.
func TestCreateHalfMade(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	role := parseRole(t, fmt.Sprintf(`
vhosts:
  %s: {configure: '^cbt\.', write: '^cbt\.', read: '^cbt\.'}
  %s: {configure: '', write: '', read: '^cbt\.'}
`, b.vhost, b.other))
	if err := p.CheckRole(t.Context(), role); err != nil {
		t.Fatalf("CheckRole: %v", err)
	}
	// b.other sorts after b.vhost: the user and its first permissions exist
	// when Create meets the missing vhost.
	b.admin.deleteVhost(t, b.other) // its cleanup deletes it again: 404 is fine
	username := plugins.NewUsername("halfmade", rabbitmq.Driver{}.UsernameLimit())
	t.Cleanup(func() { _ = revoke(context.Background(), p, username) })
	_, err := p.Create(t.Context(), plugins.CreateRequest{
		Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Spec: role,
	})
	if err == nil || !strings.Contains(err.Error(), b.other) {
		t.Errorf("Create with a vhost gone = %v, want an error naming vhost %s", err, b.other)
	}
	if exists, _ := b.admin.user(t, username); exists {
		t.Error("Create failed but left the user behind")
	}
	err = p.CheckRole(t.Context(), role)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("vhost %q does not exist", b.other)) {
		t.Errorf("CheckRole after the vhost went = %v, want an error naming it", err)
	}
}

func TestCheckRole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	missing1, missing2 := uniqueName("cbtest_missing"), uniqueName("cbtest_missing")
	tests := map[string]struct {
		vhosts  []string
		wantErr []string
	}{
		"AllExist":   {vhosts: []string{b.vhost, b.other}},
		"OneMissing": {vhosts: []string{b.vhost, missing1}, wantErr: []string{fmt.Sprintf("vhost %q does not exist", missing1)}},
		"TwoMissing": {vhosts: []string{missing1, b.vhost, missing2}, wantErr: []string{"vhosts", missing1, missing2, "do not exist"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var src strings.Builder
			src.WriteString("vhosts:\n")
			for _, v := range tt.vhosts {
				fmt.Fprintf(&src, "  %s: {configure: '', write: '', read: ''}\n", v)
			}
			err := p.CheckRole(t.Context(), parseRole(t, src.String()))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Errorf("CheckRole: %v", err)
				}
				return
			}
			for _, want := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("CheckRole = %v, want an error containing %q", err, want)
				}
			}
		})
	}
	if err := p.CheckRole(t.Context(), struct{}{}); err == nil {
		t.Error("CheckRole of a role the driver did not parse succeeded")
	}
}

// TestUserOnServer looks at the user Create made: its tags, its permissions,
// and a password hash rather than a password.
func TestUserOnServer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	role := parseRole(t, fmt.Sprintf(`
vhosts:
  %[1]s: {configure: '^cbt\.', write: '^cbt\.w', read: '^cbt\.r'}
  %[2]s: {configure: '', write: '', read: '^x$'}
topic_permissions:
  - {vhost: %[1]s, exchange: cbt.topic, write: '^allowed\.', read: '^r\.'}
tags: [management]
`, b.vhost, b.other))
	cred := create(t, p, role)
	u, err := b.admin.client.GetUser(cred.Username)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(u.Tags, []string{"management", "credbroker"}) {
		t.Errorf("tags = %q, want [management credbroker]", u.Tags)
	}
	if u.HashingAlgorithm != rabbithole.HashingAlgorithmSHA256 || u.PasswordHash == "" {
		t.Errorf("hashing_algorithm = %q, password_hash set = %t; want rabbit_password_hashing_sha256 and a hash", u.HashingAlgorithm, u.PasswordHash != "")
	}
	perms, err := b.admin.client.ListPermissionsOf(cred.Username)
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]rabbithole.PermissionInfo)
	for _, pi := range perms {
		got[pi.Vhost] = pi
	}
	want := map[string][3]string{b.vhost: {`^cbt\.`, `^cbt\.w`, `^cbt\.r`}, b.other: {"", "", "^x$"}}
	if len(got) != len(want) {
		t.Errorf("permissions in %d vhosts, want %d", len(got), len(want))
	}
	for vhost, w := range want {
		if g := got[vhost]; [3]string{g.Configure, g.Write, g.Read} != w {
			t.Errorf("permissions in %s = %+v, want %q", vhost, g, w)
		}
	}
	topics, err := b.admin.client.ListTopicPermissionsOf(cred.Username)
	if err != nil {
		t.Fatal(err)
	}
	if len(topics) != 1 || topics[0].Vhost != b.vhost || topics[0].Exchange != "cbt.topic" ||
		topics[0].Write != `^allowed\.` || topics[0].Read != `^r\.` {
		t.Errorf("topic permissions = %+v", topics)
	}
}

func TestCredential(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A vhost name that must be escaped in a URI, and one sorted after it
	// ("~" comes after every letter), which the URI must not point at.
	vhost, last := uniqueName("cbtest")+"/orders x", "~"+uniqueName("cbtest")
	b.admin.addVhost(t, vhost)
	b.admin.addVhost(t, last)
	p := open(t, b.conn)
	cred := create(t, p, parseRole(t, fmt.Sprintf(`
vhosts:
  %q: {configure: '^cbt\.', write: '^cbt\.', read: '^cbt\.'}
  %q: {configure: '', write: '', read: ''}
`, vhost, last)))
	u, err := url.Parse(b.amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	wantURI := "amqp://" + cred.Username + ":" + cred.Password.Reveal() + "@" + u.Host + "/" + url.PathEscape(vhost)
	if cred.URI.Reveal() != wantURI {
		t.Errorf("URI = %s, want %s", plugins.SanitizeString(cred.URI.Reveal()), plugins.SanitizeString(wantURI))
	}
	if !strings.Contains(cred.URI.Reveal(), "%2Forders%20x") {
		t.Errorf("URI = %s: the vhost is not escaped", plugins.SanitizeString(cred.URI.Reveal()))
	}
	wantFields := map[string]string{"host": u.Hostname(), "port": u.Port(), "vhost": vhost, "username": cred.Username}
	if len(cred.Fields) != len(wantFields) {
		t.Errorf("Fields = %v, want %v", cred.Fields, wantFields)
	}
	for k, v := range wantFields {
		if cred.Fields[k] != v {
			t.Errorf("Fields[%q] = %q, want %q", k, cred.Fields[k], v)
		}
	}
	wantEnv := map[string]string{
		"AMQP_URL": wantURI, "RABBITMQ_USERNAME": cred.Username,
		"RABBITMQ_PASSWORD": cred.Password.Reveal(), "RABBITMQ_VHOST": vhost,
	}
	for k, v := range wantEnv {
		if cred.Env[k].Reveal() != v {
			t.Errorf("Env[%s] is not %s", k, plugins.SanitizeString(v, cred.Password))
		}
	}
	if names, declared := slices.Sorted(maps.Keys(cred.Env)), (rabbitmq.Driver{}).Describe().Env; !slices.Equal(names, slices.Sorted(slices.Values(declared))) {
		t.Errorf("Env holds %q, the driver declares %q", names, declared)
	}
	// The URI logs in to the escaped vhost.
	conn, err := dial(t.Context(), cred.Env["AMQP_URL"].Reveal())
	if err != nil {
		t.Fatalf("dial AMQP_URL: %v", plugins.Sanitize(err, cred.Password))
	}
	defer conn.Close()
	if conn.Config.Vhost != vhost {
		t.Errorf("connected to vhost %q, want %q", conn.Config.Vhost, vhost)
	}
}

func TestCredentialAMQPS(t *testing.T) {
	t.Parallel()
	b := setup(t)
	conn := connection(t, b.admin.endpoint, b.admin.username, b.admin.password, "amqps://mq.example.com", "")
	cred := create(t, open(t, conn), parseRole(t, grantsRole(b.vhost)))
	want := "amqps://" + cred.Username + ":" + cred.Password.Reveal() + "@mq.example.com:5671/" + b.vhost
	if cred.URI.Reveal() != want {
		t.Errorf("URI = %s, want %s", plugins.SanitizeString(cred.URI.Reveal()), plugins.SanitizeString(want))
	}
	if cred.Fields["port"] != "5671" || cred.Fields["host"] != "mq.example.com" {
		t.Errorf("Fields = %v", cred.Fields)
	}
}

func TestCreateRefusesExistingUser(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	name := uniqueName("cbtest_someone")
	b.admin.addUser(t, name, rand.Text(), "monitoring")
	pw := plugins.NewPassword()
	_, err := p.Create(t.Context(), plugins.CreateRequest{
		Username: name, Password: pw, ExpiresAt: time.Now().Add(time.Hour), Spec: parseRole(t, grantsRole(b.vhost)),
	})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("Create of an existing username = %v, want a refusal", err)
	}
	exists, tags := b.admin.user(t, name)
	if !exists || !slices.Equal(tags, []string{"monitoring"}) {
		t.Errorf("after the refused Create the user exists = %t with tags %q, want it untouched", exists, tags)
	}
}

func TestRevokeRefusesUnmanagedUser(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	name := uniqueName("cbtest_someone")
	b.admin.addUser(t, name, rand.Text(), "management")
	err := revoke(t.Context(), p, name)
	if err == nil || !strings.Contains(err.Error(), "not tagged credbroker") {
		t.Errorf("Revoke of a user credbroker did not make = %v, want a refusal", err)
	}
	if exists, _ := b.admin.user(t, name); !exists {
		t.Error("Revoke deleted a user credbroker did not make")
	}
	managed, err := p.ListManaged(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range managed {
		if m.Username == name {
			t.Errorf("ListManaged reports %s, which credbroker did not make", name)
		}
	}
}

func TestRenew(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	cred := create(t, p, parseRole(t, grantsRole(b.vhost)))
	if err := renew(t.Context(), p, cred.Username); err != nil {
		t.Errorf("Renew: %v", err)
	}
	err := renew(t.Context(), p, plugins.NewUsername("gone", 64))
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Renew of a missing user = %v, want an error saying it does not exist", err)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := open(t, b.conn).Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	name, password := uniqueName("cbtest_weak"), rand.Text()
	b.admin.addUser(t, name, password, "management")
	_, err := plugins.Open(t.Context(), rabbitmq.New(), connection(t, b.admin.endpoint, name, password, b.amqpURL, ""))
	if err == nil || !strings.Contains(err.Error(), "not tagged administrator") {
		t.Errorf("Open as a user without the administrator tag = %v, want an error naming the tag", err)
	}
	if err != nil && strings.Contains(err.Error(), password) {
		t.Errorf("the error quotes the admin password: %v", err)
	}
}

func TestOpenWrongPassword(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const password = "wrong-admin-pw-never-printed"
	_, err := plugins.Open(t.Context(), rabbitmq.New(), connection(t, b.admin.endpoint, b.admin.username, password, b.amqpURL, ""))
	if !errors.Is(err, plugins.ErrUnavailable) || !strings.Contains(err.Error(), "401") {
		t.Errorf("Open with a wrong admin password = %v, want ErrUnavailable saying 401", err)
	}
	if err != nil && strings.Contains(fmt.Sprintf("%v %+v", err, err), password) {
		t.Errorf("the error quotes the admin password: %v", err)
	}
}

func TestOpenUnavailable(t *testing.T) {
	t.Parallel()
	const password = "s3cret-admin-pw"
	conn := connection(t, "http://127.0.0.1:1", "admin", password, "amqp://127.0.0.1:5672", "")
	_, err := plugins.Open(t.Context(), rabbitmq.New(), conn)
	if !errors.Is(err, plugins.ErrUnavailable) {
		t.Errorf("Open of a server that is not there = %v, want ErrUnavailable", err)
	}
	if err != nil && strings.Contains(fmt.Sprintf("%v %+v", err, err), password) {
		t.Errorf("the error quotes the admin password: %v", err)
	}
}

func TestOpenMissingSecret(t *testing.T) {
	t.Parallel()
	conn, err := rabbitmq.Driver{}.ParseConnection(decoder(
		"management_url: http://127.0.0.1:15672\nusername: admin\npassword: env:CREDBROKER_TEST_NO_SUCH_VARIABLE\namqp_url: amqp://127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = plugins.Open(t.Context(), rabbitmq.New(), conn)
	if err == nil || !strings.Contains(err.Error(), "CREDBROKER_TEST_NO_SUCH_VARIABLE") {
		t.Errorf("Open with an unset password variable = %v, want an error naming it", err)
	}
}

func TestOpenBadCAFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := connection(t, "https://127.0.0.1:15671", "admin", "pw", "amqps://127.0.0.1", "tls: {ca_file: "+file+"}")
	_, err := plugins.Open(t.Context(), rabbitmq.New(), conn)
	if err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("Open with a CA file without certificates = %v, want an error saying so", err)
	}
}

// TestCallsHonourContext points the plugin at a server that accepts
// connections and never answers: Open returns when its context ends.
func TestCallsHonourContext(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted []net.Conn
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted = append(accepted, c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-acceptDone
		for _, c := range accepted {
			_ = c.Close()
		}
	})
	conn := connection(t, "http://"+ln.Addr().String(), "admin", "pw", "amqp://127.0.0.1", "")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = plugins.Open(ctx, rabbitmq.New(), conn)
	if err == nil {
		t.Fatal("Open against a silent server succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Open returned after %v, long after its context ended", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open = %v, want it to end with its context", err)
	}
}

// TestErrorsHideAdminPassword provokes errors from the management API with an
// admin whose password is in every request and checks none quotes it.
func TestErrorsHideAdminPassword(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	pw := plugins.NewPassword()
	_, err1 := p.Create(t.Context(), plugins.CreateRequest{
		Username: plugins.NewUsername("x", 64), Password: pw, ExpiresAt: time.Now().Add(time.Hour),
		Spec: parseRole(t, "vhosts: {"+uniqueName("cbtest_missing")+": {configure: '', write: '', read: ''}}"),
	})
	err2 := renew(t.Context(), p, plugins.NewUsername("x", 64))
	for i, err := range []error{err1, err2} {
		if err == nil {
			t.Errorf("error %d: expected one", i+1)
			continue
		}
		text := fmt.Sprintf("%v %+v", err, err)
		if strings.Contains(text, b.admin.password) || strings.Contains(text, pw.Reveal()) {
			t.Errorf("error %d quotes a password: %s", i+1, plugins.SanitizeString(text, secret.New(b.admin.password), pw))
		}
	}
}

// countingProxy stands between the plugin and the management API and
// records each request it forwards, and each connection the plugin opens.
type countingProxy struct {
	url   string
	mu    sync.Mutex
	calls []string // "METHOD /path"
	conns atomic.Int64
}

func newCountingProxy(t *testing.T, endpoint string) *countingProxy {
	t.Helper()
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	c := &countingProxy{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	proxy.Transport = transport
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.calls = append(c.calls, r.Method+" "+r.URL.EscapedPath())
		c.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			c.conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(transport.CloseIdleConnections)
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

// take returns the requests forwarded since the last take, the names in
// their paths replaced by what they stand for.
func (c *countingProxy) take(names map[string]string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	for i := range out {
		for name, placeholder := range names {
			out[i] = strings.ReplaceAll(out[i], name, placeholder)
		}
	}
	return out
}

// TestRequests counts the requests Create and Revoke send to the management
// API, so one that is added shows here, and proves they reuse one kept-alive
// connection: rabbit-hole would open one per request. Create looks the name
// up (it refuses one that exists), puts the user and its permissions;
// Revoke looks the user up (it refuses one not tagged credbroker), deletes
// it and lists its connections.
func TestRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	proxy := newCountingProxy(t, b.admin.endpoint)
	conn := *b.conn
	conn.ManagementURL = proxy.url
	p := open(t, &conn)
	role := parseRole(t, fmt.Sprintf("vhosts:\n  %s: {configure: '^cbt\\.', write: '^cbt\\.', read: '^cbt\\.'}", b.vhost))
	proxy.take(nil) // Open's check

	for range 3 {
		cred := create(t, p, role)
		names := map[string]string{cred.Username: "{user}", b.vhost: "{vhost}"}
		if got, want := proxy.take(names), []string{
			"GET /api/users/{user}", "PUT /api/users/{user}", "PUT /api/permissions/{vhost}/{user}",
		}; !slices.Equal(got, want) {
			t.Errorf("Create sent %q, want %q", got, want)
		}
		if err := revoke(t.Context(), p, cred.Username); err != nil {
			t.Fatal(err)
		}
		if got, want := proxy.take(names), []string{
			"GET /api/users/{user}", "DELETE /api/users/{user}", "GET /api/connections/username/{user}",
		}; !slices.Equal(got, want) {
			t.Errorf("Revoke sent %q, want %q", got, want)
		}
	}
	if n := proxy.conns.Load(); n != 1 {
		t.Errorf("the plugin opened %d connections to the management API for one request at a time, want 1", n)
	}
}
