package harness

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/mqtt"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/secret"
)

// This file has what tests of the MQTT backend (plugins/mqtt, Mosquitto 2
// with the dynamic-security plugin, usually run as the separate program
// cmd/credbroker-plugin-mqtt) need: the test broker .ci/mosquitto-dynsec
// starts, an admin client that sends dynsec commands, and the options files
// Mosquitto's own clients read a password from.

// Environment variables of the MQTT test broker, as .ci/mosquitto-dynsec
// prints them.
const (
	MQTTURLEnv           = "CREDBROKER_TEST_MQTT_URL"
	MQTTAdminUserEnv     = "CREDBROKER_TEST_MQTT_ADMIN_USER"
	MQTTAdminPasswordEnv = "CREDBROKER_TEST_MQTT_ADMIN_PASSWORD"

	// mqttBrokerPasswordEnv is the variable of the credbroker process that
	// holds the admin password; a backend's env: hands it to the program.
	mqttBrokerPasswordEnv = "CB_TEST_MQTT_ADMIN_PASSWORD"
)

// The dynsec topics.
const (
	dynsecTopic         = "$CONTROL/dynamic-security/v1"
	dynsecResponseTopic = dynsecTopic + "/response"
)

// MQTTCommandProgram is the import path of the MQTT backend's program.
const MQTTCommandProgram = "github.com/credbroker/credbroker/cmd/credbroker-plugin-mqtt"

// MQTT is the Mosquitto with dynamic security that .ci/mosquitto-dynsec
// runs.
type MQTT struct {
	// URL is tcp://host:port.
	URL string
	// Host and Port are where it listens.
	Host, Port string
	// AdminUser is the dynsec admin.
	AdminUser string

	adminPassword string
}

// NewMQTT finds the MQTT test broker: $CREDBROKER_TEST_MQTT_URL, else
// tcp://127.0.0.1:1885, with the admin $CREDBROKER_TEST_MQTT_ADMIN_USER
// (default credbroker-admin) whose password is
// $CREDBROKER_TEST_MQTT_ADMIN_PASSWORD or, without it, the file
// .ci/mosquitto-dynsec writes. The test is skipped (or fails under
// CREDBROKER_REQUIRE_SERVICES=1) when the admin cannot log in there.
func NewMQTT(t testing.TB) *MQTT {
	t.Helper()
	m := &MQTT{AdminUser: cmp.Or(os.Getenv(MQTTAdminUserEnv), mqtt.DefaultAdminUser)}
	m.adminPassword = os.Getenv(MQTTAdminPasswordEnv)
	var pwErr error
	if m.adminPassword == "" {
		b, err := os.ReadFile(mqtt.DefaultAdminPasswordFile)
		m.adminPassword, pwErr = strings.TrimRight(string(b), "\r\n"), err
	}
	m.URL = plugintest.ServiceURL(t, "Mosquitto with dynamic security (.ci/mosquitto-dynsec)", MQTTURLEnv, mqtt.DefaultURL,
		func(ctx context.Context, u string) error {
			if pwErr != nil {
				return fmt.Errorf("no admin password: %s is empty and %w", MQTTAdminPasswordEnv, pwErr)
			}
			a, err := dialDynsec(ctx, u, m.AdminUser, m.adminPassword)
			if err != nil {
				return err
			}
			a.Close()
			return nil
		})
	u, err := url.Parse(m.URL)
	if err != nil || u.Hostname() == "" || u.Port() == "" {
		t.Fatalf("harness: %s: want tcp://host:port", MQTTURLEnv)
	}
	m.Host, m.Port = u.Hostname(), u.Port()
	return m
}

// AdminPassword returns the admin's password, for a secret check.
func (m *MQTT) AdminPassword() string { return m.adminPassword }

// Env returns the environment [MQTT.ExternalBackendYAML]'s env: reference
// needs in the credbroker process.
func (m *MQTT) Env() []string { return []string{mqttBrokerPasswordEnv + "=" + m.adminPassword} }

