package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins/plugintest"
)

// HydraVersion is the Ory Hydra release the tests run, built from the Go
// module proxy by `make hydra` into .bin/hydra-<version>.
const HydraVersion = "v2.3.0"

// HydraEnv names a prebuilt hydra binary to use instead of
// .bin/hydra-<HydraVersion>.
const HydraEnv = "CREDBROKER_TEST_HYDRA"

// hydraBuildTimeout bounds `make hydra` when a test has to build Hydra
// itself (a cold build on two busy cores takes several minutes).
const hydraBuildTimeout = 20 * time.Minute

// Hydra is an Ory Hydra (`hydra serve all --dev`, DSN=memory) started for a
// test on two loopback ports, killed when the test ends. Its access tokens
// are JWTs (strategies.access_token=jwt). Its login and consent URLs point
// nowhere: a test plays the login and consent app through the admin API
// ([Hydra.AcceptLogin], [Hydra.AcceptConsent]).
type Hydra struct {
	// Issuer is the issuer URL, http://127.0.0.1:PORT/ (the public port),
	// with the trailing slash Hydra puts in `iss`.
	Issuer string
	// Public is the public base URL (no trailing slash).
	Public string
	// Admin is the admin base URL (no trailing slash).
	Admin string
	// LoginURL and ConsentURL are the login and consent app URLs Hydra
	// redirects a browser to, with ?login_challenge= / ?consent_challenge=.
	LoginURL, ConsentURL string

	logs *syncBuffer
}

var hydraBin struct {
	once sync.Once
	path string
	err  error
}

// hydraBinary returns the path of the hydra binary: $CREDBROKER_TEST_HYDRA,
// else .bin/hydra-<HydraVersion> of this module. When it is missing the
// test is skipped, unless CREDBROKER_REQUIRE_SERVICES=1: then it is built
// with `make hydra`, once, under a lock other test processes wait on.
func hydraBinary(t testing.TB) string {
	t.Helper()
	hydraBin.once.Do(func() {
		if p := os.Getenv(HydraEnv); p != "" {
			hydraBin.path, hydraBin.err = filepath.Abs(p)
			return
		}
		root, err := moduleRoot()
		if err != nil {
			hydraBin.err = err
			return
		}
		hydraBin.path = filepath.Join(root, ".bin", "hydra-"+HydraVersion)
		if _, err := os.Stat(hydraBin.path); err == nil {
			return
		}
		if os.Getenv(plugintest.RequireServicesEnv) != "1" {
			hydraBin.err = fmt.Errorf("%s is not built (run `make hydra`, about 5 minutes once per machine)", hydraBin.path)
			return
		}
		hydraBin.err = buildHydra(root, hydraBin.path)
	})
	if hydraBin.err != nil {
		if os.Getenv(plugintest.RequireServicesEnv) == "1" {
			t.Fatalf("harness: hydra: %v", hydraBin.err)
		}
		t.Skipf("harness: hydra: %v", hydraBin.err)
	}
	return hydraBin.path
}

// moduleRoot is the directory of this module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the credbroker module")
	}
	return filepath.Dir(gomod), nil
}

// buildHydra runs `make hydra` in root holding an exclusive lock on
// .bin/hydra.lock, so test processes of several packages build it once.
func buildHydra(root, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(path), "hydra.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	if _, err := os.Stat(path); err == nil {
		return nil // another process built it while we waited
	}
	ctx, cancel := context.WithTimeout(context.Background(), hydraBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-C", root, "hydra")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("make hydra: %w\n%s", err, tail(out.String(), 40))
	}
	return nil
}

