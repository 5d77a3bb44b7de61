package postgres

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/secret"
)

// checkVerifier fails unless v is the SCRAM verifier of password (with v's
// own salt).
func checkVerifier(t *testing.T, password secret.Value, v string) {
	t.Helper()
	head, _, _ := strings.Cut(strings.TrimPrefix(v, "SCRAM-SHA-256$4096:"), "$")
	salt, err := base64.StdEncoding.DecodeString(head)
	if err != nil {
		t.Fatalf("verifier %q: %v", v, err)
	}
	if scramVerifier(password.Reveal(), salt, scramIterations) != v {
		t.Error("the verifier is not the password's")
	}
}

// waitReady waits until the pool of w holds readyPasswords pairs.
func waitReady(t *testing.T, w *passwords) {
	t.Helper()
	pollUntil(t, "the passwords are ready", func() bool { return len(w.ready) == readyPasswords })
}

// TestPasswordsAhead: a password take hands out comes with its verifier
// ready, which serves once; after that, and for a password from elsewhere,
// verifier computes a fresh one. stop ends the goroutine (TestMain checks
// that none leaks).
func TestPasswordsAhead(t *testing.T) {
	t.Parallel()
	w := startPasswords()
	defer w.stop()
	waitReady(t, w)
	pw := w.take()
	w.mu.Lock()
	ahead, ok := w.verifiers[keyOf(pw)]
	w.mu.Unlock()
	if !ok {
		t.Fatal("take did not remember the verifier of the password it handed out")
	}
	checkVerifier(t, pw, ahead)
	if got := w.verifier(pw); got != ahead {
		t.Error("verifier did not return the verifier made ahead")
	}
	again := w.verifier(pw)
	if again == ahead {
		t.Error("the verifier made ahead served twice")
	}
	checkVerifier(t, pw, again)
	other := plugins.NewPassword()
	checkVerifier(t, other, w.verifier(other))
	var none *passwords
	checkVerifier(t, other, none.verifier(other))
}

// TestPasswordsForgetOldest: verifiers of passwords handed out but never
// used are kept for the latest rememberedVerifiers passwords only.
func TestPasswordsForgetOldest(t *testing.T) {
	t.Parallel()
	w := &passwords{verifiers: make(map[passwordKey]string)}
	var handed []secret.Value
	for i := range rememberedVerifiers + 5 {
		pw := plugins.NewPassword()
		handed = append(handed, pw)
		w.remember(pair{password: pw, verifier: "verifier " + strconv.Itoa(i)})
	}
	if len(w.verifiers) != rememberedVerifiers {
		t.Errorf("%d verifiers kept, want %d", len(w.verifiers), rememberedVerifiers)
	}
	for i, pw := range handed {
		_, kept := w.verifiers[keyOf(pw)]
		if want := i >= 5; kept != want {
			t.Errorf("password %d kept = %v, want %v", i, kept, want)
		}
	}
}

// TestCreateUsesVerifierMadeAhead: a user made with a password of the
// plugin's NewPassword stores the verifier made ahead and logs in with the
// password; one made with a password from elsewhere too.
func TestCreateUsesVerifierMadeAhead(t *testing.T) {
	t.Parallel()
	dbURL := plugintest.NewTestDatabase(t, plugintest.PostgresURL(t))
	admin := connect(t, dbURL)
	p := openInternal(t, dbURL, 2, nil)
	role := &Role{MemberOf: []string{groupRole(t, admin, "")}}
	waitReady(t, p.passwords)
	for name, pw := range map[string]secret.Value{"Ahead": p.NewPassword(), "Elsewhere": plugins.NewPassword()} {
		t.Run(name, func(t *testing.T) {
			p.passwords.mu.Lock()
			ahead, madeAhead := p.passwords.verifiers[keyOf(pw)]
			p.passwords.mu.Unlock()
			if madeAhead != (name == "Ahead") {
				t.Fatalf("verifier made ahead: %v", madeAhead)
			}
			username := plugins.NewUsername("ahead", 63)
			resp, err := p.Create(t.Context(), plugins.CreateOf[*Role]{
				Username: username, Password: pw, ExpiresAt: time.Now().Add(time.Hour), Role: "ahead", Spec: role,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_, _ = p.Revoke(context.Background(), plugins.RevokeOf[*Role]{Username: username, Spec: role, State: resp.State})
			})
			var stored string
			if err := admin.QueryRow(t.Context(), "SELECT rolpassword FROM pg_authid WHERE rolname = $1", username).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			checkVerifier(t, pw, stored)
			if madeAhead && stored != ahead {
				t.Error("Create computed the verifier again instead of using the one made ahead")
			}
			if err := connect(t, resp.Credential.URI.Reveal()).Ping(t.Context()); err != nil {
				t.Fatalf("login: %v", err)
			}
		})
	}
}
