package broker

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/authn"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/proto/credbroker/v1/credbrokerv1connect"
)

// This file is an in-process broker for tests: broker.New on a real lease
// store and a real PostgreSQL backend (each a database of the test's own),
// the real handler behind an httptest.Server, and tokens minted by a key
// made in the test.

// testIssuer is a token issuer made for one test: an Ed25519 key and its
// JWK Set in a file the broker reads (jwks_file).
type testIssuer struct {
	url      string
	key      authn.SigningKey
	jwksFile string
}

func newTestIssuer(t testing.TB, dir string) *testIssuer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss := &testIssuer{url: "https://issuer.test", key: authn.SigningKey{KID: "k1", Key: priv}, jwksFile: filepath.Join(dir, "jwks.json")}
	jwks, err := authn.JWKSJSON(iss.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(iss.jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	return iss
}

// yaml is the issuer's entry in issuers:, named test.
func (iss *testIssuer) yaml() string {
	return fmt.Sprintf("{name: test, issuer: %s, audiences: [credbroker], jwks_file: %s, algorithms: [EdDSA]}", iss.url, iss.jwksFile)
}

// token mints a token for subject that expires after ttl (before now when
// ttl is negative).
func (iss *testIssuer) token(t testing.TB, subject string, ttl time.Duration) string {
	t.Helper()
	tok, err := iss.key.Sign(jwt.MapClaims{"iss": iss.url, "sub": subject, "aud": "credbroker", "exp": time.Now().Add(ttl).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testBroker is a broker serving the real handler over httptest.
type testBroker struct {
	srv      *Server
	http     *httptest.Server
	issuer   *testIssuer
	admin    string // the PostgreSQL server's admin URL
	storeDSN string // the lease store's database
	logs     *syncBuffer
	cred     credbrokerv1connect.CredentialServiceClient
	adm      credbrokerv1connect.AdminServiceClient
}

// harnessConfig grants, to subject app: reader and fixed (not renewable),
// and emergency with a break-glass reason; to subject other: reader and
// secret; admin rights to subject admin.
const harnessConfig = `
store: {dsn: "file:%[1]s"}
issuers:
  - %[3]s
backends:
  - {name: pg, plugin: postgres, environment: test, owner: team-test, connection: {dsn: "file:%[2]s"}}
roles:
  - {name: reader, backend: pg, default_ttl: 1m, max_ttl: 5m, postgres: {member_of: [pg_read_all_data]}}
  - {name: fixed, backend: pg, default_ttl: 1m, max_ttl: 5m, renewable: false, postgres: {member_of: [pg_read_all_data]}}
  - {name: emergency, backend: pg, default_ttl: 1m, max_ttl: 1h, break_glass_max_ttl: 2m, postgres: {member_of: [pg_read_all_data]}}
  - {name: secret, backend: pg, default_ttl: 1m, max_ttl: 5m, postgres: {member_of: [pg_read_all_data]}}
policies:
  - {name: app, issuer: test, subject: app, roles: [reader, fixed], break_glass_roles: [emergency]}
  - {name: other, issuer: test, subject: other, roles: [reader, secret]}
  - {name: admins, issuer: test, subject: admin, admin: true}
`

// startBroker starts a broker on databases of the test's own. Close (also
// run when the test ends) stops it.
func startBroker(t *testing.T) *testBroker {
	t.Helper()
	admin := plugintest.PostgresURL(t)
	dir := t.TempDir()
	b := &testBroker{issuer: newTestIssuer(t, dir), admin: admin, logs: &syncBuffer{}}
	b.storeDSN = plugintest.NewTestDatabase(t, admin)
	storeFile, backendFile := filepath.Join(dir, "store.dsn"), filepath.Join(dir, "backend.dsn")
	for file, dsn := range map[string]string{storeFile: b.storeDSN, backendFile: plugintest.NewTestDatabase(t, admin)} {
		if err := os.WriteFile(file, []byte(dsn), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := ParseConfig(fmt.Appendf(nil, harnessConfig, storeFile, backendFile, b.issuer.yaml()), testDrivers)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b.srv, err = New(t.Context(), cfg, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	b.http = httptest.NewServer(b.srv.Handler())
	b.cred = credbrokerv1connect.NewCredentialServiceClient(b.http.Client(), b.http.URL)
	b.adm = credbrokerv1connect.NewAdminServiceClient(b.http.Client(), b.http.URL)
	t.Cleanup(b.Close)
	return b
}

// Close stops the HTTP server, its client's connections and the broker.
func (b *testBroker) Close() {
	b.http.CloseClientConnections()
	b.http.Client().CloseIdleConnections()
	b.http.Close()
	b.srv.Close()
}

// token mints a token for subject, valid for an hour.
func (b *testBroker) token(t *testing.T, subject string) string {
	return b.issuer.token(t, subject, time.Hour)
}

// authed makes a request carrying token as its bearer token ("" for none).
func authed[T any](token string, msg *T) *connect.Request[T] {
	r := connect.NewRequest(msg)
	if token != "" {
		r.Header().Set("Authorization", "Bearer "+token)
	}
	return r
}

// wantCode fails unless err is a Connect error with code and, when msg is
// not empty, a message containing msg.
func wantCode(t *testing.T, what string, err error, code connect.Code, msg string) {
	t.Helper()
	if got := connect.CodeOf(err); err == nil || got != code {
		t.Errorf("%s: %v (code %v), want %v", what, err, got, code)
		return
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Errorf("%s: message %q, want it to contain %q", what, err.Error(), msg)
	}
}

// login proves a credential works (or not) on the backend.
func login(ctx context.Context, uri string) error {
	conn, err := pgx.Connect(ctx, uri)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}