// StartHydra runs a Hydra of the test's own. The test is skipped when the
// hydra binary is not built, or fails under CREDBROKER_REQUIRE_SERVICES=1.
func StartHydra(t testing.TB) *Hydra {
	t.Helper()
	bin := hydraBinary(t)
	for attempt := 1; ; attempt++ {
		pub, adm := freePort(t), freePort(t)
		h := &Hydra{
			Issuer:     fmt.Sprintf("http://127.0.0.1:%d/", pub),
			Public:     fmt.Sprintf("http://127.0.0.1:%d", pub),
			Admin:      fmt.Sprintf("http://127.0.0.1:%d", adm),
			LoginURL:   "http://127.0.0.1:9/login",
			ConsentURL: "http://127.0.0.1:9/consent",
			logs:       &syncBuffer{},
		}
		cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out")
		cmd.Env = append(os.Environ(),
			"DSN=memory",
			"SERVE_PUBLIC_HOST=127.0.0.1", "SERVE_PUBLIC_PORT="+strconv.Itoa(pub),
			"SERVE_ADMIN_HOST=127.0.0.1", "SERVE_ADMIN_PORT="+strconv.Itoa(adm),
			"URLS_SELF_ISSUER="+h.Issuer,
			"URLS_LOGIN="+h.LoginURL, "URLS_CONSENT="+h.ConsentURL,
			"STRATEGIES_ACCESS_TOKEN=jwt",
			"SECRETS_SYSTEM="+RandomName("hydra-system-secret-"),
			"LOG_LEVEL=info",
		)
		cmd.Stdout, cmd.Stderr = h.logs, h.logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("harness: start hydra: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		err := h.waitReady(exited)
		if err == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
				if t.Failed() || os.Getenv(LogsEnv) == "1" {
					t.Logf("harness: hydra logs:\n%s", tail(h.logs.String(), 200))
				}
			})
			return h
		}
		_ = cmd.Process.Kill()
		<-exited
		if attempt == startAttempts {
			t.Fatalf("harness: hydra did not start: %v\n%s", err, tail(h.logs.String(), 60))
		}
	}
}

