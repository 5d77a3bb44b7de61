package mqtt_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/mqtt"
)

// TestDemo prepares the demo backend against the test broker, as
// `credbroker dev` does, and issues a client of the demo role that may
// publish and subscribe under demo/.
func TestDemo(t *testing.T) {
	b := testBroker(t)
	t.Setenv(mqtt.DevURLEnv, b.url)
	t.Setenv(mqtt.DevAdminUserEnv, b.user)
	t.Setenv(mqtt.DevAdminPasswordEnv, b.password.Reveal())
	demo := mqtt.Driver{}.Describe().Demo
	backend, err := demo.Prepare(t.Context())
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if strings.Contains(backend.Connection, b.password.Reveal()) || strings.Contains(backend.Try, b.password.Reveal()) {
		t.Error("the demo's Connection or Try holds the admin password; it belongs in Env")
	}
	if got := backend.Env[mqtt.DevAdminPasswordEnv]; got != b.password.Reveal() {
		t.Errorf("Env[%s] is not the admin password", mqtt.DevAdminPasswordEnv)
	}
	for k, v := range backend.Env {
		t.Setenv(k, v)
	}

	d := mqtt.New()
	conn, err := d.ParseConnection(decoder(backend.Connection))
	if err != nil {
		t.Fatalf("ParseConnection(%s): %v", backend.Connection, err)
	}
	role, warnings, err := d.ParseRole(decoder(backend.Role))
	if err != nil || len(warnings) > 0 {
		t.Fatalf("ParseRole(%s) = %v, %q", backend.Role, err, warnings)
	}
	p, err := plugins.Open(t.Context(), d, conn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer p.Close()
	if err := p.CheckRole(t.Context(), role); err != nil {
		t.Fatalf("CheckRole: %v", err)
	}
	username := plugins.NewUsername("demo-mqtt", d.UsernameLimit())
	resp, err := p.Create(t.Context(), plugins.CreateRequest{
		Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Role: "demo-mqtt", Spec: role,
	})
	defer func() {
		_, _ = p.Revoke(t.Context(), plugins.RevokeRequest{Username: username, Role: "demo-mqtt", State: resp.State})
	}()
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	c, err := login(t.Context(), resp.Credential)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	defer c.Disconnect(0)
	topic := "demo/" + unique()
	if err := c.mustSubscribe(t.Context(), topic); err != nil {
		t.Fatal(err)
	}
	if err := c.publish(t.Context(), topic, "hi"); err != nil {
		t.Fatal(err)
	}
	if err := c.until(t.Context(), topic, "hi", nil); err != nil {
		t.Fatal(err)
	}
}

// TestDemoUnavailable: with nothing at the demo's address, Prepare says so.
func TestDemoUnavailable(t *testing.T) {
	t.Setenv(mqtt.DevURLEnv, "tcp://127.0.0.1:1")
	t.Setenv(mqtt.DevAdminPasswordEnv, "x")
	demo := mqtt.Driver{}.Describe().Demo
	if _, err := demo.Prepare(t.Context()); !plugins.IsUnavailable(err) {
		t.Errorf("Prepare = %v, want an error matching ErrUnavailable", err)
	}
	t.Setenv(mqtt.DevAdminPasswordEnv, "")
	if _, err := os.Stat(mqtt.DefaultAdminPasswordFile); err == nil {
		return // the password file is there: nothing is missing
	}
	if _, err := demo.Prepare(t.Context()); err == nil || !strings.Contains(err.Error(), mqtt.DevAdminPasswordEnv) {
		t.Errorf("Prepare without a password = %v, want an error naming %s", err, mqtt.DevAdminPasswordEnv)
	}
}
