package external_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/external"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/secret"
)

// logBuffer collects a driver's log records, safe for the program's output
// goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type probe struct {
	d    *external.Driver
	log  *logBuffer
	path string
	// envFile is where the program writes its environment at start.
	envFile string
}

// setup returns the driver of the probe program, whose admin password is
// adminPassword, closed when the test ends. edit changes its Config.
func setup(t *testing.T, edit func(*external.Config)) *probe {
	t.Helper()
	path, sum := program(t, "probe")
	pr := &probe{log: &logBuffer{}, path: path, envFile: filepath.Join(t.TempDir(), "env")}
	t.Setenv("PROBE_TEST_ADMIN_PASSWORD", adminPassword)
	cfg := external.Config{
		Name:        "probe-test",
		Command:     []string{path, pr.envFile},
		SHA256:      sum,
		Env:         map[string]secret.Ref{"PROBE_ADMIN": secret.EnvRef("PROBE_TEST_ADMIN_PASSWORD")},
		Logger:      slog.New(slog.NewTextHandler(pr.log, nil)),
		RestartMin:  20 * time.Millisecond,
		RestartMax:  200 * time.Millisecond,
		StopTimeout: 2 * time.Second,
		SocketDir:   t.TempDir(),
	}
	if edit != nil {
		edit(&cfg)
	}
	d, err := external.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	pr.d = d
	return pr
}

const adminPassword = "probe-admin-Secret-9f3a"

const probeConnection = "password: env:PROBE_ADMIN\n"

// open parses conn and opens the plugin; closed when the test ends. The
// plugins.Plugin is the *external.Plugin in the sanitizing decorator, as
// plugins.Open returns it to the broker.
func (pr *probe) open(t *testing.T, conn string) (plugins.Plugin, *external.Plugin) {
	t.Helper()
	c, err := pr.d.ParseConnection(plugintest.Decoder(conn))
	if err != nil {
		t.Fatalf("ParseConnection: %v", err)
	}
	p, err := pr.d.Open(t.Context(), c)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return plugins.Sanitized(p), p.(*external.Plugin)
}

func (pr *probe) role(t *testing.T, src string) any {
	t.Helper()
	r, _, err := pr.d.ParseRole(plugintest.Decoder(src))
	if err != nil {
		t.Fatalf("ParseRole: %v", err)
	}
	return r
}

// env reads the environment the program wrote at its last start.
func (pr *probe) env(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(pr.envFile)
	if err != nil {
		t.Fatalf("read the program's environment: %v", err)
	}
	env := map[string]string{}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "="); ok {
			env[k] = v
		}
	}
	return env
}

func TestHandshake(t *testing.T) {
	pr := setup(t, nil)
	if err := pr.d.Handshake(t.Context()); err != nil {
		t.Fatalf("Handshake: %v", err)
	}
	if got := pr.d.Name(); got != "probe" {
		t.Errorf("Name = %q, want probe", got)
	}
	if got := pr.d.UsernameLimit(); got != 40 {
		t.Errorf("UsernameLimit = %d, want 40", got)
	}
	if got := pr.d.Describe().Env; !slices.Equal(got, []string{"PROBE_USER", "PROBE_PASSWORD"}) {
		t.Errorf("Describe().Env = %v", got)
	}
	if !strings.Contains(pr.log.String(), "probe: starting") {
		t.Errorf("the program's output is not in the log:\n%s", pr.log)
	}
}

func TestParse(t *testing.T) {
	pr := setup(t, nil)
	tests := map[string]struct {
		role bool
		src  string
		want []string // substrings of the error; none: valid
	}{
		"ConnectionValid":       {src: probeConnection},
		"ConnectionUnknownKey":  {src: probeConnection + "colour: blue\n", want: []string{"field colour not found"}},
		"ConnectionInline":      {src: "password: hunter2\n", want: []string{"secrets must not be written inline"}},
		"ConnectionMissing":     {src: "", want: []string{"password: required"}},
		"RoleValid":             {role: true, src: "grant: read\n"},
		"RoleBadValue":          {role: true, src: "grant: all\n", want: []string{`grant: "all" is not`}},
		"RoleUnknownKeys":       {role: true, src: "grant: read\nx: 1\ny: 2\n", want: []string{"field x not found", "field y not found"}},
		"RoleWrongType":         {role: true, src: "grant: [a, b]\n", want: []string{"cannot unmarshal"}},
		"RoleAliasOutsideScope": {role: true, src: "&g grant: read\n", want: nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var dec plugins.Decoder
			if tc.src != "" {
				dec = plugintest.Decoder(tc.src)
			}
			var err error
			if tc.role {
				_, _, err = pr.d.ParseRole(dec)
			} else {
				_, err = pr.d.ParseConnection(dec)
			}
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "line ") {
				t.Errorf("error %q holds a line number of the section, not of the config file", err)
			}
		})
	}
	_, warnings, err := pr.d.ParseRole(plugintest.Decoder("grant: write\n"))
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "write") {
		t.Errorf("ParseRole(grant: write) = %v, %v; want one warning", warnings, err)
	}
}

