package broker

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/plugins/external"
)

// probeProgram builds the test backend program test/plugins/probe for the
// test and returns its path and SHA-256.
func probeProgram(t *testing.T) (path, sum string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "probe")
	out, err := exec.Command("go", "build", "-o", path, "github.com/credbroker/credbroker/test/plugins/probe").CombinedOutput()
	if err != nil {
		t.Fatalf("go build probe: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return path, hex.EncodeToString(s[:])
}

// withExternal adds a backend run as the probe program (its keys after
// plugin: external, indented as a backend's) and a role on it (its keys
// after backend:, indented as a role's) to validConfig.
func withExternal(backend, role string) string {
	s := strings.Replace(validConfig, "backends:\n", "backends:\n  - name: probe-be\n    plugin: external\n    environment: prod\n    owner: team-orders\n"+backend, 1)
	return strings.Replace(s, "roles:\n", "roles:\n  - name: probe-role\n    backend: probe-be\n    default_ttl: 15m\n    max_ttl: 1h\n"+role, 1)
}

func TestParseConfigExternal(t *testing.T) {
	t.Parallel()
	path, sum := probeProgram(t)
	backend := fmt.Sprintf("    command: [%s]\n    sha256: %s\n    env: {PROBE_ADMIN: env:PROBE_ADMIN_PASSWORD}\n    connection: {password: env:PROBE_ADMIN}\n", path, sum)
	cfg, err := ParseConfig([]byte(withExternal(backend, "    probe: {grant: write}\n")), testDrivers)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	b, _ := cfg.Backend("probe-be")
	if _, ok := b.driver.(*external.Driver); !ok || b.driver.Name() != "probe" {
		t.Errorf("the backend's driver is %T named %q, want the program's, named probe", b.driver, b.driver.Name())
	}
	if _, ok := b.connection.(*external.Connection); !ok {
		t.Errorf("the backend's connection is %T, want *external.Connection", b.connection)
	}
	r, _ := cfg.Role("probe-role")
	if _, ok := r.spec.(*external.Role); !ok {
		t.Errorf("the role's spec is %T, want *external.Role", r.spec)
	}
	if w := strings.Join(cfg.Warnings, "\n"); !strings.Contains(w, "roles[0].probe: grant: write lets a holder change everything") {
		t.Errorf("the program's warning is not among the config's warnings: %q", cfg.Warnings)
	}
}

func TestParseConfigExternalErrors(t *testing.T) {
	t.Parallel()
	path, sum := probeProgram(t)
	good := fmt.Sprintf("    command: [%s]\n    sha256: %s\n", path, sum)
	conn := "    connection: {password: env:PROBE_ADMIN}\n"
	role := "    probe: {grant: read}\n"
	wrong := strings.Repeat("0", 64)
	tests := map[string]struct {
		backend, role string
		want          []string
	}{
		"NoCommandNoSum": {
			backend: conn, role: role,
			want: []string{"backends[0].command: required with plugin: external", "backends[0].sha256: required with plugin: external"},
		},
		"RelativeCommand": {
			backend: "    command: [bin/probe]\n    sha256: " + sum + "\n" + conn, role: role,
			want: []string{`backends[0].command[0]: "bin/probe" is not an absolute path`},
		},
		"BadSum": {
			backend: "    command: [" + path + "]\n    sha256: xyz\n" + conn, role: role,
			want: []string{`backends[0].sha256: "xyz" is not a hex SHA-256`},
		},
		"SumMismatch": {
			backend: "    command: [" + path + "]\n    sha256: " + wrong + "\n" + conn, role: role,
			want: []string{"backends[0].sha256: refusing to start " + path + ": its SHA-256 is " + sum + ", the config pins " + wrong},
		},
		"MissingProgram": {
			backend: "    command: [/nonexistent/probe]\n    sha256: " + sum + "\n" + conn, role: role,
			want: []string{"backends[0].command: open the program: open /nonexistent/probe"},
		},
		"InlineEnv": {
			backend: good + "    env: {PROBE_ADMIN: hunter2}\n" + conn, role: role,
			want: []string{"backends[0].env.PROBE_ADMIN: secrets must not be written inline"},
		},
		"EnvProblemsAndSectionProblems": {
			backend: good + "    env: {PROBE_ADMIN: hunter2}\n    connection: {password: env:PROBE_ADMIN, colour: blue}\n", role: "    probe: {grant: all}\n",
			want: []string{"backends[0].env.PROBE_ADMIN: secrets must not be written inline", "backends[0].connection: field colour not found", `roles[0].probe: grant: "all" is not`},
		},
		"ReservedEnv": {
			backend: good + "    env: {CREDBROKER_PLUGIN_SOCKET: env:X}\n" + conn, role: role,
			want: []string{"backends[0].env.CREDBROKER_PLUGIN_SOCKET: CREDBROKER_PLUGIN_… is reserved"},
		},
		"ConnectionThroughProgram": {
			backend: good + "    connection: {password: env:PROBE_ADMIN, colour: blue}\n", role: role,
			want: []string{"backends[0].connection: field colour not found"},
		},
		"RoleThroughProgram": {
			backend: good + conn, role: "    probe: {grant: all}\n",
			want: []string{`roles[0].probe: grant: "all" is not read, write, down or leak`},
		},
		"RoleSectionIsTheProgramsName": {
			backend: good + conn, role: "    external: {grant: read}\n",
			want: []string{"roles[0].external: unknown key", "roles[0]: missing the probe: section"},
		},
		"NoRolesOfAProgramThatCannotStart": {
			backend: "    command: [" + path + "]\n    sha256: " + wrong + "\n" + conn, role: "    probe: {grant: all}\n",
			want: []string{"backends[0].sha256: refusing"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConfig([]byte(withExternal(tc.backend, tc.role)), testDrivers)
			if err == nil {
				t.Fatal("ParseConfig accepted a bad config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "roles[0].probe") && strings.Contains(tc.want[0], "refusing") {
				t.Errorf("a role of a program that cannot start is reported too:\n%v", err)
			}
		})
	}
}

func TestParseConfigExternalKeysOnlyForExternal(t *testing.T) {
	t.Parallel()
	s := strings.Replace(validConfig, "    plugin: postgres\n", "    plugin: postgres\n    command: [/bin/true]\n    sha256: "+strings.Repeat("0", 64)+"\n    env: {X: env:Y}\n", 1)
	_, err := ParseConfig([]byte(s), testDrivers)
	if err == nil {
		t.Fatal("ParseConfig accepted command, sha256 and env on a built-in plugin")
	}
	for _, key := range []string{"command", "sha256", "env"} {
		if w := "backends[0]." + key + ": only with plugin: external"; !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q:\n%v", w, err)
		}
	}
}