// waitReady polls the admin and public health endpoints until both answer.
func (h *Hydra) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-exited:
			return errors.New("hydra exited during start-up")
		default:
		}
		ok := true
		for _, u := range []string{h.Admin + "/health/ready", h.Public + "/health/ready"} {
			res, err := http.Get(u)
			if err != nil {
				ok = false
				break
			}
			res.Body.Close()
			ok = ok && res.StatusCode == http.StatusOK
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s", readyTimeout)
		}
		select {
		case <-exited:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// HydraClient is an OAuth 2.0 client registered in Hydra.
type HydraClient struct {
	ID, Secret string
}

// CreateClient registers an OAuth 2.0 client through the admin API; spec is
// the body of POST /admin/clients (grant_types, scope, audience,
// redirect_uris, token_endpoint_auth_method …). The client_id and
// client_secret Hydra chose are returned.
func (h *Hydra) CreateClient(t testing.TB, spec map[string]any) HydraClient {
	t.Helper()
	var out struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	h.admin(t, http.MethodPost, "/admin/clients", spec, http.StatusCreated, &out)
	return HydraClient{ID: out.ClientID, Secret: out.ClientSecret}
}

// ClientCredentialsToken gets an access token (a JWT) for c with the client
// credentials grant, asking for audience and scope.
func (h *Hydra) ClientCredentialsToken(t testing.TB, c HydraClient, audience, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if audience != "" {
		form.Set("audience", audience)
	}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequest(http.MethodPost, h.Public+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var out struct {
		AccessToken string `json:"access_token"`
	}
	h.do(t, req, http.StatusOK, &out)
	if out.AccessToken == "" {
		t.Fatal("harness: hydra: the token response has no access_token")
	}
	return out.AccessToken
}

// AcceptLogin accepts the login request of challenge as subject and
// returns the URL Hydra sends the browser to next.
func (h *Hydra) AcceptLogin(t testing.TB, challenge, subject string) string {
	t.Helper()
	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	h.admin(t, http.MethodPut, "/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(challenge),
		map[string]any{"subject": subject}, http.StatusOK, &out)
	return out.RedirectTo
}

// AcceptConsent grants every scope and audience the consent request of
// challenge asked for, adds idTokenClaims to the ID token, and returns the
// URL Hydra sends the browser to next.
func (h *Hydra) AcceptConsent(t testing.TB, challenge string, idTokenClaims map[string]any) string {
	t.Helper()
	var req struct {
		RequestedScope    []string `json:"requested_scope"`
		RequestedAudience []string `json:"requested_access_token_audience"`
	}
	h.admin(t, http.MethodGet, "/admin/oauth2/auth/requests/consent?consent_challenge="+url.QueryEscape(challenge), nil, http.StatusOK, &req)
	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	h.admin(t, http.MethodPut, "/admin/oauth2/auth/requests/consent/accept?consent_challenge="+url.QueryEscape(challenge),
		map[string]any{
			"grant_scope":                 req.RequestedScope,
			"grant_access_token_audience": req.RequestedAudience,
			"session":                     map[string]any{"id_token": idTokenClaims},
		}, http.StatusOK, &out)
	return out.RedirectTo
}

// Browse plays a browser and the login and consent app from authURL (an
// authorization request to Hydra) on: it follows redirects with a cookie
// jar, accepts the login as subject and the consent with idTokenClaims
// through the admin API, and stops at the first redirect that leaves Hydra
// and its login and consent app (the client's redirect_uri), which it
// requests and returns the response of. Fails the test when the flow does
// not get there.
func (h *Hydra) Browse(t testing.TB, authURL, subject string, idTokenClaims map[string]any) *http.Response {
	t.Helper()
	return h.browse(t, authURL, func(challenge string) string { return h.AcceptLogin(t, challenge, subject) }, idTokenClaims)
}

// BrowseRejected is [Hydra.Browse] with the login app refusing the login
// (access_denied): Hydra sends the browser to the client's redirect_uri
// with the error, and that response is returned.
func (h *Hydra) BrowseRejected(t testing.TB, authURL string) *http.Response {
	t.Helper()
	return h.browse(t, authURL, func(challenge string) string {
		var out struct {
			RedirectTo string `json:"redirect_to"`
		}
		h.admin(t, http.MethodPut, "/admin/oauth2/auth/requests/login/reject?login_challenge="+url.QueryEscape(challenge),
			map[string]any{"error": "access_denied", "error_description": "the test's login app said no"}, http.StatusOK, &out)
		return out.RedirectTo
	}, nil)
}

func (h *Hydra) browse(t testing.TB, authURL string, login func(challenge string) string, idTokenClaims map[string]any) *http.Response {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{
		Jar:           jar,
		Timeout:       callTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	next := authURL
	for range 20 {
		u, err := url.Parse(next)
		if err != nil {
			t.Fatalf("harness: hydra: bad redirect %q: %v", next, err)
		}
		switch {
		case strings.HasPrefix(next, h.LoginURL):
			next = login(u.Query().Get("login_challenge"))
			continue
		case strings.HasPrefix(next, h.ConsentURL):
			next = h.AcceptConsent(t, u.Query().Get("consent_challenge"), idTokenClaims)
			continue
		}
		res, err := browser.Get(next)
		if err != nil {
			t.Fatalf("harness: browser: GET %s: %v", u.Redacted(), err)
		}
		if !strings.HasPrefix(next, h.Public) {
			return res // the client's redirect_uri answered
		}
		loc := res.Header.Get("Location")
		body, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
		res.Body.Close()
		if loc == "" {
			t.Fatalf("harness: browser: GET %s: HTTP %d without a redirect: %s", u.Redacted(), res.StatusCode, body)
		}
		locURL, err := u.Parse(loc)
		if err != nil {
			t.Fatalf("harness: browser: bad Location %q: %v", loc, err)
		}
		next = locURL.String()
	}
	t.Fatalf("harness: browser: more than 20 redirects from %s", authURL)
	return nil
}

// admin calls the admin API with a JSON body (nil for none) and decodes a
// JSON answer into out, failing the test unless the status is want.
func (h *Hydra) admin(t testing.TB, method, path string, body any, want int, out any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.Admin+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	h.do(t, req, want, out)
}

func (h *Hydra) do(t testing.TB, req *http.Request, want int, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	res, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("harness: hydra: %s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != want {
		t.Fatalf("harness: hydra: %s %s: HTTP %d, want %d: %s", req.Method, req.URL.Path, res.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("harness: hydra: %s %s: %v: %s", req.Method, req.URL.Path, err, b)
		}
	}
}
