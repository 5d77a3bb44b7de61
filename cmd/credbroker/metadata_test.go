package main

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/plugins"
)

// describedDriver is a driver of a backend this binary does not have, with
// metadata: what a new backend's folder declares. It parses any mapping and
// opens nothing; only its declarations are under test here.
type describedDriver struct {
	name string
	md   plugins.Metadata
}

var _ plugins.Describer = describedDriver{}

func (d describedDriver) Name() string               { return d.name }
func (d describedDriver) UsernameLimit() int         { return 32 }
func (d describedDriver) Describe() plugins.Metadata { return d.md }
func (d describedDriver) ParseConnection(decode plugins.Decoder) (any, error) {
	var m map[string]any
	return m, decode(&m)
}
func (d describedDriver) ParseRole(decode plugins.Decoder) (any, []string, error) {
	var m map[string]any
	return m, nil, decode(&m)
}
func (d describedDriver) Open(context.Context, any) (plugins.Plugin, error) {
	return nil, errors.New("not opened in this test")
}

// withDrivers makes ds this binary's drivers until the test ends.
func withDrivers(t *testing.T, ds ...plugins.Driver) {
	saved := drivers
	drivers = ds
	t.Cleanup(func() { drivers = saved })
}

func TestClientLaunch(t *testing.T) {
	withDrivers(t,
		describedDriver{name: "queue", md: plugins.Metadata{Clients: []plugins.Client{
			{
				Command: "queue-cli",
				Args:    func(env map[string]string) []string { return []string{"--host", env["QUEUE_HOST"]} },
				Files: func(env map[string]string) map[string]string {
					return map[string]string{"queue-cli": "-P " + env["QUEUE_PASSWORD"]}
				},
			},
			{Command: "queue-sh"}, // no arguments
		}}},
		describedDriver{name: "bare"},
		describedDriver{name: "amq", md: plugins.Metadata{Shell: true, Clients: []plugins.Client{{Command: "amq-cli"}}}},
	)
	t.Setenv("SHELL", "/bin/test-shell")
	env := map[string]string{"QUEUE_HOST": "127.0.0.1", "QUEUE_PASSWORD": "pw"}
	onPath := func(names ...string) func(string) (string, error) {
		return func(cmd string) (string, error) {
			if slices.Contains(names, cmd) {
				return "/usr/bin/" + cmd, nil
			}
			return "", errors.New("not found")
		}
	}
	for name, tc := range map[string]struct {
		plugin string
		path   []string
		want   string // the argv joined by spaces, or the error
		files  map[string]string
	}{
		"FirstFound":      {plugin: "queue", path: []string{"queue-cli", "queue-sh"}, want: "queue-cli --host 127.0.0.1", files: map[string]string{"queue-cli": "-P pw"}},
		"SecondFound":     {plugin: "queue", path: []string{"queue-sh"}, want: "queue-sh"},
		"NoneOnPath":      {plugin: "queue", want: `no client of plugin "queue" is on PATH (looked for queue-cli, queue-sh)`},
		"NoClients":       {plugin: "bare", path: []string{"queue-cli"}, want: `no client to open for plugin "bare"`},
		"UnknownPlugin":   {plugin: "other", want: `no client to open for plugin "other"`},
		"RoleNotVisible":  {plugin: "", want: `no client to open for plugin ""`},
		"ShellFallback":   {plugin: "amq", want: "/bin/test-shell"},
		"ClientOverShell": {plugin: "amq", path: []string{"amq-cli"}, want: "amq-cli"},
	} {
		l, err := clientLaunch(tc.plugin, env, onPath(tc.path...))
		got := strings.Join(l.argv, " ")
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
		if !maps.Equal(l.files, tc.files) {
			t.Errorf("%s: files %v, want %v", name, l.files, tc.files)
		}
	}
}

