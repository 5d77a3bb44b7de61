package rabbitmq_test

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	rabbithole "github.com/michaelklishin/rabbit-hole/v2"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/plugins/rabbitmq"
)

const demoVhost = "credbroker-demo"

// TestDemo prepares the demo backend against the test node, as `credbroker
// dev` does: the vhost credbroker-demo exists afterwards, the connection and
// role parse with the driver, and the demo role logs in over AMQP and may
// declare demo.* queues, and no others.
func TestDemo(t *testing.T) {
	a := newAdmin(t)
	amqpURL, err := url.Parse(plugintest.RabbitMQAMQPURL(t))
	if err != nil {
		t.Fatal(err)
	}
	amqpURL.User, amqpURL.Path = nil, ""

	d, ok := rabbitmq.New().(plugins.Describer)
	if !ok {
		t.Fatal("rabbitmq.New() does not describe itself")
	}
	if n := rabbitmq.New(); n.Name() != "rabbitmq" || n.UsernameLimit() != 64 {
		t.Errorf("New() is %q with a username limit of %d", n.Name(), n.UsernameLimit())
	}
	meta := d.Describe()
	if len(meta.Clients) != 0 {
		t.Errorf("Clients = %+v, want none: no RabbitMQ client logs in from the credential's variables", meta.Clients)
	}
	if meta.Demo == nil {
		t.Fatal("Describe() declares no demo")
	}

	_, err = a.client.GetVhost(demoVhost)
	var apiErr rabbithole.ErrorResponse
	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusNotFound {
		// Prepare makes it; leave a node as the test found it.
		t.Cleanup(func() { a.deleteVhost(t, demoVhost) })
	} else if err != nil {
		t.Fatalf("look up vhost %s: %v", demoVhost, err)
	}

	mgmt, err := url.Parse(a.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	mgmt.User = url.UserPassword(a.username, a.password)
	t.Setenv("CREDBROKER_DEV_RABBITMQ_MANAGEMENT_URL", mgmt.String())
	t.Setenv("CREDBROKER_DEV_RABBITMQ_AMQP_URL", amqpURL.String())
	backend, err := meta.Demo.Prepare(t.Context())
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if _, err := a.client.GetVhost(demoVhost); err != nil {
		t.Fatalf("vhost %s after Prepare: %v", demoVhost, err)
	}
	if len(backend.Env) != 1 || backend.Env["CREDBROKER_DEV_RABBITMQ_PASSWORD"] != a.password {
		t.Errorf("Env holds %d variables, want CREDBROKER_DEV_RABBITMQ_PASSWORD with the admin's password", len(backend.Env))
	}
	if !strings.Contains(backend.Try, "creds demo-rabbitmq") {
		t.Errorf("Try = %q, want the line that issues demo-rabbitmq", backend.Try)
	}
	c, err := rabbitmq.Driver{}.ParseConnection(plugintest.Decoder(backend.Connection))
	if err != nil {
		t.Fatalf("ParseConnection(%s): %v", backend.Connection, err)
	}
	// The admin's password is a reference to Env, not in the URL (which
	// ParseConnection refuses with credentials anyway).
	if c.ManagementURL != a.endpoint || c.Username != a.username || c.AMQPURL != amqpURL.String() ||
		c.Password.String() != "env:CREDBROKER_DEV_RABBITMQ_PASSWORD" {
		t.Errorf("the demo's connection is %s", backend.Connection)
	}
	role, _, err := rabbitmq.Driver{}.ParseRole(plugintest.Decoder(backend.Role))
	if err != nil {
		t.Fatalf("ParseRole(%s): %v", backend.Role, err)
	}

	// As `credbroker dev` does: set Env, then open the backend.
	for k, v := range backend.Env {
		t.Setenv(k, v)
	}
	p := open(t, c)
	if err := p.CheckRole(t.Context(), role); err != nil {
		t.Fatalf("CheckRole of the demo role: %v", err)
	}
	cred := create(t, p, role)
	if cred.Fields["vhost"] != demoVhost {
		t.Errorf("the credential is for vhost %q, want %s", cred.Fields["vhost"], demoVhost)
	}
	conn, err := dial(t.Context(), cred.URI.Reveal())
	if err != nil {
		t.Fatalf("dial as the demo role: %v", plugins.Sanitize(err, cred.Password))
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(uniqueName("demo.q"), false, true, true, false, nil); err != nil {
		t.Errorf("declare demo.* as the demo role: %v", err)
	}
	_, err = ch.QueueDeclare(uniqueName("other.q"), false, true, true, false, nil)
	var amqpErr *amqp.Error
	if !errors.As(err, &amqpErr) || amqpErr.Code != amqp.AccessRefused {
		t.Errorf("declare other.* as the demo role = %v, want ACCESS_REFUSED", err)
	}
}

// TestDemoUnavailable: with no management API at the demo's address, or no
// credentials in its URL, Prepare fails naming the variable to set.
func TestDemoUnavailable(t *testing.T) {
	demo := rabbitmq.Driver{}.Describe().Demo
	for name, tt := range map[string]struct {
		mgmt        string
		unavailable bool
	}{
		"NothingThere":  {"http://guest:guest@127.0.0.1:1", true},
		"NoCredentials": {"http://127.0.0.1:15672", false},
	} {
		t.Setenv("CREDBROKER_DEV_RABBITMQ_MANAGEMENT_URL", tt.mgmt)
		_, err := demo.Prepare(t.Context())
		switch {
		case err == nil:
			t.Errorf("%s: Prepare succeeded", name)
		case !strings.Contains(err.Error(), "CREDBROKER_DEV_RABBITMQ_MANAGEMENT_URL"):
			t.Errorf("%s: Prepare = %v, want an error naming CREDBROKER_DEV_RABBITMQ_MANAGEMENT_URL", name, err)
		case errors.Is(err, plugins.ErrUnavailable) != tt.unavailable:
			t.Errorf("%s: Prepare = %v: unavailable is %v, want %v", name, err, !tt.unavailable, tt.unavailable)
		}
	}
}