// ExternalBackendYAML returns a `backends:` entry called name that runs the
// MQTT backend as the program at path, pinned by its SHA-256, with the
// sweep off (the test broker is shared): the program gets the admin
// password as MQTT_ADMIN_PASSWORD, from a reference the broker resolves.
func (m *MQTT) ExternalBackendYAML(name, path, sha256Hex string) string {
	return fmt.Sprintf(`  - name: %s
    plugin: external
    command: [%q]
    sha256: %s
    env:
      MQTT_ADMIN_PASSWORD: env:%s
    environment: test
    owner: harness
    sweep: false
    connection:
      url: %q
      username: %q
      password: env:MQTT_ADMIN_PASSWORD
`, name, path, sha256Hex, mqttBrokerPasswordEnv, m.URL, m.AdminUser)
}

// Admin returns a dynsec admin client, closed when the test ends.
func (m *MQTT) Admin(t testing.TB) *DynsecAdmin {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := dialDynsec(ctx, m.URL, m.AdminUser, m.adminPassword)
	if err != nil {
		t.Fatalf("harness: MQTT admin: %v", plugins.SanitizeString(err.Error(), secret.New(m.adminPassword)))
	}
	t.Cleanup(a.Close)
	return a
}

// NewDynsecAdmin connects to the MQTT test broker as its admin, for
// callers without a testing.TB; the caller closes it.
func (m *MQTT) NewDynsecAdmin(ctx context.Context) (*DynsecAdmin, error) {
	a, err := dialDynsec(ctx, m.URL, m.AdminUser, m.adminPassword)
	if err != nil {
		return nil, errors.New(plugins.SanitizeString(err.Error(), secret.New(m.adminPassword)))
	}
	return a, nil
}

// ToolArgs returns the arguments of mosquitto_sub and mosquitto_pub that
// point them at this broker as user; the password comes from [ToolEnv].
func (m *MQTT) ToolArgs(user string) []string {
	return []string{"-h", m.Host, "-p", m.Port, "-u", user}
}

// ToolEnv writes the options files of mosquitto_sub and mosquitto_pub
// (-P password) into a private directory of the test and returns the
// XDG_CONFIG_HOME=… that makes them read it: the password never goes on a
// command line.
func ToolEnv(t testing.TB, password string) []string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "xdg")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatalf("harness: %v", err)
	}
	for _, tool := range []string{"mosquitto_sub", "mosquitto_pub"} {
		if err := os.WriteFile(filepath.Join(dir, tool), []byte("-P "+password+"\n"), 0o600); err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	return []string{"XDG_CONFIG_HOME=" + dir}
}

// DynsecAdmin is an MQTT connection of the dynsec admin, subscribed to the
// answers of dynsec commands. It is safe for concurrent use.
type DynsecAdmin struct {
	client paho.Client

	mu      sync.Mutex
	waiting map[string]chan []DynsecResponse
}

// DynsecCommand is one dynsec command, as its JSON object.
type DynsecCommand map[string]any

// DynsecResponse is dynsec's answer to one command.
type DynsecResponse struct {
	Command         string          `json:"command"`
	Error           string          `json:"error"`
	CorrelationData string          `json:"correlationData"`
	Data            json.RawMessage `json:"data"`
}

func dialDynsec(ctx context.Context, rawURL, user, password string) (*DynsecAdmin, error) {
	a := &DynsecAdmin{waiting: map[string]chan []DynsecResponse{}}
	opts := paho.NewClientOptions().
		AddBroker(rawURL).
		SetClientID("cbtest-admin-" + strings.ToLower(rand.Text()[:12])).
		SetUsername(user).
		SetPassword(password).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).
		SetWriteTimeout(5 * time.Second).
		SetOrderMatters(false)
	a.client = paho.NewClient(opts)
	if err := waitToken(ctx, a.client.Connect()); err != nil {
		return nil, fmt.Errorf("connect to %s as %s: %w", rawURL, user, err)
	}
	sub := a.client.Subscribe(dynsecResponseTopic, 0, a.onResponse)
	if err := waitToken(ctx, sub); err != nil {
		a.Close()
		return nil, fmt.Errorf("subscribe to %s: %w", dynsecResponseTopic, err)
	}
	if code := sub.(*paho.SubscribeToken).Result()[dynsecResponseTopic]; code > 2 {
		a.Close()
		return nil, fmt.Errorf("%s may not subscribe to %s", user, dynsecResponseTopic)
	}
	return a, nil
}

