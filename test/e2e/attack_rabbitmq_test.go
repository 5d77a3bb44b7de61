package e2e_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/test/harness"
)

// rabbitAttackRoles is a config's roles and policy: one RabbitMQ role called
// "events" with section as its `rabbitmq:` section, granted to appSubject.
func rabbitAttackRoles(section string) string {
	return fmt.Sprintf(`roles:
  - name: events
    backend: %s
    default_ttl: 10m
    max_ttl: 1h
    rabbitmq:
%s
`, rabbitMQBackend, section) + singlePolicy("events")
}

// TestAttackRabbitMQManagementTags is a config author's role that would let a
// holder create users (administrator), read other users' connections
// (monitoring), change policies that outlive its lease (policymaker), forge
// senders (impersonator), or declare and delete RabbitMQ's own amq.* objects
// through a configure regexp (matched anywhere in a name). `config check`
// refuses each, naming the role's path, and so does `serve`. A holder of a
// permitted role, even one tagged management, cannot create a user, widen
// its own permissions or set a policy through the management API.
func TestAttackRabbitMQManagementTags(t *testing.T) {
	t.Parallel()
	mq := harness.NewRabbitMQ(t)
	iss := harness.NewIssuer(t, "test")
	dir := t.TempDir()
	const anchored = `      vhosts: {orders: {configure: '^orders\.', write: '^orders\.', read: '^orders\.'}}`

	for name, tt := range map[string]struct {
		section string
		want    string // what the error names after the role's path
	}{
		"Administrator": {anchored + "\n      tags: [management, administrator]", `tags\[1\]: administrator is refused`},
		"Monitoring":    {anchored + "\n      tags: [monitoring]", `tags\[0\]: monitoring is refused: it lets the user see every vhost's connections`},
		"Policymaker":   {anchored + "\n      tags: [policymaker]", `tags\[0\]: policymaker is refused`},
		"Impersonator":  {anchored + "\n      tags: [impersonator]", `tags\[0\]: impersonator is refused`},
		"ConfigureAll": {`      vhosts: {orders: {configure: '.*', write: '', read: ''}}`,
			`vhosts\["orders"\]\.configure: "\.\*" matches names starting with amq\. such as amq\.direct`},
		"ConfigureUnanchored": {`      vhosts: {orders: {configure: 'orders\.', write: '', read: ''}}`,
			`vhosts\["orders"\]\.configure: .* matches names starting with amq\.`},
		"ConfigureServerNamed": {`      vhosts: {orders: {configure: '^amq\.gen-.*', write: '', read: ''}}`,
			`vhosts\["orders"\]\.configure: .* such as amq\.gen-`},
		"ConfigureAlternative": {`      vhosts: {orders: {configure: '^(orders|amq)\.', write: '', read: ''}}`,
			`vhosts\["orders"\]\.configure: .* such as amq\.direct`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, name+".yaml")
			cfg := harness.ServicesConfig(iss, mq.BackendYAML(rabbitMQBackend), rabbitAttackRoles(tt.section))
			cfg = strings.ReplaceAll(cfg, harness.ListenPlaceholder, "127.0.0.1:8420")
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			want := regexp.MustCompile(`roles\[0\]\.rabbitmq(\.|: )` + tt.want)
			stdout, stderr, code := harness.RunCLI(t, nil, "config", "check", path)
			if code != 1 || !want.MatchString(stdout+stderr) {
				t.Errorf("config check: exit %d, want 1 and an error matching %s:\n%s%s", code, want, stdout, stderr)
			}
			_, stderr, code = harness.RunCLI(t, mq.Env(), "serve", "--config", path)
			if code != 1 || !want.MatchString(stderr) {
				t.Errorf("serve: exit %d, want 1 and an error matching %s:\n%s", code, want, stderr)
			}
		})
	}

	t.Run("PermittedHolder", func(t *testing.T) {
		t.Parallel()
		vhost := mq.NewVhost(t)
		store := harness.NewStore(t)
		mq.DeleteUsersAtEnd(t, store.IssuedUsernames(t, rabbitMQBackend))
		escape := harness.RandomName("cbtest_escape_")
		mq.DeleteUsersAtEnd(t, func() []string { return []string{escape} })
		b := harness.StartBroker(t, harness.ServicesConfig(iss, mq.BackendYAML(rabbitMQBackend), rabbitAttackRoles(fmt.Sprintf(
			"      vhosts: {%s: {configure: '^e2e\\.', write: '^e2e\\.', read: '^e2e\\.'}}\n      tags: [management]", vhost))),
			append(store.StoreEnv(), mq.Env()...)...)
		cred := issue(t, b, iss.Token(t, appSubject, nil, time.Hour), map[string]any{"role": "events"})
		b.Track(cred.Password, cred.URI)

		// Another user's connection, which a monitoring holder would see.
		other, err := amqp.DialConfig(plugintest.RabbitMQAMQPURL(t), amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
		if err != nil {
			t.Fatalf("dial as the test's RabbitMQ user: %v", err)
		}
		defer other.Close()
		otherUser := `"user":"` + mq.Username + `"`
		deadline := time.Now().Add(30 * time.Second)
		for {
			status, body := mq.API(t, http.MethodGet, "/api/connections?columns=user", "")
			if status == http.StatusOK && strings.Contains(body, otherUser) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the management API does not list %s's connection within 30s: HTTP %d %.200s", mq.Username, status, body)
			}
			time.Sleep(200 * time.Millisecond) // the management API's statistics lag
		}

		// The holder can use the management API (it is tagged management)…
		if status, body := mgmtCall(t, mq.ManagementURL, cred.Username, cred.Password, http.MethodGet, "/api/whoami", ""); status != http.StatusOK {
			t.Fatalf("GET /api/whoami as the holder: HTTP %d %s, want 200", status, body)
		}
		// …but not to make a user, widen its own permissions or set a policy.
		for what, req := range map[string][3]string{
			"create an administrator": {http.MethodPut, "/api/users/" + url.PathEscape(escape), `{"password":"escaped-password","tags":"administrator"}`},
			"widen its permissions": {http.MethodPut, "/api/permissions/" + url.PathEscape(vhost) + "/" + url.PathEscape(cred.Username),
				`{"configure":".*","write":".*","read":".*"}`},
			"set a policy":                   {http.MethodPut, "/api/policies/" + url.PathEscape(vhost) + "/cbtest-escape", `{"pattern":".*","definition":{"max-length":1}}`},
			"list every user":                {http.MethodGet, "/api/users", ""},
			"list every vhost's connections": {http.MethodGet, "/api/connections?columns=user", ""},
		} {
			status, body := mgmtCall(t, mq.ManagementURL, cred.Username, cred.Password, req[0], req[1], req[2])
			switch {
			case what == "list every vhost's connections":
				// management sees only its own connections, not the other user's.
				if status != http.StatusOK || strings.Contains(body, otherUser) {
					t.Errorf("%s as the holder: HTTP %d %.200s, want 200 without %s's", what, status, body, mq.Username)
				}
			case status != http.StatusUnauthorized && status != http.StatusForbidden:
				t.Errorf("%s as the holder: HTTP %d %.200s, want 401 or 403", what, status, body)
			}
		}
		if mq.UserExists(t, escape) {
			t.Errorf("the holder made user %s", escape)
		}
	})
}

