package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/test/harness"
)

// TestLoginTokenSources: the CLI trims the whitespace around a token from
// CREDBROKER_TOKEN, a token file or --token-command (the token of a command
// that ends its output with a newline, or pads it with spaces, works), and a
// token that still is not one JWT is a local error that names where it came
// from, not "net/http: invalid header field value".
func TestLoginTokenSources(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "5m", "10m", "")
	token := d.Issuer.Token(t, appSubject, nil, 30*time.Minute)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	padded := file("padded", "\n  "+token+" \r\n\n")
	twoLines := file("two-lines", token+"\n"+token+"\n")
	notJWT := file("not-jwt", "  opaque-access-token\n")
	notBase64URL := file("not-base64url", strings.Replace(token, ".", ".+/", 1)+"\n")
	run := func(env []string, args ...string) (string, string, int) {
		env = append([]string{"CREDBROKER_ADDR=" + b.Addr, "CREDBROKER_TOKEN=", "CREDBROKER_TOKEN_FILE="}, env...)
		return harness.RunCLI(t, env, args...)
	}

	t.Run("Trimmed", func(t *testing.T) {
		for name, tc := range map[string]struct {
			env  []string
			args []string
		}{
			"Env":                 {env: []string{"CREDBROKER_TOKEN= " + token + "\n"}},
			"File":                {env: []string{"CREDBROKER_TOKEN_FILE=" + padded}},
			"CommandNewline":      {args: []string{"--token-command", "echo " + token}},
			"CommandSpacesAround": {args: []string{"--token-command", "printf '  %s  \\n\\n' " + token}},
			"CommandCat":          {args: []string{"--token-command", "cat " + padded}},
		} {
			stdout, stderr, code := run(tc.env, append(tc.args, "roles")...)
			if code != 0 || !strings.Contains(stdout, "readonly") {
				t.Errorf("%s: roles: exit %d, stdout %q, stderr %s", name, code, stdout, stderr)
			}
		}
	})

	t.Run("Refused", func(t *testing.T) {
		for name, tc := range map[string]struct {
			env        []string
			args       []string
			wantSource string
			wantReason string
		}{
			"EnvTwoParts": {env: []string{"CREDBROKER_TOKEN=" + token[:strings.LastIndex(token, ".")]},
				wantSource: "from CREDBROKER_TOKEN", wantReason: "has 2 part(s)"},
			"EnvInnerSpace": {env: []string{"CREDBROKER_TOKEN=Bearer " + token},
				wantSource: "from CREDBROKER_TOKEN", wantReason: "has whitespace inside it"},
			"FileTwoLines": {env: []string{"CREDBROKER_TOKEN_FILE=" + twoLines},
				wantSource: "from token file " + twoLines, wantReason: "has a line break inside it"},
			"FileNotJWT": {env: []string{"CREDBROKER_TOKEN_FILE=" + notJWT},
				wantSource: "from token file " + notJWT, wantReason: "is not a JWT"},
			"CommandTwoLines": {args: []string{"--token-command", "cat " + twoLines},
				wantSource: `from --token-command "cat ` + twoLines + `"`, wantReason: "has a line break inside it"},
			"CommandNotBase64URL": {args: []string{"--token-command", "cat " + notBase64URL},
				wantSource: "from --token-command", wantReason: "which is not base64url"},
			"CommandEmpty": {args: []string{"--token-command", "echo"},
				wantSource: "from --token-command", wantReason: "is empty"},
		} {
			_, stderr, code := run(tc.env, append(tc.args, "creds", "readonly")...)
			if code != 1 || !strings.Contains(stderr, tc.wantSource) || !strings.Contains(stderr, tc.wantReason) {
				t.Errorf("%s: exit %d, stderr %q; want exit 1 and an error naming %q that says %q", name, code, stderr, tc.wantSource, tc.wantReason)
			}
			if strings.Contains(stderr, "invalid header") || strings.Contains(stderr, token[20:40]) {
				t.Errorf("%s: the error is net/http's or shows the token: %s", name, stderr)
			}
		}
	})
}

