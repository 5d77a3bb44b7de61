package mqtt_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/goleak"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/mqtt"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/secret"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// decoder decodes a YAML section strictly, as the broker does.
var decoder = plugintest.Decoder

// Where the tests find the broker: the variables .ci/mosquitto-dynsec
// prints, else where it runs its broker.
const (
	urlEnv           = "CREDBROKER_TEST_MQTT_URL"
	adminUserEnv     = "CREDBROKER_TEST_MQTT_ADMIN_USER"
	adminPasswordEnv = "CREDBROKER_TEST_MQTT_ADMIN_PASSWORD"
)

// broker is the test broker and its dynsec admin.
type broker struct {
	url         string
	user        string
	passwordRef string // env:… or file:…
	password    secret.Value
}

// connection is the connection section for the broker.
func (b broker) connection() string {
	return fmt.Sprintf("{url: %q, username: %q, password: %q}", b.url, b.user, b.passwordRef)
}

// testBroker finds the broker .ci/mosquitto-dynsec starts, through
// plugintest.ServiceURL: a skip when it does not answer, a failure with
// CREDBROKER_REQUIRE_SERVICES=1.
func testBroker(t testing.TB) broker {
	t.Helper()
	b := broker{
		user:        cmp.Or(os.Getenv(adminUserEnv), mqtt.DefaultAdminUser),
		passwordRef: "file:" + mqtt.DefaultAdminPasswordFile,
	}
	if os.Getenv(adminPasswordEnv) != "" {
		b.passwordRef = "env:" + adminPasswordEnv
	}
	b.url = plugintest.ServiceURL(t, "Mosquitto with dynamic security (.ci/mosquitto-dynsec)",
		urlEnv, mqtt.DefaultURL, func(ctx context.Context, u string) error {
			c := b
			c.url = u
			conn, err := mqtt.Driver{}.ParseConnection(decoder(c.connection()))
			if err != nil {
				return err
			}
			p, err := mqtt.Driver{}.Open(ctx, conn)
			if err != nil {
				return err
			}
			return p.Close()
		})
	ref, err := secret.ParseRef(b.passwordRef)
	if err != nil {
		t.Fatal(err)
	}
	if b.password, err = ref.Resolve(); err != nil {
		t.Fatal(err)
	}
	return b
}

