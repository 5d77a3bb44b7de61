package client_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/client"
)

// TestSessionToken: a cached login's ID token is sent while it is valid; an
// expired one without a refresh token asks for a new login; logout removes
// the cache. (Refreshing against a real provider is in the e2e tests.)
func TestSessionToken(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("HOME", dir)
	const addr = "https://broker.example:8420"
	now := time.Unix(1_800_000_000, 0)
	idToken := func(exp time.Time) string {
		payload := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"sub":"alice","exp":%d}`, exp.Unix()))
		return "eyJhbGciOiJSUzI1NiJ9." + payload + ".c2ln"
	}
	st := client.SessionToken{Addr: addr, Now: func() time.Time { return now }}

	if _, err := st.Token(t.Context()); err == nil || !strings.Contains(err.Error(), "run credbroker login") {
		t.Fatalf("no session: %v, want a hint to log in", err)
	}
	s := &client.Session{IssuerName: "corp", IDToken: idToken(now.Add(time.Hour)), Expiry: now.Add(time.Hour)}
	path, err := s.Save(addr)
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.UserConfigDir() // XDG_CONFIG_HOME on Linux, HOME/Library/Application Support on macOS
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(base, "credbroker", "sessions", "https___broker.example_8420.json"); path != want {
		t.Errorf("session path %s, want %s", path, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("session file mode: %v %v", fi.Mode(), err)
	}
	if tok, err := st.Token(t.Context()); err != nil || tok != s.IDToken {
		t.Errorf("valid session: %q, %v", tok, err)
	}
	if exp, err := client.TokenExpiry(s.IDToken); err != nil || !exp.Equal(now.Add(time.Hour)) {
		t.Errorf("TokenExpiry = %v, %v", exp, err)
	}

	s.Expiry = now.Add(10 * time.Second) // inside the refresh margin
	if _, err := s.Save(addr); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Token(t.Context()); err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "run credbroker login") {
		t.Errorf("expired session without a refresh token: %v", err)
	}

	if had, err := client.RemoveSession(addr); !had || err != nil {
		t.Errorf("RemoveSession = %v, %v", had, err)
	}
	if had, err := client.RemoveSession(addr); had || err != nil {
		t.Errorf("RemoveSession again = %v, %v", had, err)
	}
	if _, _, err := client.LoadSession(addr); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadSession after logout: %v", err)
	}
}