// TestWriteOptionFiles: a client's option files land in a private directory
// only its owner can read, and a name that is not a plain file name is
// refused with nothing left behind.
func TestWriteOptionFiles(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dir, err := writeOptionFiles(map[string]string{"mosquitto_sub": "-P secret\n"})
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("option directory: %v, mode %v; want 0700", err, fi.Mode().Perm())
	}
	f := filepath.Join(dir, "mosquitto_sub")
	fi, err = os.Stat(f)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("option file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(f); string(b) != "-P secret\n" {
		t.Errorf("option file holds %q", b)
	}
	for _, bad := range []string{"../escape", "a/b", ".hidden", ""} {
		if _, err := writeOptionFiles(map[string]string{bad: "x"}); err == nil {
			t.Errorf("option file name %q was accepted", bad)
		}
	}
	if left, _ := os.ReadDir(os.Getenv("TMPDIR")); len(left) != 1 {
		t.Errorf("refused option files left directories behind: %v", left)
	}
}

// TestDevBackends: every driver's declared demo that prepares is written
// into the dev config as backend and role demo-<plugin>, which the broker
// parses; one whose service does not answer is skipped with a note, and the
// dev config's own plugin is not demonstrated twice.
func TestDevBackends(t *testing.T) {
	t.Setenv("CB_TEST_QUEUE_PASSWORD", "") // restored when the test ends
	prepared := 0
	withDrivers(t,
		describedDriver{name: "queue", md: plugins.Metadata{Demo: &plugins.Demo{Prepare: func(context.Context) (plugins.DemoBackend, error) {
			prepared++
			return plugins.DemoBackend{
				// A flow mapping over two lines, as a plugin may write it.
				Connection: "{addr: \"127.0.0.1:7000\",\n  password: env:CB_TEST_QUEUE_PASSWORD}",
				Role:       `{topics: ["demo.*"], write: true}`,
				Env:        map[string]string{"CB_TEST_QUEUE_PASSWORD": "demo-only"},
				Try:        "queue-cli pub demo.hello",
			}, nil
		}}}},
		describedDriver{name: "down", md: plugins.Metadata{Demo: &plugins.Demo{Prepare: func(ctx context.Context) (plugins.DemoBackend, error) {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("Prepare runs without a deadline")
			}
			return plugins.DemoBackend{}, errors.New("nothing answers at 127.0.0.1:7001")
		}}}},
		describedDriver{name: devStorePlugin, md: plugins.Metadata{Demo: &plugins.Demo{Prepare: func(context.Context) (plugins.DemoBackend, error) {
			t.Error("the dev config's own plugin was prepared")
			return plugins.DemoBackend{}, nil
		}}}},
		describedDriver{name: "nodemo"},
	)
	var notes []string
	got := devBackends(t.Context(), []string{devStorePlugin}, func(s string) { notes = append(notes, s) })
	if len(got) != 1 || got[0].name() != "demo-queue" || prepared != 1 {
		t.Fatalf("devBackends = %+v (prepared %d), want demo-queue", got, prepared)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "demo down backend skipped: nothing answers") {
		t.Errorf("notes = %q", notes)
	}
	if v := os.Getenv("CB_TEST_QUEUE_PASSWORD"); v != "demo-only" {
		t.Errorf("the demo's Env was not set: %q", v)
	}

	data := devConfigData{Listen: "127.0.0.1:8200", MetricsListen: "127.0.0.1:0", Issuer: devIssuer,
		JWKS: "/dev/null", Subject: devSubject, StorePlugin: devStorePlugin}
	for _, b := range got {
		data.Backends += b.backendYAML()
		data.Roles += b.roleYAML()
		data.RoleNames += ", " + b.name()
	}
	var buf strings.Builder
	if err := devConfig.Execute(&buf, data); err != nil {
		t.Fatal(err)
	}
	cfg, err := broker.ParseConfig([]byte(buf.String()), drivers)
	if err != nil {
		t.Fatalf("the dev config does not parse: %v\n%s", err, buf.String())
	}
	role, ok := cfg.Role("demo-queue")
	if !ok || role.Backend != "demo-queue" {
		t.Fatalf("role demo-queue = %+v\n%s", role, buf.String())
	}
	if b, ok := cfg.Backend("demo-queue"); !ok || b.Plugin != "queue" {
		t.Fatalf("backend demo-queue = %+v", b)
	}
}
