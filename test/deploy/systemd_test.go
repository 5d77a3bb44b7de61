package deploy

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/test/harness"
)

// unitFile is a systemd unit: section → key → values, in order (a key may
// repeat).
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, data []byte) unitFile {
	t.Helper()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("line %d: %q is not Key=Value in a section", n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// last is the value that wins for a key set once or more.
func (u unitFile) last(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

func unitPath(t *testing.T) string {
	return filepath.Join(repoRoot(t), "deploy", "systemd", "credbroker.service")
}

// TestSystemdUnitDirectives checks the unit's hardening and wiring directive
// by directive; TestSystemdAnalyze has systemd itself check the file.
func TestSystemdUnitDirectives(t *testing.T) {
	data, err := os.ReadFile(unitPath(t))
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, data)
	for key, want := range map[string]string{
		// No sd_notify in the broker: it is up once it listens.
		"Type":                    "simple",
		"User":                    "credbroker",
		"Group":                   "credbroker",
		"ExecStart":               "/usr/local/bin/credbroker serve --config /etc/credbroker/credbroker.yaml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"ConfigurationDirectory":  "credbroker",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"ProtectClock":            "yes",
		"ProtectHostname":         "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"RestrictNamespaces":      "yes",
		"RestrictRealtime":        "yes",
		"RestrictSUIDSGID":        "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"UMask":                   "0077",
	} {
		got, ok := u.last("Service", key)
		if !ok || got != want {
			t.Errorf("[Service] %s = %q (set: %v), want %q", key, got, ok, want)
		}
	}
	if f := u["Service"]["SystemCallFilter"]; len(f) == 0 || f[0] != "@system-service" {
		t.Errorf("SystemCallFilter = %q, want @system-service first", f)
	}
	// Secrets arrive as credentials under /run/credentials/credbroker.service.
	creds := u["Service"]["LoadCredential"]
	if len(creds) == 0 {
		t.Error("no LoadCredential=: the secrets have no way in but the config directory")
	}
	for _, c := range creds {
		name, src, ok := strings.Cut(c, ":")
		if !ok || name == "" || !filepath.IsAbs(src) {
			t.Errorf("LoadCredential=%s: want NAME:/absolute/path", c)
		}
	}
	// The config the unit runs is in its (read-only) configuration directory.
	exec, _ := u.last("Service", "ExecStart")
	if cfg := exec[strings.LastIndex(exec, " ")+1:]; filepath.Dir(cfg) != "/etc/credbroker" {
		t.Errorf("ExecStart reads %s, outside ConfigurationDirectory /etc/credbroker", cfg)
	}
	if got, _ := u.last("Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("[Install] WantedBy = %q, want multi-user.target", got)
	}

	// The user the unit names is the one sysusers.d makes.
	sysusers, err := os.ReadFile(filepath.Join(filepath.Dir(unitPath(t)), "credbroker.sysusers"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(strings.Split(string(sysusers), "\n"), func(l string) bool {
		f := strings.Fields(l)
		return len(f) >= 2 && f[0] == "u" && f[1] == "credbroker"
	}) {
		t.Error("credbroker.sysusers makes no user credbroker")
	}
}

// TestSystemdAnalyze runs systemd-analyze verify on the unit, and its
// offline security audit with a threshold. verify checks that ExecStart's
// program exists, so it runs on a copy whose ExecStart names the built
// binary instead of /usr/local/bin/credbroker; nothing else is changed.
func TestSystemdAnalyze(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if requireServices() {
			t.Fatal("systemd-analyze is not installed")
		}
		t.Skip("systemd-analyze is not installed; TestSystemdUnitDirectives checks the directives")
	}
	data, err := os.ReadFile(unitPath(t))
	if err != nil {
		t.Fatal(err)
	}
	const installed = "ExecStart=/usr/local/bin/credbroker "
	if !bytes.Contains(data, []byte(installed)) {
		t.Fatalf("the unit has no %q", installed)
	}
	data = bytes.Replace(data, []byte(installed), []byte("ExecStart="+harness.Binary(t)+" "), 1)
	unit := filepath.Join(t.TempDir(), "credbroker.service")
	if err := os.WriteFile(unit, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), analyze, "verify", "--man=no", unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure 0 (locked down) … 10 (unprotected); the unit scores about 1.4.
	out, err = exec.CommandContext(t.Context(), analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0 (or the audit failed): %v\n%s", err, out)
	}
}
