package e2e_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/test/harness"
)

// TestAgentKeepsCredentialFresh: the sidecar agent writes a credential file,
// renews it, replaces it before its lease can be renewed no further, and
// revokes it when stopped.
func TestAgentKeepsCredentialFresh(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "2s", "4s", "")
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)
	file := filepath.Join(t.TempDir(), "db.env")

	var stderr bytes.Buffer
	agent := startBackground(t, asHolder(b, token), &stderr, "agent", "readonly", "--out", file)

	// read returns the file's variables once it exists.
	read := func() map[string]string {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil
		}
		vars := map[string]string{}
		for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
			k, v, _ := strings.Cut(line, "=")
			vars[k] = strings.Trim(v, "'")
		}
		b.Track(vars["PGPASSWORD"])
		return vars
	}
	var first map[string]string
	eventually(t, 20*time.Second, "the agent wrote no credential file", func() bool {
		first = read()
		return first["PGUSER"] != ""
	})
	if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("credential file mode = %v, %v; want 0600", info.Mode().Perm(), err)
	}
	psql := exec.Command("sh", "-c", `set -a; . "$1"; psql -tAc 'SELECT current_user'`, "sh", file)
	psql.Env = os.Environ()
	if out, err := psql.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != first["PGUSER"] {
		t.Fatalf("psql with the agent's file: %v: %s", err, out)
	}

	// 2s leases renewable to 4s: the agent renews, then replaces the credential.
	var second map[string]string
	eventually(t, 20*time.Second, "the agent never replaced the credential", func() bool {
		second = read()
		return second["PGUSER"] != "" && second["PGUSER"] != first["PGUSER"]
	})

	agent.stopAndWait(t, 20*time.Second, stderr.String)
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the credential file is still there after the agent stopped: %v", err)
	}
	for _, l := range d.Store.Leases(t) {
		if l.ID == second["CREDBROKER_LEASE_ID"] && l.State != "REVOKED" {
			t.Errorf("the agent's current lease is %s after it stopped", l.State)
		}
	}
	renewed := d.Store.EventCount(t, "renewed")
	if renewed == 0 {
		t.Errorf("the agent never renewed a lease (%s)", stderr.String())
	}
	t.Logf("agent: %d renewals, %d leases issued", renewed, len(d.Store.Leases(t)))
}