// hydraConfig is a broker config with the deployment's store and backend and
// two issuers: d.Issuer ("test") and h by OIDC discovery ("hydra", its
// audiences credbroker and those of extraAud), with extra appended to the
// hydra issuer's block (login:, say); sections follow.
func hydraConfig(d *harness.Deployment, h *harness.Hydra, extraAud, extra, sections string) string {
	return d.ConfigWithIssuers(fmt.Sprintf(`  - name: hydra
    issuer: %s
    audiences: [credbroker%s]
    discovery: true
    algorithms: [RS256]
%s`, h.Issuer, extraAud, extra), readonlyRole(d)+sections)
}

// readonlyRole is the roles: section of the identity tests: "readonly", a
// member of the deployment's read group.
func readonlyRole(d *harness.Deployment) string {
	return fmt.Sprintf(`roles:
  - name: readonly
    backend: %s
    owner: e2e
    default_ttl: 5m
    max_ttl: 10m
    postgres:
      member_of: [%s]
`, harness.BackendName, d.Backend.ReadGroup)
}

// TestLoginHydraWorkload: a broker trusts a real Ory Hydra by OIDC
// discovery, and a workload's client-credentials access token (a JWT whose
// sub is the OAuth client id) gets a credential from the CLI; another
// client's token is denied, and a token for another audience is refused.
func TestLoginHydraWorkload(t *testing.T) {
	t.Parallel()
	h := harness.StartHydra(t)
	d := harness.NewDeployment(t)
	workload := h.CreateClient(t, map[string]any{
		"client_name": "orders-batch", "grant_types": []string{"client_credentials"},
		"audience": []string{"credbroker", "elsewhere"}, "token_endpoint_auth_method": "client_secret_basic",
		"access_token_strategy": "jwt",
	})
	other := h.CreateClient(t, map[string]any{
		"grant_types": []string{"client_credentials"}, "audience": []string{"credbroker"},
		"access_token_strategy": "jwt",
	})
	b := harness.StartBroker(t, hydraConfig(d, h, "", "", fmt.Sprintf(`policies:
  - name: orders-batch
    issuer: hydra
    subject: %q
    roles: [readonly]
`, workload.ID)), d.Env()...)
	if !strings.Contains(b.Logs(), `"issuer":"hydra"`) {
		t.Errorf("the broker did not log loading hydra's keys:\n%s", b.Logs())
	}

	token := h.ClientCredentialsToken(t, workload, "credbroker", "")
	stdout, stderr, code := b.CLI(t, token, "creds", "readonly", "--format", "uri")
	if code != 0 || !strings.HasPrefix(stdout, "postgres") {
		t.Fatalf("creds with a Hydra client-credentials token: exit %d, stderr %s", code, stderr)
	}
	conn, err := connectPG(t.Context(), strings.TrimSpace(stdout))
	if err != nil {
		t.Fatalf("connect with the issued credential: %v", err)
	}
	_ = conn.Close(t.Context())
	leases := d.Store.Leases(t)
	if len(leases) != 1 || leases[0].Subject != workload.ID {
		t.Errorf("leases = %+v, want one for subject %s", leases, workload.ID)
	}

	_, stderr, code = b.CLI(t, h.ClientCredentialsToken(t, other, "credbroker", ""), "creds", "readonly")
	if code != 1 || !strings.Contains(stderr, "permission_denied") {
		t.Errorf("another client's token: exit %d, stderr %s; want permission_denied", code, stderr)
	}
	_, stderr, code = b.CLI(t, h.ClientCredentialsToken(t, workload, "elsewhere", ""), "creds", "readonly")
	if code != 1 || !strings.Contains(stderr, "unauthenticated") {
		t.Errorf("a token for another audience: exit %d, stderr %s; want unauthenticated", code, stderr)
	}
}