func TestCalls(t *testing.T) {
	pr := setup(t, nil)
	p, raw := pr.open(t, probeConnection)
	ctx := t.Context()
	read := pr.role(t, "grant: read\n")
	if !raw.ConnectHTTP1() {
		t.Error("calls to an SDK program do not use Connect over HTTP/1.1, which it offers")
	}

	if err := p.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := p.CheckRole(ctx, read); err != nil {
		t.Errorf("CheckRole: %v", err)
	}
	if w := p.(plugins.Warner).Warnings(ctx); !slices.Equal(w, []string{"probe keeps its users in memory"}) {
		t.Errorf("Warnings = %q", w)
	}
	username := plugins.NewUsername("calls", pr.d.UsernameLimit())
	password := plugins.NewPassword()
	expires := time.Now().Add(time.Hour).Truncate(time.Second)
	resp, err := p.Create(ctx, plugins.CreateRequest{Username: username, Password: password, ExpiresAt: expires, Role: "r", Spec: read})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	c := resp.Credential
	if c.Username != username || c.Password.Reveal() != password.Reveal() || c.Env["PROBE_PASSWORD"].Reveal() != password.Reveal() || c.Fields["grant"] != "read" || !strings.Contains(c.URI.Reveal(), password.Reveal()) {
		t.Errorf("Create returned %+v", c)
	}
	if string(resp.State) != "grant=read" {
		t.Errorf("State = %q, want grant=read", resp.State)
	}
	users, err := p.ListManaged(ctx)
	if err != nil || len(users) != 1 || users[0].Username != username || users[0].CreatedAt.IsZero() {
		t.Errorf("ListManaged = %+v, %v", users, err)
	}
	renewed, err := p.Renew(ctx, plugins.RenewRequest{Username: username, Role: "r", State: resp.State, ExpiresAt: expires.Add(time.Hour)})
	if err != nil || string(renewed.State) != "renewed;grant=read" {
		t.Errorf("Renew (role gone) = %q, %v", renewed.State, err)
	}
	if _, err := p.Revoke(ctx, plugins.RevokeRequest{Username: username, Role: "r", State: renewed.State}); err != nil {
		t.Errorf("Revoke: %v", err)
	}
	if users, err := p.ListManaged(ctx); err != nil || len(users) != 0 {
		t.Errorf("ListManaged after Revoke = %+v, %v", users, err)
	}
	if _, err := p.Create(ctx, plugins.CreateRequest{Username: username, Password: password, Spec: struct{}{}}); err == nil || !strings.Contains(err.Error(), "want *external.Role") {
		t.Errorf("Create with a spec ParseRole did not return = %v", err)
	}

	t.Run("UnavailableTravels", func(t *testing.T) {
		_, err := p.Create(ctx, plugins.CreateRequest{Username: plugins.NewUsername("x", 40), Password: plugins.NewPassword(), Spec: pr.role(t, "grant: down\n")})
		if !errors.Is(err, plugins.ErrUnavailable) {
			t.Errorf("Create on a backend that is down = %v, want ErrUnavailable", err)
		}
		if err := p.CheckRole(ctx, pr.role(t, "grant: down\n")); !errors.Is(err, plugins.ErrUnavailable) {
			t.Errorf("CheckRole = %v, want ErrUnavailable", err)
		}
	})
	t.Run("ErrorsAreSanitized", func(t *testing.T) {
		pw := plugins.NewPassword()
		_, err := p.Create(ctx, plugins.CreateRequest{Username: plugins.NewUsername("x", 40), Password: pw, Spec: pr.role(t, "grant: leak\n")})
		if err == nil {
			t.Fatal("Create with grant: leak succeeded")
		}
		if strings.Contains(err.Error(), pw.Reveal()) || strings.Contains(err.Error(), adminPassword) {
			t.Errorf("the error quotes a password: %v", err)
		}
		if !strings.Contains(err.Error(), secret.Redacted) {
			t.Errorf("the error %q shows no redaction", err)
		}
	})
	t.Run("Deadline", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := p.Check(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Check with a canceled context = %v, want context.Canceled", err)
		}
	})
}