// TestAgentTemplateAndReadiness: the agent renders a .pgpass-style template
// and a properties file (each --template pairs with the --out after it; an
// --out without one is in --format), runs --exec-on-change after writing,
// and its /ready turns 200 once a credential is on disk, 503 when the
// broker is gone and the lease has expired, and 200 again once the broker
// is back. Its logs hold no password.
func TestAgentTemplateAndReadiness(t *testing.T) {
	t.Parallel()
	// 5 s leases: one expires soon after the broker goes away; a max TTL
	// of a minute keeps the credential from being replaced while psql
	// uses the rendered .pgpass.
	d, b := setup(t, "5s", "1m", "")
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)
	dir := t.TempDir()
	in := func(name string) string { return filepath.Join(dir, name) }
	if err := os.WriteFile(in("pgpass.tmpl"), []byte("{{.Fields.host}}:{{.Fields.port}}:{{.Fields.database}}:{{.Username}}:{{.Password}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in("props.tmpl"), []byte("lease={{.LeaseID}}\nuser={{.Env.PGUSER}}\nrole={{.Role}}\nmax={{.MaxExpiresAt.Unix}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	readyAddr := freeAddr(t)
	readyURL := "http://" + readyAddr + "/ready"

	// Started while the broker is down: nothing can be on disk yet.
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	var stderr safeBuffer
	agent := startBackground(t, asHolder(b, token), &stderr, "agent", "readonly",
		"--out", in("db.env"),
		"--template", in("pgpass.tmpl"), "--out", in("pgpass"),
		"--template", in("props.tmpl"), "--out", in("db.properties"),
		"--exec-on-change", "echo changed >> "+in("marker"),
		"--ready-addr", readyAddr)
	ready := func() int {
		res, err := http.Get(readyURL)
		if err != nil {
			return 0
		}
		defer res.Body.Close()
		_, _ = io.Copy(io.Discard, res.Body)
		return res.StatusCode
	}
	eventually(t, 20*time.Second, "/ready did not answer 503 before the first credential", func() bool { return ready() == http.StatusServiceUnavailable })
	if _, err := os.Stat(in("pgpass")); !os.IsNotExist(err) {
		t.Fatalf("a credential file exists with the broker down: %v", err)
	}

	b.Restart(t)
	eventually(t, 60*time.Second, "/ready did not turn 200 once the broker was back", func() bool { return ready() == http.StatusOK })
	for _, f := range []string{"db.env", "pgpass", "db.properties"} {
		if info, err := os.Stat(in(f)); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, info.Mode().Perm())
		}
	}
	// The three files are written one after the other: read them until
	// they show the same credential.
	var passwords []string
	var env map[string]string
	var pgpass []string
	eventually(t, 20*time.Second, "the files never showed one credential", func() bool {
		env = readEnvFile(in("db.env"))
		data, _ := os.ReadFile(in("pgpass"))
		pgpass = strings.Split(strings.TrimSuffix(string(data), "\n"), ":")
		props, _ := os.ReadFile(in("db.properties"))
		if env["PGPASSWORD"] != "" && !slices.Contains(passwords, env["PGPASSWORD"]) {
			passwords = append(passwords, env["PGPASSWORD"])
			b.Track(env["PGPASSWORD"])
		}
		return len(pgpass) == 5 && pgpass[3] == env["PGUSER"] && pgpass[4] == env["PGPASSWORD"] &&
			regexp.MustCompile(fmt.Sprintf(`^lease=%s\nuser=%s\nrole=readonly\nmax=[0-9]+\n$`,
				regexp.QuoteMeta(env["CREDBROKER_LEASE_ID"]), regexp.QuoteMeta(env["PGUSER"]))).Match(props)
	})
	if pgpass[0] != env["PGHOST"] || pgpass[1] != env["PGPORT"] || pgpass[2] != env["PGDATABASE"] {
		t.Errorf("pgpass host:port:database = %q, the env file says %s:%s:%s", pgpass[:3], env["PGHOST"], env["PGPORT"], env["PGDATABASE"])
	}
	// psql finds the password in the rendered .pgpass file.
	psql := exec.Command("psql", "-h", pgpass[0], "-p", pgpass[1], "-d", pgpass[2], "-U", pgpass[3], "-w", "-tAc", "SELECT current_user")
	psql.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PG") }), "PGPASSFILE="+in("pgpass"))
	if out, err := psql.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != pgpass[3] {
		t.Errorf("psql with the rendered .pgpass: %v: %s", err, out)
	}
	eventually(t, 20*time.Second, "--exec-on-change never ran", func() bool {
		data, _ := os.ReadFile(in("marker"))
		return strings.HasPrefix(string(data), "changed\n")
	})

	// The broker goes away: renewals and new issues fail, the lease on
	// disk expires, and /ready says so.
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "/ready still 200 with the broker gone and the lease expired", func() bool {
		return ready() == http.StatusServiceUnavailable
	})
	if _, err := os.Stat(in("pgpass")); err != nil {
		t.Errorf("the credential files went away while the agent runs: %v", err)
	}
	b.Restart(t)
	eventually(t, 90*time.Second, "/ready did not turn 200 again once the broker was back", func() bool { return ready() == http.StatusOK })
	if e := readEnvFile(in("db.env")); e["PGPASSWORD"] != "" && !slices.Contains(passwords, e["PGPASSWORD"]) {
		passwords = append(passwords, e["PGPASSWORD"])
		b.Track(e["PGPASSWORD"])
	}

	agent.stopAndWait(t, 30*time.Second, stderr.String)
	for _, f := range []string{"db.env", "pgpass", "db.properties"} {
		if _, err := os.Stat(in(f)); !os.IsNotExist(err) {
			t.Errorf("%s is still there after the agent stopped: %v", f, err)
		}
	}
	logs := stderr.String()
	for _, pw := range passwords {
		if strings.Contains(logs, pw) {
			t.Errorf("the agent's logs hold an issued password")
		}
	}
	if len(passwords) < 2 {
		t.Errorf("saw %d passwords, want the first and the one issued after the broker came back", len(passwords))
	}
	if !strings.Contains(logs, "serving the readiness probe") {
		t.Errorf("the agent did not log its readiness address:\n%s", logs)
	}
	b.AssertNoSecrets(t)
}