// TestLoginHydraPerson: `credbroker login` against a real Ory Hydra. The
// broker publishes its login issuer at /v1/login-config; login runs the
// authorization code flow with PKCE on a loopback redirect (the test plays
// the browser, and the login and consent app through Hydra's admin API),
// caches the ID and refresh tokens in the user's config directory (0600 in
// a 0700 directory); client commands then use the cached ID token without
// any token given, refresh it when it has expired, and logout removes it.
func TestLoginHydraPerson(t *testing.T) {
	t.Parallel()
	h := harness.StartHydra(t)
	d := harness.NewDeployment(t)
	cli := h.CreateClient(t, map[string]any{
		"client_name": "credbroker-cli", "grant_types": []string{"authorization_code", "refresh_token"},
		"response_types": []string{"code"}, "scope": "openid offline_access email profile",
		"redirect_uris": []string{"http://127.0.0.1/callback"}, "token_endpoint_auth_method": "none",
	})
	b := harness.StartBroker(t, hydraConfig(d, h, ", "+cli.ID, fmt.Sprintf("    login:\n      client_id: %s\n", cli.ID), `policies:
  - name: people
    issuer: hydra
    subject: alice
    roles: [readonly]
`), d.Env()...)

	// The login config is public.
	res, err := http.Get(b.Addr + "/v1/login-config")
	if err != nil {
		t.Fatal(err)
	}
	var lc struct {
		Issuers []map[string]any `json:"issuers"`
	}
	err = json.NewDecoder(res.Body).Decode(&lc)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || len(lc.Issuers) != 1 || lc.Issuers[0]["name"] != "hydra" ||
		lc.Issuers[0]["issuer"] != h.Issuer || lc.Issuers[0]["client_id"] != cli.ID {
		t.Fatalf("GET /v1/login-config: HTTP %d %v %+v", res.StatusCode, err, lc)
	}

	home := t.TempDir()
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
		"CREDBROKER_ADDR=" + b.Addr, "CREDBROKER_TOKEN=", "CREDBROKER_TOKEN_FILE="}
	if _, stderr, code := harness.RunCLI(t, env, "creds", "readonly"); code != 1 || !strings.Contains(stderr, "run credbroker login") {
		t.Errorf("creds before login: exit %d, stderr %s; want a hint to run credbroker login", code, stderr)
	}
	if _, stderr, code := harness.RunCLI(t, env, "login", "--issuer", "nope", "--no-browser"); code != 2 || !strings.Contains(stderr, "one of hydra") {
		t.Errorf("login --issuer nope: exit %d, stderr %s; want a usage error naming hydra", code, stderr)
	}
	// Hydra v2.3.0 has no device authorization endpoint.
	if _, stderr, code := harness.RunCLI(t, env, "login", "--device"); code != 1 ||
		!strings.Contains(stderr, "issuer hydra ("+h.Issuer+") has no device_authorization_endpoint") {
		t.Errorf("login --device with Hydra: exit %d, stderr %s; want an error naming hydra and the missing endpoint", code, stderr)
	}

	// The person says no at the provider.
	printed, page, err := loginCLI(t, h, env, func(u string) *http.Response { return h.BrowseRejected(t, u) })
	if err == nil || !strings.Contains(printed, "the issuer refused the login: access_denied") || !strings.Contains(page, "login failed") {
		t.Errorf("a refused login: %v\n%s\nthe browser saw: %s", err, printed, page)
	}
	printed, page, err = loginCLI(t, h, env, func(u string) *http.Response {
		return h.Browse(t, u, "alice", map[string]any{"email": "alice@example.com"})
	})
	if err != nil || !strings.Contains(printed, "as alice@example.com (alice)") || !strings.Contains(page, "HTTP 200 credbroker: you are logged in") {
		t.Fatalf("login: %v\n%s\nthe browser saw: %s", err, printed, page)
	}
	sessions, _ := filepath.Glob(filepath.Join(home, "config", "credbroker", "sessions", "*.json"))
	if len(sessions) != 1 {
		t.Fatalf("login cached %d sessions, want 1", len(sessions))
	}
	for path, want := range map[string]os.FileMode{sessions[0]: 0o600, filepath.Dir(sessions[0]): 0o700, filepath.Join(home, "config", "credbroker"): 0o700} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, mode %v; want %v", path, err, fi.Mode().Perm(), want)
		}
	}

	creds := func(what string) {
		t.Helper()
		stdout, stderr, code := harness.RunCLI(t, env, "creds", "readonly", "--format", "uri")
		if code != 0 {
			t.Fatalf("creds %s: exit %d, stderr %s", what, code, stderr)
		}
		b.Track(strings.TrimSpace(stdout))
	}
	creds("with the cached login")
	if leases := d.Store.Leases(t); len(leases) != 1 || leases[0].Subject != "alice" {
		t.Errorf("leases = %+v, want one for alice", leases)
	}

	// An expired ID token is refreshed with the refresh token.
	var s map[string]any
	raw, _ := os.ReadFile(sessions[0])
	if err := json.Unmarshal(raw, &s); err != nil || !nonEmpty(s["refresh_token"]) || !nonEmpty(s["id_token"]) {
		t.Fatalf("session file: %v %v", err, s)
	}
	oldID := s["id_token"]
	s["expiry"] = time.Now().Add(-time.Minute).Format(time.RFC3339)
	raw, _ = json.Marshal(s)
	if err := os.WriteFile(sessions[0], raw, 0o600); err != nil {
		t.Fatal(err)
	}
	creds("after the ID token expired")
	raw, _ = os.ReadFile(sessions[0])
	s = nil
	if err := json.Unmarshal(raw, &s); err != nil || s["id_token"] == oldID || s["id_token"] == "" {
		t.Errorf("the expired ID token was not refreshed: %v", err)
	}
	if exp, err := time.Parse(time.RFC3339, fmt.Sprint(s["expiry"])); err != nil || !exp.After(time.Now()) {
		t.Errorf("refreshed expiry %v: %v", s["expiry"], err)
	}
	if len(d.Store.Leases(t)) != 2 {
		t.Errorf("the refreshed token did not get a credential")
	}

	// logout removes the cache.
	if stdout, stderr, code := harness.RunCLI(t, env, "logout"); code != 0 || !strings.Contains(stdout, "Logged out") {
		t.Errorf("logout: exit %d, %s %s", code, stdout, stderr)
	}
	if _, err := os.Stat(sessions[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after logout the session file is still there: %v", err)
	}
	if _, stderr, code := harness.RunCLI(t, env, "creds", "readonly"); code != 1 || !strings.Contains(stderr, "run credbroker login") {
		t.Errorf("creds after logout: exit %d, stderr %s", code, stderr)
	}
}

