package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/test/harness"
)

// zitadelConfig is a broker config with the deployment's store and backend,
// d.Issuer ("test") and the zitadel example OP z ("zitadel", by discovery,
// for people: login with its public device client), a policy giving its
// user ZitadelSubject the readonly role.
func zitadelConfig(d *harness.Deployment, z *harness.ZitadelOP) string {
	return d.ConfigWithIssuers(fmt.Sprintf(`  - name: zitadel
    issuer: %[1]s
    audiences: [%[2]s]
    discovery: true
    algorithms: [RS256]
    login:
      client_id: %[2]s
`, z.Issuer, harness.ZitadelClientID), readonlyRole(d)+fmt.Sprintf(`policies:
  - name: people
    issuer: zitadel
    subject: %s
    roles: [readonly]
`, harness.ZitadelSubject))
}

// TestLoginDevice: `credbroker login --device` against a real OpenID
// Provider with the device authorization grant (the example OP of
// github.com/zitadel/oidc/v3; Hydra v2.3.0 has none). The CLI prints the
// verification URI and user code, the test plays the person at the OP's
// device pages, and the login is cached like the code flow's: creds then
// gets a PostgreSQL credential for the OP's subject. A denied login and a device code that
// expires at the provider end login with a clear error and cache nothing.
func TestLoginDevice(t *testing.T) {
	t.Parallel()
	z := harness.StartZitadelOP(t, 0)
	d := harness.NewDeployment(t)
	b := harness.StartBroker(t, zitadelConfig(d, z), d.Env()...)
	home := t.TempDir()
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
		"CREDBROKER_ADDR=" + b.Addr, "CREDBROKER_TOKEN=", "CREDBROKER_TOKEN_FILE="}
	sessions := func() []string {
		s, _ := filepath.Glob(filepath.Join(home, "config", "credbroker", "sessions", "*.json"))
		return s
	}

	if _, stderr, code := harness.RunCLI(t, env, "login", "--device", "--no-browser"); code != 2 || !strings.Contains(stderr, "pass one") {
		t.Errorf("login --device --no-browser: exit %d, stderr %s; want a usage error", code, stderr)
	}

	t.Run("Denied", func(t *testing.T) {
		printed, err := deviceLoginCLI(t, z, env, false)
		if err == nil || !strings.Contains(printed, "the login was denied at the provider (access_denied") {
			t.Errorf("a denied device login: %v\n%s", err, printed)
		}
		if len(sessions()) != 0 {
			t.Errorf("a denied login cached a session")
		}
	})

	printed, err := deviceLoginCLI(t, z, env, true)
	if err != nil || !strings.Contains(printed, "Logged in to "+b.Addr+" as "+harness.ZitadelSubject) {
		t.Fatalf("login --device: %v\n%s", err, printed)
	}
	if strings.Contains(printed, "device_code") {
		t.Errorf("login printed the device code:\n%s", printed)
	}
	if s := sessions(); len(s) != 1 {
		t.Fatalf("login --device cached %d sessions, want 1", len(s))
	} else if fi, err := os.Stat(s[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v %v, want mode 0600", s[0], err, fi)
	}
	stdout, stderr, code := harness.RunCLI(t, env, "creds", "readonly", "--format", "uri")
	if code != 0 || !strings.HasPrefix(stdout, "postgres") {
		t.Fatalf("creds with the device login: exit %d, stderr %s", code, stderr)
	}
	b.Track(strings.TrimSpace(stdout))
	conn, err := connectPG(t.Context(), strings.TrimSpace(stdout))
	if err != nil {
		t.Fatalf("connect with the issued credential: %v", err)
	}
	_ = conn.Close(t.Context())
	if leases := d.Store.Leases(t); len(leases) != 1 || leases[0].Subject != harness.ZitadelSubject {
		t.Errorf("leases = %+v, want one for %s", leases, harness.ZitadelSubject)
	}

	// The device login refreshes like the code flow's: an expired ID token
	// is renewed with the refresh token the device grant gave.
	var s map[string]any
	raw, _ := os.ReadFile(sessions()[0])
	if err := json.Unmarshal(raw, &s); err != nil || !nonEmpty(s["refresh_token"]) || s["issuer_name"] != "zitadel" {
		t.Fatalf("session file: %v %v", err, s)
	}
	oldID := s["id_token"]
	s["expiry"] = time.Now().Add(-time.Minute).Format(time.RFC3339)
	raw, _ = json.Marshal(s)
	if err := os.WriteFile(sessions()[0], raw, 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = harness.RunCLI(t, env, "creds", "readonly", "--format", "uri")
	if code != 0 {
		t.Fatalf("creds after the device login's ID token expired: exit %d, stderr %s", code, stderr)
	}
	b.Track(strings.TrimSpace(stdout))
	raw, _ = os.ReadFile(sessions()[0])
	s = nil
	if err := json.Unmarshal(raw, &s); err != nil || s["id_token"] == oldID || !nonEmpty(s["id_token"]) {
		t.Errorf("the expired ID token was not refreshed: %v", err)
	}
	if stdout, stderr, code := harness.RunCLI(t, env, "logout"); code != 0 || !strings.Contains(stdout, "Logged out") {
		t.Errorf("logout: exit %d, %s %s", code, stdout, stderr)
	}

	t.Run("Interrupted", func(t *testing.T) {
		printed, err := deviceLoginCLI(t, z, env, os.Interrupt)
		if err == nil || !strings.Contains(printed, "login cancelled") {
			t.Errorf("login --device interrupted: %v\n%s", err, printed)
		}
		if len(sessions()) != 0 {
			t.Errorf("an interrupted login cached a session")
		}
	})

	t.Run("Expired", func(t *testing.T) {
		t.Parallel()
		short := harness.StartZitadelOP(t, 2*time.Second)
		d := harness.NewDeployment(t)
		b := harness.StartBroker(t, zitadelConfig(d, short), d.Env()...)
		home := t.TempDir()
		env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
			"CREDBROKER_ADDR=" + b.Addr, "CREDBROKER_TOKEN=", "CREDBROKER_TOKEN_FILE="}
		printed, err := deviceLoginCLI(t, short, env, nil)
		if err == nil || !strings.Contains(printed, "the device code expired before the login was approved") ||
			!strings.Contains(printed, "expired_token") {
			t.Errorf("an expired device code: %v\n%s", err, printed)
		}
	})
}