func waitToken(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *DynsecAdmin) onResponse(_ paho.Client, msg paho.Message) {
	var tree struct {
		Responses []DynsecResponse `json:"responses"`
	}
	if json.Unmarshal(msg.Payload(), &tree) != nil || len(tree.Responses) == 0 {
		return
	}
	id := tree.Responses[0].CorrelationData
	a.mu.Lock()
	ch := a.waiting[id]
	delete(a.waiting, id)
	a.mu.Unlock()
	if ch != nil {
		ch <- tree.Responses
	}
}

// Close disconnects.
func (a *DynsecAdmin) Close() { a.client.Disconnect(100) }

// Run sends cmds in one message to $CONTROL/dynamic-security/v1 (QoS 1, as
// plugins/mqtt does) and returns dynsec's answers, one a command, in
// order. An answer may carry its own error.
func (a *DynsecAdmin) Run(ctx context.Context, cmds ...DynsecCommand) ([]DynsecResponse, error) {
	id := rand.Text()
	all := make([]DynsecCommand, len(cmds))
	for i, c := range cmds {
		all[i] = DynsecCommand{"correlationData": id}
		for k, v := range c {
			all[i][k] = v
		}
	}
	payload, err := json.Marshal(map[string]any{"commands": all})
	if err != nil {
		return nil, err
	}
	ch := make(chan []DynsecResponse, 1)
	a.mu.Lock()
	a.waiting[id] = ch
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.waiting, id)
		a.mu.Unlock()
	}()
	if err := waitToken(ctx, a.client.Publish(dynsecTopic, 1, false, payload)); err != nil {
		return nil, fmt.Errorf("publish to %s: %w", dynsecTopic, err)
	}
	select {
	case rs := <-ch:
		if len(rs) != len(cmds) {
			return nil, fmt.Errorf("dynsec answered %d commands with %d responses", len(cmds), len(rs))
		}
		return rs, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("no answer from dynsec: %w", ctx.Err())
	}
}

// Err returns the response's error, or nil.
func (r DynsecResponse) Err() error {
	if r.Error == "" {
		return nil
	}
	return fmt.Errorf("dynsec %s: %s", r.Command, r.Error)
}

// dynsecNotFound reports whether an answer says the client or role does not
// exist.
func dynsecNotFound(r DynsecResponse) bool {
	return strings.Contains(strings.ToLower(r.Error), "not found")
}

// must runs cmds and fails the test when they do not get an answer.
func (a *DynsecAdmin) must(t testing.TB, cmds ...DynsecCommand) []DynsecResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := a.Run(ctx, cmds...)
	if err != nil {
		t.Fatalf("harness: dynsec: %v", err)
	}
	return rs
}

// ClientExists reports whether dynsec has a client called name.
func (a *DynsecAdmin) ClientExists(t testing.TB, name string) bool {
	t.Helper()
	return a.exists(t, DynsecCommand{"command": "getClient", "username": name})
}

// RoleExists reports whether dynsec has a role called name.
func (a *DynsecAdmin) RoleExists(t testing.TB, name string) bool {
	t.Helper()
	return a.exists(t, DynsecCommand{"command": "getRole", "rolename": name})
}

func (a *DynsecAdmin) exists(t testing.TB, cmd DynsecCommand) bool {
	t.Helper()
	r := a.must(t, cmd)[0]
	switch {
	case r.Error == "":
		return true
	case dynsecNotFound(r):
		return false
	}
	t.Fatalf("harness: %v", r.Err())
	return false
}

// Names returns the clients and the roles whose names start with prefix,
// sorted (listClients and listRoles).
func (a *DynsecAdmin) Names(ctx context.Context, prefix string) (clients, roles []string, err error) {
	rs, err := a.Run(ctx,
		DynsecCommand{"command": "listClients", "verbose": false, "count": -1},
		DynsecCommand{"command": "listRoles", "verbose": false, "count": -1})
	if err != nil {
		return nil, nil, err
	}
	var out [2][]string
	for i, r := range rs {
		if err := r.Err(); err != nil {
			return nil, nil, err
		}
		var l struct {
			Clients []string `json:"clients"`
			Roles   []string `json:"roles"`
		}
		if err := json.Unmarshal(r.Data, &l); err != nil {
			return nil, nil, fmt.Errorf("dynsec %s: %w", r.Command, err)
		}
		for _, n := range slices.Concat(l.Clients, l.Roles) {
			if strings.HasPrefix(n, prefix) {
				out[i] = append(out[i], n)
			}
		}
		slices.Sort(out[i])
	}
	return out[0], out[1], nil
}