// loginCLI runs `credbroker login --no-browser` with env, reads the URL it
// prints, checks it is PKCE on a loopback redirect, has browse play the
// browser with it, and returns what login printed on stderr and how it
// exited, with the body the browser was shown last.
func loginCLI(t *testing.T, h *harness.Hydra, env []string, browse func(authURL string) *http.Response) (printed, page string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), "login", "--no-browser")
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
	authURL := ""
	for authURL == "" && sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if u, ok := strings.CutPrefix(sc.Text(), "  "); ok && strings.HasPrefix(u, h.Public+"/oauth2/auth?") {
			authURL = u
		}
	}
	if authURL == "" {
		_ = cmd.Wait()
		t.Fatalf("login printed no authorization URL:\n%s", out.String())
	}
	u, _ := url.Parse(authURL)
	if q := u.Query(); q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" ||
		!strings.HasPrefix(q.Get("redirect_uri"), "http://127.0.0.1:") || q.Get("state") == "" || q.Get("nonce") == "" {
		t.Errorf("the authorization request is not PKCE with state and nonce on a loopback redirect: %s", authURL)
	}
	res := browse(authURL)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	rest, _ := io.ReadAll(stderr)
	out.Write(rest)
	err = cmd.Wait()
	return out.String(), fmt.Sprintf("HTTP %d %s", res.StatusCode, body), err
}

// nonEmpty reports whether v, a value decoded from JSON, is a non-empty string.
func nonEmpty(v any) bool {
	s, ok := v.(string)
	return ok && s != ""
}