// deviceLoginCLI runs `credbroker login --device` with env, reads the
// verification URI and user code it prints, and plays the person at the
// OP: approving when allow is true, denying when false, doing nothing when
// nil; when allow is a signal, it sends login that signal once login is
// waiting. It returns what login printed on stderr and how it exited.
func deviceLoginCLI(t *testing.T, z *harness.ZitadelOP, env []string, allow any) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), "login", "--device")
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stderr)
	var shown []string // the verification URI, then the user code
	for len(shown) < 2 && sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if v, ok := strings.CutPrefix(sc.Text(), "  "); ok {
			shown = append(shown, v)
		}
	}
	if len(shown) < 2 || shown[0] != z.Issuer+"device" {
		_ = cmd.Wait()
		t.Fatalf("login --device printed no verification URI and user code:\n%s", out.String())
	}
	// The line after the code names verification_uri_complete.
	complete := ""
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if sc.Text() == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(sc.Text(), "(or open "); ok {
			complete, _, _ = strings.Cut(rest, ",")
		}
		break
	}
	if want := shown[0] + "?user_code=" + shown[1]; complete != want {
		t.Errorf("login --device printed verification_uri_complete %q, want %q:\n%s", complete, want, out.String())
	}
	if sig, ok := allow.(os.Signal); ok {
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Waiting until") {
				break
			}
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
	}
	if a, ok := allow.(bool); ok {
		// The person opens the complete URI when approving, the plain one
		// (and types the code) when denying.
		uri := shown[0]
		if a {
			uri = complete
		}
		page := z.Device(t, uri, shown[1], harness.ZitadelUser, harness.ZitadelPassword, a)
		if !strings.Contains(page, "Device authorization") {
			t.Errorf("the OP's device confirmation said: %s", page)
		}
	}
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
	}
	return out.String(), cmd.Wait()
}
