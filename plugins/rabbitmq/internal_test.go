package rabbitmq

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rabbithole "github.com/michaelklishin/rabbit-hole/v2"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/secret"
)

// TestSaltedHash checks the example of RabbitMQ's documentation on computing
// a password hash: salt 908DC60A, password test12.
func TestSaltedHash(t *testing.T) {
	t.Parallel()
	const want = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
	if got := saltedHash([]byte{0x90, 0x8d, 0xc6, 0x0a}, "test12"); got != want {
		t.Errorf("saltedHash = %s, want %s", got, want)
	}
	a, b := passwordHash("pw"), passwordHash("pw")
	if a == b {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	raw, err := base64.StdEncoding.DecodeString(a)
	if err != nil || len(raw) != 4+32 {
		t.Errorf("passwordHash = %q (%d bytes, %v), want base64 of 36 bytes", a, len(raw), err)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		err         error
		unavailable bool
	}{
		"Nil":          {nil, false},
		"Transport":    {&url.Error{Op: "Get", URL: "http://x/api/whoami", Err: errors.New("connection refused")}, true},
		"Unauthorized": {errors.New("Error: API responded with a 401 Unauthorized"), true},
		"EOF":          {io.ErrUnexpectedEOF, true},
		"503":          {rabbithole.ErrorResponse{StatusCode: http.StatusServiceUnavailable}, true},
		"404":          {rabbithole.ErrorResponse{StatusCode: http.StatusNotFound}, false},
		"400":          {fmt.Errorf("put: %w", rabbithole.ErrorResponse{StatusCode: http.StatusBadRequest}), false},
		"Canceled":     {&url.Error{Op: "Get", URL: "http://x/", Err: context.Canceled}, false},
		"Plain":        {errors.New("something"), false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := classify(tt.err)
			if plugins.IsUnavailable(got) != tt.unavailable {
				t.Errorf("classify(%v) = %v: unavailable = %t, want %t", tt.err, got, !tt.unavailable, tt.unavailable)
			}
			if tt.err != nil && !errors.Is(got, tt.err) && !strings.Contains(got.Error(), "401") {
				t.Errorf("classify(%v) = %v, which no longer wraps it", tt.err, got)
			}
		})
	}
}

// TestCloseConnections proves the second half of Revoke on its own:
// RabbitMQ 3.8 and later already close a deleted user's connections, so
// Revoke's tests cannot tell whether closeConnections works.
func TestCloseConnections(t *testing.T) {
	t.Parallel()
	p, admin := openInternal(t)
	vhost := addVhost(t, admin)
	username := plugins.NewUsername("close", usernameLimit)
	resp, err := p.Create(t.Context(), plugins.CreateOf[*Role]{
		Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour),
		Spec: &Role{Vhosts: map[string]Permissions{vhost: {}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cred := resp.Credential
	t.Cleanup(func() { _, _ = p.Revoke(context.Background(), plugins.RevokeOf[*Role]{Username: username}) })
	conn, err := amqp.Dial(cred.URI.Reveal())
	if err != nil {
		t.Fatalf("dial: %v", plugins.Sanitize(err, cred.Password))
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))

	// Both listings find the connection: connection tracking once the node
	// has registered it, just after the handshake (amqp.Dial can return
	// first), the statistics-based one after the next collection.
	deadline := time.Now().Add(15 * time.Second)
	var names []string
	for {
		names, err = p.trackedConnections(t.Context(), username)
		if err != nil || len(names) > 1 {
			t.Fatalf("trackedConnections = %q, %v; want the one connection", names, err)
		}
		if len(names) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("trackedConnections found no connection after 15s")
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	for {
		listed, err := listedConnections(admin, username)
		if err != nil {
			t.Fatalf("listedConnections: %v", err)
		}
		if slices.Equal(listed, names) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listedConnections = %q after 15s, want %q", listed, names)
		}
		time.Sleep(100 * time.Millisecond) // polling with a deadline
	}

	if err := p.closeConnections(t.Context(), admin, username); err != nil {
		t.Fatalf("closeConnections: %v", err)
	}
	select {
	case e := <-closed:
		if e == nil || e.Code != amqp.ConnectionForced {
			t.Errorf("the connection closed with %v, want CONNECTION_FORCED", e)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the connection is still open after closeConnections")
	}
	if names, err := p.trackedConnections(t.Context(), plugins.NewUsername("nobody", usernameLimit)); err != nil || len(names) != 0 {
		t.Errorf("trackedConnections of an unknown user = %q, %v; want none", names, err)
	}
}

// openInternal opens a Plugin as the tests' RabbitMQ administrator and
// returns it with an admin client that works until the test's cleanups end.
func openInternal(t *testing.T) (*Plugin, *rabbithole.Client) {
	t.Helper()
	mgmt, err := url.Parse(plugintest.RabbitMQManagementURL(t))
	if err != nil {
		t.Fatal(err)
	}
	amqpURL, err := url.Parse(plugintest.RabbitMQAMQPURL(t))
	if err != nil {
		t.Fatal(err)
	}
	adminPassword, _ := mgmt.User.Password()
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte(adminPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	ref, err := secret.ParseRef("file:" + file)
	if err != nil {
		t.Fatal(err)
	}
	c := &Connection{
		Username:      mgmt.User.Username(),
		Password:      ref,
		ManagementURL: (&url.URL{Scheme: mgmt.Scheme, Host: mgmt.Host, Path: mgmt.Path}).String(),
		AMQPURL:       (&url.URL{Scheme: amqpURL.Scheme, Host: amqpURL.Host}).String(),
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	p, err := open(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	admin, cancel := p.client(context.Background())
	t.Cleanup(cancel)
	return p, admin
}

// addVhost creates a vhost of the test's own, deleted when it ends.
func addVhost(t *testing.T, admin *rabbithole.Client) string {
	t.Helper()
	vhost := "cbtest_" + strings.ToLower(rand.Text()[:12])
	if _, err := done(admin.PutVhost(vhost, rabbithole.VhostSettings{})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := gone(admin.DeleteVhost(vhost)); err != nil {
			t.Errorf("delete vhost %s: %v", vhost, err)
		}
	})
	return vhost
}
