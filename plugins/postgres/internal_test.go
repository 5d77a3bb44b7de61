package postgres

import (
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/secret"
)

func TestQuoteLiteral(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ in, want string }{
		"Plain":          {"SCRAM-SHA-256$4096:abc$def:ghi", "'SCRAM-SHA-256$4096:abc$def:ghi'"},
		"Quote":          {"it's", "'it''s'"},
		"Backslash":      {`a\b`, `E'a\\b'`},
		"QuoteBackslash": {`\'`, `E'\\'''`},
		"NUL":            {"a\x00b", "'ab'"},
		"Empty":          {"", "''"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := quoteLiteral(tt.in); got != tt.want {
				t.Errorf("quoteLiteral(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

// TestQuoteLiteralOnServer round-trips awkward strings through the server,
// under both settings of standard_conforming_strings.
func TestQuoteLiteralOnServer(t *testing.T) {
	t.Parallel()
	conn := connect(t, plugintest.PostgresURL(t))
	for _, scs := range []string{"on", "off"} {
		if _, err := conn.Exec(t.Context(), "SET standard_conforming_strings = "+scs); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{`plain`, `it's`, `a\b`, `\'; SELECT 1; --`, `''\\''`, `$$`, `SCRAM-SHA-256$4096:a+b/c=$d:e`} {
			var got string
			if err := conn.QueryRow(t.Context(), "SELECT "+quoteLiteral(s)).Scan(&got); err != nil {
				t.Fatalf("standard_conforming_strings=%s: SELECT %s: %v", scs, quoteLiteral(s), err)
			}
			if got != s {
				t.Errorf("standard_conforming_strings=%s: %s came back as %q", scs, quoteLiteral(s), got)
			}
		}
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	exp := time.Date(2030, 1, 2, 3, 4, 5, 600000000, time.FixedZone("X", 3600))
	v := templateValues{name: `cb_x"y`, verifier: "SCRAM-SHA-256$v", expiration: exp}
	tests := map[string]struct{ in, want string }{
		"Bare": {
			"CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}",
			`CREATE ROLE "cb_x""y" LOGIN PASSWORD 'SCRAM-SHA-256$v' VALID UNTIL '2030-01-02 02:04:05.6+00'`,
		},
		"VaultQuoted": {
			`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
			`CREATE ROLE "cb_x""y" WITH LOGIN PASSWORD 'SCRAM-SHA-256$v' VALID UNTIL '2030-01-02 02:04:05.6+00';`,
		},
		"NameAsString": {
			`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}'`,
			`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'cb_x"y'`,
		},
		"UsernameAlias": {`GRANT r TO {{username}}`, `GRANT r TO "cb_x""y"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := render(tt.in, v); got != tt.want {
				t.Errorf("render(%q)\n got %s\nwant %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestSSLMode(t *testing.T) {
	tests := map[string]struct{ dsn, env, want string }{
		"URL":              {dsn: "postgres://u:p@h:5432/db?sslmode=verify-full", want: "verify-full"},
		"URLSSLTrue":       {dsn: "postgresql://u@h/db?ssl=true", want: "require"},
		"URLMultiHost":     {dsn: "postgres://u@h1:5432,h2:5433/db?sslmode=require", want: "require"},
		"URLNone":          {dsn: "postgres://u@h/db", want: "prefer"},
		"URLNoneEnv":       {dsn: "postgres://u@h/db", env: "verify-ca", want: "verify-ca"},
		"KeywordValue":     {dsn: "host=h user=u sslmode=disable dbname=db", want: "disable"},
		"KeywordSpaces":    {dsn: "host = h sslmode = 'require' password='a b'", want: "require"},
		"KeywordQuotedPwd": {dsn: `password='x sslmode=disable \' y' sslmode=verify-ca`, want: "verify-ca"},
		"KeywordNone":      {dsn: "host=h", want: "prefer"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Setenv("PGSSLMODE", tt.env)
			if got := sslMode(tt.dsn); got != tt.want {
				t.Errorf("sslMode(%q) = %q, want %q", tt.dsn, got, tt.want)
			}
		})
	}
}

// TestSCRAMVerifierMatchesServer has the server compute the verifier of a
// password (the test may send that plaintext; the plugin never does), then
// computes it in Go with the server's salt: they must be equal. Logging in
// cannot prove this where the server trusts every local connection.
func TestSCRAMVerifierMatchesServer(t *testing.T) {
	t.Parallel()
	conn := connect(t, plugintest.PostgresURL(t))
	for _, pw := range []string{plugins.NewPassword().Reveal(), "correct horse battery staple", `!"#%&'()*+,-./:;<=>?@[\]^_{|}~`} {
		tx, err := conn.Begin(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		name := "cbtest_scram_" + strings.ToLower(plugins.NewPassword().Reveal()[:8])
		var stored string
		err = func() error {
			if _, err := tx.Exec(t.Context(), "SET LOCAL password_encryption = 'scram-sha-256'"); err != nil {
				return err
			}
			if _, err := tx.Exec(t.Context(), "CREATE ROLE "+ident(name)+" PASSWORD "+quoteLiteral(pw)); err != nil {
				return err
			}
			return tx.QueryRow(t.Context(), "SELECT rolpassword FROM pg_authid WHERE rolname = $1", name).Scan(&stored)
		}()
		_ = tx.Rollback(t.Context()) // the role never outlives the test
		if err != nil {
			t.Fatal(err)
		}
		// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
		head, _, _ := strings.Cut(strings.TrimPrefix(stored, "SCRAM-SHA-256$"), "$")
		iterText, saltText, _ := strings.Cut(head, ":")
		iterations, err := strconv.Atoi(iterText)
		if err != nil {
			t.Fatalf("unexpected verifier %q", stored)
		}
		salt, err := base64.StdEncoding.DecodeString(saltText)
		if err != nil {
			t.Fatalf("unexpected verifier %q: %v", stored, err)
		}
		if got := scramVerifier(pw, salt, iterations); got != stored {
			t.Errorf("password %q:\n Go computes %s\nserver has   %s", pw, got, stored)
		}
	}
}

func TestSCRAMVerifierShape(t *testing.T) {
	t.Parallel()
	a, b := SCRAMVerifier("password"), SCRAMVerifier("password")
	if a == b {
		t.Error("two verifiers of one password are equal: the salt is not random")
	}
	for _, v := range []string{a, b} {
		if !strings.HasPrefix(v, "SCRAM-SHA-256$4096:") || strings.Contains(v, "password") {
			t.Errorf("unexpected verifier %s", v)
		}
		if strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=$:-") != "" {
			t.Errorf("verifier %s holds characters outside base64 and $:-", v)
		}
	}
}

// wireRecorder keeps every byte the plugin sends to the server.
type wireRecorder struct {
	mu  sync.Mutex
	out bytes.Buffer
}

func (r *wireRecorder) wrap(_ context.Context, _ *pgconn.Config, c net.Conn) (net.Conn, error) {
	return &recordingConn{Conn: c, r: r}, nil
}

func (r *wireRecorder) sent() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.out.Bytes())
}

type recordingConn struct {
	net.Conn
	r *wireRecorder
}

func (c *recordingConn) Write(b []byte) (int, error) {
	c.r.mu.Lock()
	c.r.out.Write(b)
	c.r.mu.Unlock()
	return c.Conn.Write(b)
}

// TestPlaintextNeverReachesServer records every byte the plugin writes to
// the server while it creates users, and looks for the password in it. The
// verifier the server stored must be the one the plugin sent.
func TestPlaintextNeverReachesServer(t *testing.T) {
	t.Parallel()
	dbURL := plugintest.NewTestDatabase(t, plugintest.PostgresURL(t))
	admin := connect(t, dbURL)
	if _, err := admin.Exec(t.Context(), "CREATE TABLE items (id int)"); err != nil {
		t.Fatal(err)
	}
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dbURL), 0o600); err != nil {
		t.Fatal(err)
	}
	ref, err := secret.ParseRef("file:" + dsnFile)
	if err != nil {
		t.Fatal(err)
	}
	rec := &wireRecorder{}
	p, err := open(t.Context(), &Connection{DSN: ref, MaxConns: 2}, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.AfterNetConnect = rec.wrap
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })

	roles := map[string]*Role{
		"Grants": {Grants: []Grant{{Privileges: []string{"SELECT"}, Schema: "public", Tables: []string{"*"}}}},
		"CreationStatements": {CreationStatements: []string{
			`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'`,
		}},
	}
	for name, role := range roles {
		t.Run(name, func(t *testing.T) {
			pw := plugins.NewPassword()
			username := plugins.NewUsername("wire", 63)
			t.Cleanup(func() {
				_, _ = p.Revoke(context.Background(), plugins.RevokeOf[*Role]{Username: username, Spec: role})
			})
			resp, err := p.Create(t.Context(), plugins.CreateOf[*Role]{
				Username: username, Password: pw, ExpiresAt: time.Now().Add(time.Hour), Role: "wire", Spec: role,
			})
			if err != nil {
				t.Fatal(err)
			}
			cred := resp.Credential
			sent := rec.sent()
			if bytes.Contains(sent, []byte(pw.Reveal())) {
				t.Fatal("the plaintext password was sent to the server")
			}
			var stored string
			if err := admin.QueryRow(t.Context(), "SELECT rolpassword FROM pg_authid WHERE rolname = $1", username).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(stored, "SCRAM-SHA-256$4096:") {
				t.Fatalf("pg_authid.rolpassword = %q, want a SCRAM-SHA-256 verifier", stored)
			}
			if !bytes.Contains(sent, []byte(stored)) {
				t.Error("the server stored a verifier the plugin did not send: it hashed the string again")
			}
			// Derive the verifier from the password with the stored salt: equal
			// means a password login would succeed.
			head, _, _ := strings.Cut(strings.TrimPrefix(stored, "SCRAM-SHA-256$4096:"), "$")
			salt, err := base64.StdEncoding.DecodeString(head)
			if err != nil {
				t.Fatal(err)
			}
			if scramVerifier(pw.Reveal(), salt, 4096) != stored {
				t.Error("the stored verifier does not match the password")
			}
			session := connect(t, cred.URI.Reveal())
			if err := session.Ping(t.Context()); err != nil {
				t.Fatalf("login: %v", err)
			}
		})
	}
}

// connect opens a connection closed when the test ends.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", plugins.Sanitize(err))
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}