// TestAgentRevokesEveryLeaseOnStop: a stopped agent revokes every lease
// it still holds, not only the one whose credential is on disk: the lease
// it is replacing while the new issue is refused, and the lease it has
// replaced but left to expire for the workload.
func TestAgentRevokesEveryLeaseOnStop(t *testing.T) {
	t.Parallel()
	// Leases that cannot be renewed (default_ttl = max_ttl): the agent
	// replaces one at half its life, leaving it valid for the other half.
	const ttl = "16s"
	t.Run("WhileTheNewIssueIsRefused", func(t *testing.T) {
		t.Parallel()
		// One credential, then none for 1000 s: the broker refuses the
		// replacement (resource_exhausted), and the agent keeps trying.
		d, b := setup(t, ttl, ttl, "limits: {issue_rate: 0.001, issue_burst: 1}\n")
		token := d.Issuer.Token(t, appSubject, nil, time.Hour)
		file := filepath.Join(t.TempDir(), "db.env")
		var stderr safeBuffer
		agent := startBackground(t, asHolder(b, token), &stderr, "agent", "readonly", "--out", file)
		first := waitForCredential(t, b, file, "")
		eventually(t, 30*time.Second, "the agent did not try to replace its credential", func() bool {
			return strings.Contains(stderr.String(), "issue failed; retrying")
		})
		if !strings.Contains(stderr.String(), "resource_exhausted") {
			t.Fatalf("the agent's issue failed, but not for the issue rate:\n%s", stderr.String())
		}
		// The lease it moves off is valid for half its life yet.
		if l := leaseRow(t, d, first["CREDBROKER_LEASE_ID"]); l.State != "ACTIVE" {
			t.Fatalf("the lease being replaced is %s before the agent stopped", l.State)
		}
		agent.stopAndWait(t, 30*time.Second, stderr.String)
		assertAllRevokedByAgent(t, d, file, stderr.String(), 1)
	})
	t.Run("AfterAReplacement", func(t *testing.T) {
		t.Parallel()
		d, b := setup(t, ttl, ttl, "")
		token := d.Issuer.Token(t, appSubject, nil, time.Hour)
		file := filepath.Join(t.TempDir(), "db.env")
		var stderr safeBuffer
		agent := startBackground(t, asHolder(b, token), &stderr, "agent", "readonly", "--out", file)
		first := waitForCredential(t, b, file, "")
		second := waitForCredential(t, b, file, first["CREDBROKER_LEASE_ID"])
		if l := leaseRow(t, d, first["CREDBROKER_LEASE_ID"]); l.State != "ACTIVE" {
			t.Fatalf("the replaced lease is %s right after the replacement, want it left for the workload", l.State)
		}
		agent.stopAndWait(t, 30*time.Second, stderr.String)
		assertAllRevokedByAgent(t, d, file, stderr.String(), 2)
		t.Logf("leases %s (replaced) and %s (current) revoked on stop", first["CREDBROKER_LEASE_ID"], second["CREDBROKER_LEASE_ID"])
	})
}

// waitForCredential waits until the agent's env file holds a credential of
// a lease other than notLease, and returns its variables.
func waitForCredential(t *testing.T, b *harness.Broker, file, notLease string) map[string]string {
	t.Helper()
	var env map[string]string
	eventually(t, 30*time.Second, "the agent wrote no new credential", func() bool {
		env = readEnvFile(file)
		id := env["CREDBROKER_LEASE_ID"]
		return id != "" && id != notLease && env["PGPASSWORD"] != ""
	})
	b.Track(env["PGPASSWORD"])
	return env
}

// leaseRow returns the store's row of lease id.
func leaseRow(t *testing.T, d *harness.Deployment, id string) harness.LeaseRow {
	t.Helper()
	for _, l := range d.Store.Leases(t) {
		if l.ID == id {
			return l
		}
	}
	t.Fatalf("lease %s is not in the store", id)
	return harness.LeaseRow{}
}

// assertAllRevokedByAgent fails the test unless the store holds n leases,
// each revoked by the agent (its holder) with its user dropped, the agent's
// file is gone and its logs hold no password.
func assertAllRevokedByAgent(t *testing.T, d *harness.Deployment, file, logs string, n int) {
	t.Helper()
	leases := d.Store.Leases(t)
	if len(leases) != n {
		t.Errorf("%d leases issued, want %d", len(leases), n)
	}
	for _, l := range leases {
		if l.State != "REVOKED" || l.RevokeReason != "revoked by holder" {
			t.Errorf("lease %s is %s (%q) after the agent stopped, want revoked by the agent", l.ID, l.State, l.RevokeReason)
		}
		if d.Backend.RoleExists(t, l.Username) {
			t.Errorf("user %s of lease %s is still there after the agent stopped", l.Username, l.ID)
		}
		if !strings.Contains(logs, `"lease revoked on exit" component=agent role=readonly lease_id=`+l.ID) {
			t.Errorf("the agent's logs do not say it revoked lease %s:\n%s", l.ID, logs)
		}
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the credential file is still there after the agent stopped: %v", err)
	}
}

// readEnvFile reads an agent's --format env file.
func readEnvFile(path string) map[string]string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	vars := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		vars[k] = strings.Trim(v, "'")
	}
	return vars
}

// safeBuffer is a bytes.Buffer a process writes while the test reads it.
type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
