package e2e_test

import (
	"bufio"
	"context"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgerrcode"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

func TestIssueLoginReadOnly(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "10m", "1h", "")
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)

	t.Run("ConnectJSON", func(t *testing.T) {
		cred := issue(t, b, token, map[string]any{"role": "readonly"})
		if !strings.HasPrefix(cred.Username, "cb_readonly_") {
			t.Errorf("username %q does not look like cb_<role>_<random>", cred.Username)
		}
		for _, k := range []string{"PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD"} {
			if cred.Env[k] == "" {
				t.Errorf("credential.env has no %s: %v", k, slices.Sorted(maps.Keys(cred.Env)))
			}
		}
		if cred.Env["PGPASSWORD"] != cred.Password || cred.Env["PGUSER"] != cred.Username || cred.Env["PGDATABASE"] != d.Backend.Database {
			t.Errorf("credential.env does not match the credential")
		}
		if !d.Backend.RoleExists(t, cred.Username) {
			t.Fatalf("role %s is not in pg_roles", cred.Username)
		}
		checkReadOnlyWithPGX(t, cred.URI)
	})

	t.Run("GoClient", func(t *testing.T) {
		c := b.Client(token)
		resp, err := c.IssueCredential(t.Context(), connect.NewRequest(&credbrokerv1.IssueCredentialRequest{Role: "readonly"}))
		if err != nil {
			t.Fatalf("IssueCredential: %v", err)
		}
		if s := resp.Msg.GetLease().GetState(); s != credbrokerv1.LeaseState_LEASE_STATE_ACTIVE {
			t.Errorf("lease state %v", s)
		}
		checkReadOnlyWithPGX(t, resp.Msg.GetCredential().GetUri())

		roles, err := c.ListRoles(t.Context(), connect.NewRequest(&credbrokerv1.ListRolesRequest{}))
		if err != nil {
			t.Fatalf("ListRoles: %v", err)
		}
		var names []string
		for _, r := range roles.Msg.GetRoles() {
			names = append(names, r.GetName())
		}
		if !slices.Equal(names, []string{"readonly"}) {
			t.Errorf("ListRoles = %v, want only [readonly] (reports is not granted to %s)", names, appSubject)
		}
	})

	t.Run("CLIAndPsql", func(t *testing.T) {
		psql, err := exec.LookPath("psql")
		if err != nil {
			t.Skip("psql is not installed")
		}
		stdout, stderr, code := b.CLI(t, token, "creds", "readonly", "--format", "env", "--ttl", "5m")
		if code != 0 {
			t.Fatalf("credbroker creds: exit %d\n%s", code, stderr)
		}
		env := parseExports(t, stdout)
		if env["CREDBROKER_LEASE_ID"] == "" || env["PGPASSWORD"] == "" {
			t.Fatalf("credbroker creds --format env printed no lease id or password:\n%s", redact(stdout, env["PGPASSWORD"]))
		}
		run := func(sql string) (string, error) {
			cmd := exec.Command(psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)
			cmd.Env = psqlEnv(env)
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		out, err := run("SELECT count(*) FROM orders")
		if err != nil || strings.TrimSpace(out) != "2" {
			t.Errorf("psql SELECT: %v: %s", err, out)
		}
		out, err = run("INSERT INTO orders (item, qty) VALUES ('x', 1)")
		if err == nil || !strings.Contains(out, "permission denied") {
			t.Errorf("psql INSERT: want permission denied, got %v: %s", err, out)
		}
		out, err = run("SELECT current_user")
		if err != nil || strings.TrimSpace(out) != env["PGUSER"] {
			t.Errorf("psql current_user = %q (%v), want %s", out, err, env["PGUSER"])
		}

		// The CLI's other formats and commands, against the same lease.
		stdout, stderr, code = b.CLI(t, token, "lease", "get", env["CREDBROKER_LEASE_ID"])
		if code != 0 || !strings.Contains(stdout, "LEASE_STATE_ACTIVE") {
			t.Errorf("credbroker lease get: exit %d\n%s%s", code, stdout, stderr)
		}
		stdout, stderr, code = b.CLI(t, token, "creds", "readonly", "--format", "uri")
		if code != 0 || !strings.HasPrefix(stdout, "postgres://") {
			t.Errorf("credbroker creds --format uri: exit %d\n%s", code, stderr)
		} else {
			checkReadOnlyWithPGX(t, strings.TrimSpace(stdout))
		}
		stdout, stderr, code = b.CLI(t, token, "lease", "list", "--state", "active")
		if code != 0 || strings.Count(stdout, "LEASE_STATE_ACTIVE") < 2 {
			t.Errorf("credbroker lease list: exit %d\n%s%s", code, stdout, stderr)
		}
		_, stderr, code = b.CLI(t, token, "creds", "reports")
		if code != 1 || !strings.Contains(stderr, "permission_denied") {
			t.Errorf("credbroker creds reports: exit %d, want 1 with permission_denied\n%s", code, stderr)
		}
	})
}

// checkReadOnlyWithPGX logs in with uri: SELECT works, INSERT is refused.
func checkReadOnlyWithPGX(t *testing.T, uri string) {
	t.Helper()
	ctx := t.Context()
	conn, err := connectPG(ctx, uri)
	if err != nil {
		t.Fatalf("log in with the issued credential: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders JOIN customers ON customers.id = orders.customer_id").Scan(&n); err != nil || n != 2 {
		t.Errorf("SELECT as the issued user: %d rows, %v", n, err)
	}
	_, err = conn.Exec(ctx, "INSERT INTO orders (item, qty) VALUES ('x', 1)")
	if got := sqlState(err); got != pgerrcode.InsufficientPrivilege {
		t.Errorf("INSERT as the issued user: %v (SQLSTATE %q), want permission denied (%s)", err, got, pgerrcode.InsufficientPrivilege)
	}
}

// parseExports reads the `export K='v'` lines of `credbroker creds --format env`.
func parseExports(t *testing.T, out string) map[string]string {
	t.Helper()
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok || !strings.HasPrefix(line, "export ") {
			t.Fatalf("not an export line: %q", redact(line, ""))
		}
		if len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
			t.Fatalf("value of %s is not single-quoted", k)
		}
		env[k] = strings.ReplaceAll(v[1:len(v)-1], `'\''`, `'`)
	}
	return env
}

// psqlEnv is the test's environment without PG* variables, plus env.
func psqlEnv(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			out = append(out, kv)
		}
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

func redact(s, secret string) string {
	if secret == "" {
		return strconv.Itoa(len(s)) + " bytes"
	}
	return strings.ReplaceAll(s, secret, "[REDACTED]")
}
