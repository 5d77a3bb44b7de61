// Package e2e_test drives the built credbroker binary over HTTP as a user
// would: raw Connect JSON (like curl), the Go client and the CLI, against a
// store database and a backend database of each test's own.
package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/credbroker/credbroker/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// Subjects of the test issuer's tokens that the standard policies name.
const (
	appSubject   = "system:serviceaccount:orders:api"
	otherSubject = "system:serviceaccount:billing:api"
)

// rolesConfig is the roles and policies most tests use: "readonly" (member of
// the backend's read group) granted to appSubject and otherSubject, and
// "reports" granted to otherSubject only. ttls sets readonly's default_ttl
// and max_ttl; extra is appended (reaper:, limits: …).
func rolesConfig(be *harness.Backend, defaultTTL, maxTTL, extra string) string {
	return fmt.Sprintf(`roles:
  - name: readonly
    backend: %[1]s
    owner: e2e
    default_ttl: %[3]s
    max_ttl: %[4]s
    postgres:
      member_of: [%[2]s]
  - name: reports
    backend: %[1]s
    owner: e2e
    default_ttl: 5m
    max_ttl: 10m
    postgres:
      member_of: [%[2]s]
policies:
  - name: orders-api
    issuer: test
    subject: %[5]q
    roles: [readonly]
  - name: billing-api
    issuer: test
    subject: %[6]q
    roles: [readonly, reports]
%[7]s`, harness.BackendName, be.ReadGroup, defaultTTL, maxTTL, appSubject, otherSubject, extra)
}

// setup makes a deployment and starts a broker with the standard roles.
func setup(t *testing.T, defaultTTL, maxTTL, extra string) (*harness.Deployment, *harness.Broker) {
	t.Helper()
	d := harness.NewDeployment(t)
	b := harness.StartBroker(t, d.Config(rolesConfig(d.Backend, defaultTTL, maxTTL, extra)), d.Env()...)
	return d, b
}

// issued is what a successful IssueCredential returned, from its JSON.
type issued struct {
	LeaseID, Username, Password, URI string
	ExpiresAt, MaxExpiresAt          time.Time
	Env                              map[string]string
	Raw                              map[string]any
}

// issue calls IssueCredential over raw Connect JSON and fails the test unless
// it succeeds.
func issue(t *testing.T, b *harness.Broker, token string, req map[string]any) issued {
	t.Helper()
	status, resp := b.Call(t, token, "IssueCredential", req)
	if status != http.StatusOK {
		t.Fatalf("IssueCredential %v: HTTP %d %v: %v", req, status, resp["code"], resp["message"])
	}
	out := issued{
		LeaseID:      str(resp, "lease", "id"),
		Username:     str(resp, "credential", "username"),
		Password:     str(resp, "credential", "password"),
		URI:          str(resp, "credential", "uri"),
		ExpiresAt:    timeOf(t, resp, "lease", "expiresAt"),
		MaxExpiresAt: timeOf(t, resp, "lease", "maxExpiresAt"),
		Env:          map[string]string{},
		Raw:          resp,
	}
	if env, ok := dig(resp, "credential", "env").(map[string]any); ok {
		for k, v := range env {
			out.Env[k], _ = v.(string)
		}
	}
	if out.LeaseID == "" || out.Username == "" || out.Password == "" || out.URI == "" {
		t.Fatalf("IssueCredential: incomplete response %v", resp)
	}
	if got := str(resp, "lease", "username"); got != out.Username {
		t.Errorf("lease.username = %q, credential.username = %q", got, out.Username)
	}
	if got := str(resp, "lease", "state"); got != "LEASE_STATE_ACTIVE" {
		t.Errorf("lease.state = %q, want LEASE_STATE_ACTIVE", got)
	}
	return out
}

// dig walks nested JSON objects.
func dig(m map[string]any, path ...string) any {
	var v any = m
	for _, k := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[k]
	}
	return v
}

func str(m map[string]any, path ...string) string {
	s, _ := dig(m, path...).(string)
	return s
}

func timeOf(t *testing.T, m map[string]any, path ...string) time.Time {
	t.Helper()
	s := str(m, path...)
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("%s = %q: %v", strings.Join(path, "."), s, err)
	}
	return ts
}

// wantError checks a Connect error response: its HTTP status and code, and
// that its message is non-empty. It returns the message.
func wantError(t *testing.T, what string, status int, resp map[string]any, wantStatus int, wantCode string) string {
	t.Helper()
	if status != wantStatus || resp["code"] != wantCode {
		t.Errorf("%s: HTTP %d code %v (%v), want HTTP %d code %s", what, status, resp["code"], resp["message"], wantStatus, wantCode)
	}
	msg, _ := resp["message"].(string)
	if msg == "" && status != http.StatusOK {
		t.Errorf("%s: the error has no message a person could act on", what)
	}
	return msg
}

// connect opens a session with an issued credential's URI.
func connectPG(ctx context.Context, uri string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(uri)
	if err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = 10 * time.Second
	return pgx.ConnectConfig(ctx, cfg)
}

// sqlState returns the SQLSTATE of a PostgreSQL error, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// eventually polls cond every 100ms until it is true or timeout passes, and
// fails the test with what otherwise.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