// TestAttackRabbitMQPlainTextManagement: a backend whose management_url is
// plain http:// to a host off loopback starts, with a warning naming the
// backend, so the network cannot read the admin's password unseen.
func TestAttackRabbitMQPlainTextManagement(t *testing.T) {
	t.Parallel()
	mq := harness.NewRabbitMQ(t)
	ip := nonLoopbackIP(t)
	u, err := url.Parse(mq.ManagementURL)
	if err != nil {
		t.Fatal(err)
	}
	remote := "http://" + net.JoinHostPort(ip, u.Port())
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, u.Port()), 5*time.Second); err != nil {
		t.Skipf("the management API does not listen on %s: %v", ip, err)
	} else {
		_ = c.Close()
	}
	// guest logs in from loopback only: an administrator of the test's own.
	admin, password := harness.RandomName("cbtest_admin_"), rand.Text()
	if status, body := mq.API(t, http.MethodPut, "/api/users/"+admin,
		fmt.Sprintf(`{"password":%q,"tags":"administrator"}`, password)); status/100 != 2 {
		t.Fatalf("create admin %s: HTTP %d %s", admin, status, body)
	}
	mq.DeleteUsersAtEnd(t, func() []string { return []string{admin} })
	vhost := mq.NewVhost(t)
	iss := harness.NewIssuer(t, "test")
	store := harness.NewStore(t)
	backend := fmt.Sprintf(`  - name: %s
    plugin: rabbitmq
    environment: test
    owner: team-test
    connection:
      management_url: %q
      username: %q
      password: env:CB_ATTACK_RABBITMQ_PASSWORD
      amqp_url: %q
`, rabbitMQBackend, remote, admin, mq.AMQPURL)
	b := harness.StartBroker(t, harness.ServicesConfig(iss, backend, rabbitAttackRoles(
		fmt.Sprintf("      vhosts: {%s: {configure: '', write: '', read: ''}}", vhost))),
		append(store.StoreEnv(), "CB_ATTACK_RABBITMQ_PASSWORD="+password)...)
	b.Track(password)
	want := regexp.MustCompile(`"backend warning".*"backend":"` + rabbitMQBackend + `".*management_url ` +
		regexp.QuoteMeta(remote) + ` is plain http off loopback`)
	if logs := b.Logs(); !want.MatchString(logs) {
		t.Errorf("the broker's start logs hold no warning matching %s:\n%s", want, logs)
	}
}

// mgmtCall sends one request to the management API at base as username and
// returns the HTTP status and body.
func mgmtCall(t *testing.T, base, username, password, method, path, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(username, password)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, redact(err.Error(), password))
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: read the body: %v", method, path, err)
	}
	return res.StatusCode, string(raw)
}