// MustNames is [DynsecAdmin.Names] that fails the test on an error.
func (a *DynsecAdmin) MustNames(t testing.TB, prefix string) (clients, roles []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clients, roles, err := a.Names(ctx, prefix)
	if err != nil {
		t.Fatalf("harness: dynsec list: %v", err)
	}
	return clients, roles
}

// Remove deletes the clients, then the roles; what does not exist is
// success.
func (a *DynsecAdmin) Remove(ctx context.Context, clients, roles []string) error {
	var cmds []DynsecCommand
	for _, c := range clients {
		cmds = append(cmds, DynsecCommand{"command": "deleteClient", "username": c})
	}
	for _, r := range roles {
		cmds = append(cmds, DynsecCommand{"command": "deleteRole", "rolename": r})
	}
	if len(cmds) == 0 {
		return nil
	}
	rs, err := a.Run(ctx, cmds...)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rs {
		if r.Error != "" && !dynsecNotFound(r) {
			errs = append(errs, r.Err())
		}
	}
	return errors.Join(errs...)
}

// DeleteAtEnd deletes, when the test ends, every client and role whose
// name starts with prefix (a cb_<role>_ prefix of the test's own), failure
// or not.
func (m *MQTT) DeleteAtEnd(t testing.TB, prefix string) {
	t.Helper()
	if !strings.HasPrefix(prefix, plugins.ManagedPrefix) || len(prefix) <= len(plugins.ManagedPrefix) {
		t.Fatalf("harness: DeleteAtEnd(%q): want a cb_<role>_ prefix of the test's own", prefix)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		a, err := m.NewDynsecAdmin(ctx)
		if err != nil {
			t.Errorf("harness: MQTT cleanup: %v", err)
			return
		}
		defer a.Close()
		clients, roles, err := a.Names(ctx, prefix)
		if err == nil {
			err = a.Remove(ctx, clients, roles)
		}
		if err != nil {
			t.Errorf("harness: MQTT cleanup of %s*: %v", prefix, err)
		}
	})
}

// MQTTMessage is a message a subscription received.
type MQTTMessage struct {
	Topic, Payload string
}

// MQTTSubscription collects what the admin receives on a topic filter.
type MQTTSubscription struct {
	mu   sync.Mutex
	msgs []MQTTMessage
	more chan struct{} // closed and replaced on every message
}

// Subscribe subscribes the admin to filter (QoS 1) and collects what it
// receives.
func (a *DynsecAdmin) Subscribe(t testing.TB, filter string) *MQTTSubscription {
	t.Helper()
	s := &MQTTSubscription{more: make(chan struct{})}
	tok := a.client.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		s.mu.Lock()
		s.msgs = append(s.msgs, MQTTMessage{Topic: m.Topic(), Payload: string(m.Payload())})
		close(s.more)
		s.more = make(chan struct{})
		s.mu.Unlock()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := waitToken(ctx, tok); err != nil {
		t.Fatalf("harness: subscribe the admin to %s: %v", filter, err)
	}
	if code := tok.(*paho.SubscribeToken).Result()[filter]; code > 2 {
		t.Fatalf("harness: the broker refused the admin a subscription to %s (code %d)", filter, code)
	}
	return s
}

// Messages returns what the subscription received so far, in order.
func (s *MQTTSubscription) Messages() []MQTTMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// WaitFor waits up to timeout for a message with topic and payload and
// returns every message received until then.
func (s *MQTTSubscription) WaitFor(t testing.TB, timeout time.Duration, topic, payload string) []MQTTMessage {
	t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		msgs, more := slices.Clone(s.msgs), s.more
		s.mu.Unlock()
		if slices.Contains(msgs, MQTTMessage{Topic: topic, Payload: payload}) {
			return msgs
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("harness: no message %q on %s within %s; received %v", payload, topic, timeout, msgs)
		}
	}
}