func TestOpenFailure(t *testing.T) {
	pr := setup(t, nil)
	c, err := pr.d.ParseConnection(plugintest.Decoder(probeConnection + "fail_open: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = plugins.Open(t.Context(), pr.d, c)
	if !errors.Is(err, plugins.ErrUnavailable) {
		t.Errorf("Open = %v, want ErrUnavailable", err)
	}
	if err != nil && strings.Contains(err.Error(), adminPassword) {
		t.Errorf("Open's error quotes the env's secret: %v", err)
	}

	pr = setup(t, func(c *external.Config) { c.Env["PROBE_MISSING"] = secret.EnvRef("PROBE_TEST_NOT_SET") })
	c, err = pr.d.ParseConnection(plugintest.Decoder(probeConnection))
	if err != nil {
		t.Fatal(err)
	}
	if _, err = plugins.Open(t.Context(), pr.d, c); err == nil || !strings.Contains(err.Error(), "env.PROBE_MISSING") {
		t.Errorf("Open with an env that does not resolve = %v, want an error naming env.PROBE_MISSING", err)
	}
}

// TestEnvironment shows what the program sees: the backend's env and the
// two protocol variables, nothing of the broker's environment; the
// validation instance not even the env.
func TestEnvironment(t *testing.T) {
	t.Setenv("CREDBROKER_TEST_BROKER_ONLY", "the broker's own secret")
	pr := setup(t, nil)
	if err := pr.d.Handshake(t.Context()); err != nil {
		t.Fatal(err)
	}
	validation := pr.env(t)
	if got := slices.Sorted(maps.Keys(validation)); !slices.Equal(got, []string{"CREDBROKER_PLUGIN_PROTOCOL", "CREDBROKER_PLUGIN_SOCKET"}) {
		t.Errorf("the validation instance's environment holds %v, want the protocol variables only", got)
	}
	_ = pr.d.Close()

	pr.open(t, probeConnection)
	env := pr.env(t)
	if got := slices.Sorted(maps.Keys(env)); !slices.Equal(got, []string{"CREDBROKER_PLUGIN_PROTOCOL", "CREDBROKER_PLUGIN_SOCKET", "PROBE_ADMIN"}) {
		t.Errorf("the program's environment holds %v, want the backend's env and the protocol variables", got)
	}
	if env["PROBE_ADMIN"] != adminPassword {
		t.Errorf("PROBE_ADMIN = %q, want the resolved reference", env["PROBE_ADMIN"])
	}
	if env["CREDBROKER_PLUGIN_PROTOCOL"] != "credbroker.plugin.v1.PluginService" {
		t.Errorf("CREDBROKER_PLUGIN_PROTOCOL = %q", env["CREDBROKER_PLUGIN_PROTOCOL"])
	}

	t.Run("SocketIsPrivate", func(t *testing.T) {
		sock := env["CREDBROKER_PLUGIN_SOCKET"]
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("the socket's mode is %v, want a socket with 0600", fi.Mode())
		}
		di, err := os.Stat(filepath.Dir(sock))
		if err != nil {
			t.Fatal(err)
		}
		if di.Mode().Perm() != 0o700 {
			t.Errorf("the socket's directory has mode %v, want 0700", di.Mode().Perm())
		}
	})
}

func TestChecksumMismatch(t *testing.T) {
	wrong := strings.Repeat("ab", 32)
	pr := setup(t, func(c *external.Config) { c.SHA256 = wrong })
	err := pr.d.Handshake(t.Context())
	var ce *external.ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("Handshake = %v, want a *ChecksumError", err)
	}
	if real := fileSum(t, pr.path); ce.Want != wrong || ce.Got != real || !strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), real) {
		t.Errorf("the error %q does not name the expected %s and the actual %s", err, wrong, real)
	}
	if _, err := pr.d.ParseConnection(plugintest.Decoder(probeConnection)); !errors.As(err, &ce) {
		t.Errorf("ParseConnection = %v, want a *ChecksumError", err)
	}
}