// open opens the typed plugin on b, closed when the test ends.
func open(t *testing.T, b broker) *mqtt.Plugin {
	t.Helper()
	conn, err := mqtt.Driver{}.ParseConnection(decoder(b.connection()))
	if err != nil {
		t.Fatalf("ParseConnection: %v", err)
	}
	p, err := mqtt.Driver{}.Open(t.Context(), conn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p.(*mqtt.Plugin)
}

func parseRole(t *testing.T, src string) *mqtt.Role {
	t.Helper()
	r, _, err := mqtt.Driver{}.ParseRole(decoder(src))
	if err != nil {
		t.Fatalf("ParseRole: %v", err)
	}
	return r
}

// unique returns a fresh lower-case token for topic and role names.
func unique() string { return strings.ToLower(plugins.NewPassword().Reveal()[:12]) }

// topicRole may publish and subscribe under base/# and nothing else.
func topicRole(base string) string {
	return fmt.Sprintf(`acls:
  - {type: publishClientSend, topic: %q, allow: true}
  - {type: subscribePattern, topic: %q, allow: true}`, base+"/#", base+"/#")
}

// create issues a client of role, revoked when the test ends.
func create(t *testing.T, p *mqtt.Plugin, role *mqtt.Role) (plugins.Credential, []byte) {
	t.Helper()
	username := plugins.NewUsername("test", mqtt.Driver{}.UsernameLimit())
	resp, err := p.Create(t.Context(), plugins.CreateOf[*mqtt.Role]{
		Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Role: "test", Spec: role,
	})
	t.Cleanup(func() {
		_, _ = p.Revoke(context.Background(), plugins.RevokeOf[*mqtt.Role]{Username: username, State: resp.State})
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return resp.Credential, resp.State
}

// client is an MQTT connection of a test, with what it received.
type client struct {
	paho.Client
	lost     chan struct{} // closed when the broker ends the connection
	lostOnce sync.Once
	msgs     chan paho.Message // every message received, on any subscription
}

// subackRefused is the SUBACK return code of a refused subscription.
const subackRefused = 0x80

// connect logs in to the broker at brokerURL (a URL paho dials).
func connect(ctx context.Context, brokerURL, username string, password secret.Value) (*client, error) {
	return connectAs(ctx, brokerURL, "cbtest-"+unique(), username, password)
}

// connectAs is connect with a client id.
func connectAs(ctx context.Context, brokerURL, clientID, username string, password secret.Value) (*client, error) {
	c := &client{lost: make(chan struct{}), msgs: make(chan paho.Message, 1000)}
	handler := func(_ paho.Client, m paho.Message) {
		select {
		case c.msgs <- m:
		default: // a test that floods itself fails on what it misses
		}
	}
	opts := paho.NewClientOptions().
		AddBroker(brokerURL).
		SetClientID(clientID).
		SetUsername(username).
		SetPassword(password.Reveal()).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second).
		SetOrderMatters(true).
		SetDefaultPublishHandler(handler).
		SetConnectionLostHandler(func(paho.Client, error) { c.lostOnce.Do(func() { close(c.lost) }) })
	c.Client = paho.NewClient(opts)
	if err := wait(ctx, c.Connect()); err != nil {
		return nil, plugins.Sanitize(err, password)
	}
	return c, nil
}

// login connects with a credential, as a workload would: from its URI.
func login(ctx context.Context, cred plugins.Credential) (*client, error) {
	u, err := url.Parse(cred.URI.Reveal())
	if err != nil {
		return nil, errors.New("the credential's URI does not parse")
	}
	pw, _ := u.User.Password()
	return connect(ctx, u.Scheme+"://"+u.Host, u.User.Username(), secret.New(pw))
}

func wait(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// subscribe subscribes at QoS 1 and returns the SUBACK code.
func (c *client) subscribe(ctx context.Context, filter string) (byte, error) {
	tok := c.Subscribe(filter, 1, nil)
	if err := wait(ctx, tok); err != nil {
		return 0, err
	}
	key := filter
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		_, key, _ = strings.Cut(rest, "/") // paho keys a shared one without $share/<group>/
	}
	code, ok := tok.(*paho.SubscribeToken).Result()[key]
	if !ok {
		return 0, fmt.Errorf("no SUBACK code for %s", filter)
	}
	return code, nil
}

// mustSubscribe subscribes and fails unless the broker grants it.
func (c *client) mustSubscribe(ctx context.Context, filter string) error {
	code, err := c.subscribe(ctx, filter)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", filter, err)
	}
	if code == subackRefused {
		return fmt.Errorf("subscribe to %s: refused", filter)
	}
	return nil
}

// mustBeRefused subscribes and fails unless the broker refuses it.
func (c *client) mustBeRefused(ctx context.Context, filter string) error {
	code, err := c.subscribe(ctx, filter)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", filter, err)
	}
	if code != subackRefused {
		return fmt.Errorf("subscribe to %s was granted (QoS %d), want it refused", filter, code)
	}
	return nil
}

// publish publishes at QoS 1 and waits for the PUBACK. MQTT 3.1.1 has no
// way to refuse a publish: the broker acknowledges and drops it.
func (c *client) publish(ctx context.Context, topic, payload string) error {
	if err := wait(ctx, c.Publish(topic, 1, false, payload)); err != nil {
		return fmt.Errorf("publish to %s: %w", topic, err)
	}
	return nil
}

