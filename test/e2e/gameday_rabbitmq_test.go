package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/test/harness"
)

// newGameDayRabbitMQ makes a vhost and an admin user of the test's own on
// the shared RabbitMQ node: tagged administrator, with every permission on
// the vhost, and a random password. The broker reaches the management API
// through a StallProxy, so the game day can hold the rotation's password
// change (RabbitMQ has no lock to hold it on); AMQP, which the plugin does
// not use, goes direct. The issued users and the admin are deleted when the
// test ends, then the vhost.
func newGameDayRabbitMQ(t *testing.T) *gameDayTarget {
	mq := harness.NewRabbitMQ(t)
	vhost := mq.NewVhost(t) // deleted last
	mgmt, err := url.Parse(mq.ManagementURL)
	if err != nil {
		t.Fatal(err)
	}
	if mgmt.Scheme != "http" || strings.Trim(mgmt.Path, "/") != "" {
		t.Skipf("the game day puts a TCP proxy in front of the management API: it needs an http:// URL without a path, not %s", mq.ManagementURL)
	}
	admin := harness.RandomName("cbtest_gdadmin_")
	tag := harness.RandomName("cbtest_gd_") // the issued users', to find them
	password := plugins.NewPassword().Reveal()
	// The management API directly (not through the proxy), as the node's
	// administrator (guest).
	api := mgmtClient{base: mq.ManagementURL, user: mq.Username, password: mq.Password}

	body, err := json.Marshal(map[string]string{"password": password, "tags": "administrator"})
	if err != nil {
		t.Fatal(err)
	}
	api.must(t, http.MethodPut, "/api/users/"+url.PathEscape(admin), string(body))
	t.Cleanup(func() {
		status, resp, err := api.do(context.Background(), http.MethodDelete, "/api/users/"+url.PathEscape(admin), "")
		if err != nil || (status/100 != 2 && status != http.StatusNotFound) {
			t.Errorf("delete the game day's RabbitMQ admin %s: HTTP %d %s %v", admin, status, resp, err)
		}
	})
	api.must(t, http.MethodPut, "/api/permissions/"+url.PathEscape(vhost)+"/"+url.PathEscape(admin),
		`{"configure": ".*", "write": ".*", "read": ".*"}`)
	// Runs before the admin's deletion, once the brokers are stopped: it
	// deletes the issued users a failed run left (the game day revokes
	// them all when it gets there).
	t.Cleanup(func() { api.deleteTagged(t, tag) })

	// rabbit-hole's request line: the user name is url.PathEscape'd, which
	// leaves RandomName's letters, digits and _ as they are.
	putAdmin := "PUT /api/users/" + url.PathEscape(admin) + " "
	proxy := harness.NewStallProxy(t, mgmt.Host)
	return &gameDayTarget{
		backendYAML: fmt.Sprintf(`  - name: %s
    plugin: rabbitmq
    owner: e2e
    environment: test
    connection:
      management_url: %q
      username: %q
      password: env:CB_GD_RABBITMQ_PASSWORD
      amqp_url: %q
`, gameDayBackendName, "http://"+proxy.Addr, admin, mq.AMQPURL),
		roleYAML: fmt.Sprintf(`rabbitmq: {vhosts: {%q: {configure: '^gd\.', write: '^gd\.', read: '^gd\.'}}, tags: [%s]}`, vhost, tag),
		env:      []string{"CB_GD_RABBITMQ_PASSWORD=" + password},
		password: password,
		userExists: func(t *testing.T, name string) bool {
			return mq.UserExists(t, name)
		},
		adminLogin: func(ctx context.Context, password string) error {
			return api.login(ctx, admin, password)
		},
		stall: func(t *testing.T) (func() int, func()) {
			return proxy.Stall(t, func(w []byte) bool { return harness.ContainsFold(w, putAdmin) })
		},
	}
}

// mgmtClient calls RabbitMQ's management API directly (not through the
// game day's proxy) as one user.
type mgmtClient struct {
	base, user, password string
}

// do sends one request and returns the HTTP status and body.
func (m mgmtClient) do(ctx context.Context, method, path, body string) (int, string, error) {
	return m.as(ctx, m.user, m.password, method, path, body)
}

func (m mgmtClient) as(ctx context.Context, user, password, method, path, body string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.base+path, rd)
	if err != nil {
		return 0, "", err
	}
	req.SetBasicAuth(user, password)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, string(raw), err
}

// must sends one request and fails the test unless it succeeds.
func (m mgmtClient) must(t *testing.T, method, path, body string) {
	t.Helper()
	status, resp, err := m.do(t.Context(), method, path, body)
	if err != nil || status/100 != 2 {
		t.Fatalf("RabbitMQ %s %s: HTTP %d %s %v", method, path, status, resp, err)
	}
}

// login reports whether user logs in to the management API with password
// (GET /api/whoami): an error when refused. The password is in no error.
func (m mgmtClient) login(ctx context.Context, user, password string) error {
	status, body, err := m.as(ctx, user, password, http.MethodGet, "/api/whoami", "")
	switch {
	case err != nil:
		return fmt.Errorf("GET /api/whoami as %s: %w", user, err)
	case status != http.StatusOK:
		return fmt.Errorf("GET /api/whoami as %s: HTTP %d %s", user, status, body)
	}
	return nil
}

// deleteTagged deletes every user tagged tag: a tag of the test's own
// that its role gives the users it issues, so that even a user whose
// creation a kill -9 cut short (no permissions yet) is found.
func (m mgmtClient) deleteTagged(t *testing.T, tag string) {
	status, body, err := m.do(context.Background(), http.MethodGet, "/api/users", "")
	if err != nil || status != http.StatusOK {
		t.Errorf("list the RabbitMQ users: HTTP %d %s %v", status, body, err)
		return
	}
	var users []struct {
		Name string
		Tags json.RawMessage
	}
	if err := json.Unmarshal([]byte(body), &users); err != nil {
		t.Errorf("list the RabbitMQ users: %v", err)
		return
	}
	for _, u := range users {
		if !slices.Contains(userTags(u.Tags), tag) {
			continue
		}
		status, body, err := m.do(context.Background(), http.MethodDelete, "/api/users/"+url.PathEscape(u.Name), "")
		if err != nil || (status/100 != 2 && status != http.StatusNotFound) {
			t.Errorf("delete RabbitMQ user %s: HTTP %d %s %v", u.Name, status, body, err)
		}
	}
}

// userTags decodes a user's tags: a JSON list (RabbitMQ 3.9 and later) or
// a comma-separated string (before).
func userTags(raw json.RawMessage) []string {
	var tags []string
	if json.Unmarshal(raw, &tags) == nil {
		return tags
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	return strings.Split(s, ",")
}