// TestChecksumBeforeEveryStart replaces the program after it started: the
// restart after it dies is refused, and calls stay unavailable.
func TestChecksumBeforeEveryStart(t *testing.T) {
	src, sum := program(t, "probe")
	copyPath := filepath.Join(t.TempDir(), "probe")
	copyFile(t, src, copyPath)
	pr := setup(t, func(c *external.Config) {
		c.Command[0] = copyPath
		c.SHA256 = sum
	})
	p, raw := pr.open(t, probeConnection)
	if err := p.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	other, _ := program(t, "grpconly")
	copyFile(t, other, copyPath) // the binary changes under the running program
	killAndWaitDown(t, raw)
	waitFor(t, 5*time.Second, "a restart refused for the checksum", func() bool {
		return strings.Contains(pr.log.String(), "its SHA-256 is")
	})
	if err := raw.Check(t.Context()); !errors.Is(err, plugins.ErrUnavailable) {
		t.Errorf("Check with the program refused = %v, want ErrUnavailable", err)
	} else if !strings.Contains(err.Error(), "SHA-256") {
		t.Errorf("Check's error %q does not say why the program is down", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	tmp := to + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

func TestWrongProtocol(t *testing.T) {
	path, sum := program(t, "grpconly")
	pr := setup(t, func(c *external.Config) {
		c.Command = []string{path, "-protocol=99"}
		c.SHA256 = sum
	})
	err := pr.d.Handshake(t.Context())
	var pe *external.ProtocolError
	if !errors.As(err, &pe) || pe.Got != 99 {
		t.Fatalf("Handshake = %v, want a *ProtocolError for version 99", err)
	}
	if !strings.Contains(err.Error(), "99") || !strings.Contains(err.Error(), "[1]") {
		t.Errorf("the error %q does not name both versions", err)
	}
	if pr.d.Name() != "" {
		t.Errorf("Name = %q for a program that failed the handshake", pr.d.Name())
	}
}

// TestGRPCOnly runs a program that serves gRPC over HTTP/2 only, as one
// written without the SDK may: the broker stays with gRPC after the
// handshake.
func TestGRPCOnly(t *testing.T) {
	path, sum := program(t, "grpconly")
	pr := setup(t, func(c *external.Config) {
		c.Command = []string{path}
		c.SHA256 = sum
	})
	if got := pr.d.Name(); got != "grpconly" {
		t.Fatalf("Name = %q, want grpconly", got)
	}
	c, err := pr.d.ParseConnection(plugintest.Decoder("{}"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pr.d.Open(t.Context(), c)
	if err == nil {
		t.Cleanup(func() { _ = p.Close() })
		err = p.Check(t.Context())
		if p.(*external.Plugin).ConnectHTTP1() {
			t.Error("calls use Connect over HTTP/1.1, which the program did not offer")
		}
	}
	if err != nil {
		t.Errorf("Open and Check on a gRPC-only program: %v", err)
	}
}

func TestNotAProgram(t *testing.T) {
	pr := setup(t, func(c *external.Config) {
		c.Command = []string{"/bin/sh", "-c", "echo I am not a plugin >&2; exit 3"}
		c.SHA256 = fileSum(t, "/bin/sh")
	})
	err := pr.d.Handshake(t.Context())
	if err == nil || !strings.Contains(err.Error(), "exited before the handshake") || !strings.Contains(err.Error(), "I am not a plugin") {
		t.Errorf("Handshake = %v, want the exit and the program's last output", err)
	}
}

// killAndWaitDown kills the running program with SIGKILL and waits until
// the plugin sees it down.
func killAndWaitDown(t *testing.T, p *external.Plugin) {
	t.Helper()
	pid := p.PID()
	if pid == 0 {
		t.Fatal("the program does not run")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	waitFor(t, 5*time.Second, "the plugin to see the program down", func() bool { return p.PID() != pid })
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting %v for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRestart kills the program with SIGKILL: calls answer unavailable
// while it is down, and work again once the supervisor started it again.
func TestRestart(t *testing.T) {
	pr := setup(t, func(c *external.Config) {
		// A first pause long enough to see the program down.
		c.RestartMin, c.RestartMax = 300*time.Millisecond, time.Second
	})
	_, raw := pr.open(t, probeConnection)
	ctx := t.Context()
	if err := raw.Check(ctx); err != nil {
		t.Fatal(err)
	}
	old := raw.PID()
	killAndWaitDown(t, raw)
	err := raw.Check(ctx)
	if !errors.Is(err, plugins.ErrUnavailable) {
		t.Fatalf("Check while the program is down = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "killed") {
		t.Errorf("the error %q does not say the program was killed", err)
	}
	waitFor(t, 10*time.Second, "the program to run again", func() bool { return raw.Check(ctx) == nil })
	if pid := raw.PID(); pid == 0 || pid == old {
		t.Errorf("PID after the restart = %d (was %d)", pid, old)
	}
	read := pr.role(t, "grant: read\n")
	if _, err := raw.Create(ctx, plugins.CreateRequest{Username: plugins.NewUsername("r", 40), Password: plugins.NewPassword(), Spec: read}); err != nil {
		t.Errorf("Create after the restart: %v (the program must be opened again)", err)
	}
	if !strings.Contains(pr.log.String(), "the plugin program is back") {
		t.Errorf("the log does not record the restart:\n%s", pr.log)
	}
}

// TestClose shows Close stopping the program gracefully and removing the
// socket's directory, and the validation instance stopping when idle.
func TestClose(t *testing.T) {
	pr := setup(t, func(c *external.Config) { c.IdleTimeout = 100 * time.Millisecond })
	_, raw := pr.open(t, probeConnection)
	sock := pr.env(t)["CREDBROKER_PLUGIN_SOCKET"]
	pid := raw.PID()
	start := time.Now()
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v: the program did not exit on SIGTERM", took)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the program %d still exists after Close: %v", pid, err)
	}
	if _, err := os.Stat(filepath.Dir(sock)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket's directory is still there: %v", err)
	}
	if err := raw.Check(t.Context()); err == nil {
		t.Error("Check after Close succeeded")
	}

	if err := pr.d.Handshake(t.Context()); err != nil {
		t.Fatal(err)
	}
	vpid := pr.d.ValidatorPID()
	if vpid == 0 {
		t.Fatal("no validation instance")
	}
	waitFor(t, 5*time.Second, "the idle validation instance to stop", func() bool { return pr.d.ValidatorPID() == 0 })
	waitFor(t, 5*time.Second, "the idle validation instance to exit", func() bool { return errors.Is(syscall.Kill(vpid, 0), syscall.ESRCH) })
}

func TestConfigValidate(t *testing.T) {
	tests := map[string]struct {
		cfg  external.Config
		want []string
	}{
		"Empty": {external.Config{}, []string{"command: required", "sha256: required"}},
		"Relative": {external.Config{Command: []string{"bin/probe"}, SHA256: strings.Repeat("0", 64)},
			[]string{"command[0]: \"bin/probe\" is not an absolute path"}},
		"BadSum": {external.Config{Command: []string{"/bin/probe"}, SHA256: "abc"},
			[]string{"sha256: \"abc\" is not a hex SHA-256"}},
		"BadEnv": {external.Config{Command: []string{"/bin/probe"}, SHA256: strings.Repeat("A", 64),
			Env: map[string]secret.Ref{"1X": secret.EnvRef("Y"), "CREDBROKER_PLUGIN_SOCKET": secret.EnvRef("Y"), "OK": {}}},
			[]string{"env.1X: not a variable name", "env.CREDBROKER_PLUGIN_SOCKET: CREDBROKER_PLUGIN_… is reserved", "env.OK: want a secret reference"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := external.New(tc.cfg)
			if err == nil {
				t.Fatal("New accepted the config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			var fe *external.FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %v holds no *FieldError", err)
			}
		})
	}
}

// groupMembers returns the processes whose process group is pgid.
func groupMembers(t *testing.T, pgid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var pids []int
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …; comm may hold blanks, so count from ')'.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) > 2 && fields[2] == fmt.Sprint(pgid) && fields[0] != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestKillTakesTheGroup shows that what a program started dies with it:
// the program runs a child, is killed with SIGKILL, and the child goes too.
func TestKillTakesTheGroup(t *testing.T) {
	path, _ := program(t, "probe")
	pr := setup(t, func(c *external.Config) {
		c.Command = []string{"/bin/sh", "-c", `/bin/sleep 300 & exec "$0" "$1"`, path, filepath.Join(t.TempDir(), "env")}
		c.SHA256 = fileSum(t, "/bin/sh")
		c.RestartMin, c.RestartMax = time.Minute, time.Minute // no restart during the test
	})
	_, raw := pr.open(t, probeConnection)
	pid := raw.PID()
	if n := len(groupMembers(t, pid)); n != 2 {
		t.Fatalf("the program's group has %d processes, want the program and its sleep", n)
	}
	killAndWaitDown(t, raw)
	waitFor(t, 5*time.Second, "the program's child to be gone", func() bool { return len(groupMembers(t, pid)) == 0 })
}