// until waits for a message on topic with payload; every other message
// received before it is passed to seen.
func (c *client) until(ctx context.Context, topic, payload string, seen func(paho.Message)) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		select {
		case m := <-c.msgs:
			if m.Topic() == topic && string(m.Payload()) == payload {
				return nil
			}
			if seen != nil {
				seen(m)
			}
		case <-ctx.Done():
			return fmt.Errorf("no message %q on %s: %w", payload, topic, ctx.Err())
		}
	}
}

// session is the conformance suite's view of a login.
type session struct {
	c    *client
	base string // the role's topics are base/#
	b    broker
}

func (s *session) Ping(ctx context.Context) error {
	select {
	case <-s.c.lost:
		return errors.New("the broker ended the session")
	default:
	}
	return s.c.publish(ctx, s.base+"/ping", "ping")
}

func (s *session) Close() error {
	s.c.Disconnect(0)
	return nil
}

// CheckGrants proves the client may publish and subscribe under base/#,
// may not subscribe elsewhere, and that what it publishes elsewhere reaches
// nobody: an admin subscribed to both sees the message published after it
// but never the one outside.
func (s *session) CheckGrants(ctx context.Context) error {
	in := s.base + "/in"
	if err := s.c.mustSubscribe(ctx, in); err != nil {
		return err
	}
	hello := "hello-" + unique()
	if err := s.c.publish(ctx, in, hello); err != nil {
		return err
	}
	if err := s.c.until(ctx, in, hello, nil); err != nil {
		return fmt.Errorf("inside the ACL: %w", err)
	}

	outside := "cbtest-outside/" + unique()
	if err := s.c.mustBeRefused(ctx, outside); err != nil {
		return err
	}
	observer, err := connect(ctx, s.b.url, s.b.user, s.b.password)
	if err != nil {
		return fmt.Errorf("connect as the admin: %w", err)
	}
	defer observer.Disconnect(0)
	marker := s.base + "/marker"
	for _, f := range []string{outside, marker} {
		if err := observer.mustSubscribe(ctx, f); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
	}
	if err := s.c.publish(ctx, outside, "must not arrive"); err != nil {
		return err
	}
	done := "done-" + unique()
	if err := s.c.publish(ctx, marker, done); err != nil {
		return err
	}
	var leaked []string
	if err := observer.until(ctx, marker, done, func(m paho.Message) { leaked = append(leaked, m.Topic()) }); err != nil {
		return fmt.Errorf("the admin did not see the client's message inside its ACL: %w", err)
	}
	if len(leaked) > 0 {
		return fmt.Errorf("a message the client published outside its ACL was delivered: %v", leaked)
	}
	return nil
}

// TestConformance runs the conformance suite in process and against the
// program cmd/credbroker-plugin-mqtt, the backend's form as a separate
// program.
func TestConformance(t *testing.T) {
	b := testBroker(t)
	t.Run("InProcess", func(t *testing.T) {
		conformance(t, b, mqtt.New(), b.connection())
	})
	t.Run("OutOfProcess", func(t *testing.T) {
		d, connection := outOfProcess(t, b)
		if d.Name() != "mqtt" {
			t.Fatalf("the program's backend is named %q, want mqtt", d.Name())
		}
		conformance(t, b, d, connection)
	})
}

func conformance(t *testing.T, b broker, d plugins.Driver, connection string) {
	conn, err := d.ParseConnection(decoder(connection))
	if err != nil {
		t.Fatalf("ParseConnection: %v", err)
	}
	base := "cbtest/" + unique()
	role, _, err := d.ParseRole(decoder(topicRole(base)))
	if err != nil {
		t.Fatalf("ParseRole: %v", err)
	}
	plugintest.Run(t, plugintest.Harness{
		Driver:     d,
		Connection: conn,
		Role:       role,
		Login: func(ctx context.Context, cred plugins.Credential) (plugintest.Session, error) {
			c, err := login(ctx, cred)
			if err != nil {
				return nil, err
			}
			return &session{c: c, base: base, b: b}, nil
		},
	})
}
