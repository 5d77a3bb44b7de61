package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/test/harness"
)

// policyRoles are two roles on the deployment's backend: read (normal) and
// write (break-glass for deployers).
func policyRoles(d *harness.Deployment, policies string) string {
	return d.Config(fmt.Sprintf(`roles:
  - name: read
    backend: %[1]s
    owner: e2e
    default_ttl: 5m
    max_ttl: 1h
    postgres: {member_of: [%[2]s]}
  - name: write
    backend: %[1]s
    owner: e2e
    default_ttl: 5m
    max_ttl: 1h
    break_glass_max_ttl: 3m
    postgres: {member_of: [%[2]s]}
policies:
%s`, harness.BackendName, d.Backend.ReadGroup, policies))
}

// githubPolicies grant GitHub-Actions-shaped identities of repo org/app
// (subject `repo:org/app:…`) read from main and release tags, and deployers
// of the prod environment write with a break-glass reason.
const githubPolicies = `  - name: app-ci
    issuer: test
    subject: "repo:org/app:*"
    claims:
      ref: [refs/heads/main, "refs/tags/v*"]
      repository_owner: org
    roles: [read]
  - name: app-deploy
    issuer: test
    subject: "repo:org/app:environment:*"
    claims: {environment: prod, job_workflow_ref: "org/shared/.github/workflows/deploy.yml@**"}
    roles: [read]
    break_glass_roles: [write]
  - name: auditors
    issuer: test
    subject: auditor@example.com
    admin: true
`

// TestIdentityPolicyGitHubSubjects: segment-aware globs and claim lists and
// globs, with the built broker and real tokens: repo:org/app:* reaches the
// repo's subjects and not repo:org/app-evil's; claims match any of a list
// and globs; break-glass grants come from the same decision.
func TestIdentityPolicyGitHubSubjects(t *testing.T) {
	t.Parallel()
	d := harness.NewDeployment(t)
	b := harness.StartBroker(t, policyRoles(d, githubPolicies), d.Env()...)
	gh := func(sub string, claims map[string]any) string {
		return d.Issuer.Token(t, sub, claims, time.Hour)
	}
	mainClaims := map[string]any{"ref": "refs/heads/main", "repository_owner": "org", "repository": "org/app"}
	deployClaims := map[string]any{"environment": "prod", "job_workflow_ref": "org/shared/.github/workflows/deploy.yml@refs/heads/main"}

	granted := map[string]struct {
		token, role, reason string
	}{
		"MainBranch":        {gh("repo:org/app:ref:refs/heads/main", mainClaims), "read", ""},
		"ReleaseTag":        {gh("repo:org/app:ref:refs/tags/v1.4.2", map[string]any{"ref": "refs/tags/v1.4.2", "repository_owner": "org"}), "read", ""},
		"DeployEnvironment": {gh("repo:org/app:environment:prod", deployClaims), "read", ""},
		"DeployBreakGlass":  {gh("repo:org/app:environment:prod", deployClaims), "write", "INC-77 hotfix"},
	}
	for name, tc := range granted {
		cred := issue(t, b, tc.token, map[string]any{"role": tc.role, "breakGlassReason": tc.reason})
		if !d.Backend.RoleExists(t, cred.Username) {
			t.Errorf("%s: user %s was not created", name, cred.Username)
		}
		if tc.reason != "" && time.Until(cred.MaxExpiresAt) > 3*time.Minute {
			t.Errorf("%s: break-glass lease may live until %s, past the 3m break_glass_max_ttl", name, cred.MaxExpiresAt)
		}
	}

	denied := map[string]struct {
		token, role, reason string
	}{
		"OtherRepoSamePrefix": {gh("repo:org/app-evil:ref:refs/heads/main", mainClaims), "read", ""},
		"OtherBranch":         {gh("repo:org/app:ref:refs/heads/dev", map[string]any{"ref": "refs/heads/dev", "repository_owner": "org"}), "read", ""},
		"TagPrefixDeeper":     {gh("repo:org/app:ref:refs/tags/v1/x", map[string]any{"ref": "refs/tags/v1/x", "repository_owner": "org"}), "read", ""},
		"RefAsNestedList":     {gh("repo:org/app:ref:refs/heads/main", map[string]any{"ref": []any{[]any{"refs/heads/main"}}, "repository_owner": "org"}), "read", ""},
		"OwnerAsBool":         {gh("repo:org/app:ref:refs/heads/main", map[string]any{"ref": "refs/heads/main", "repository_owner": true}), "read", ""},
		"OtherEnvironment":    {gh("repo:org/app:environment:staging", map[string]any{"environment": "staging", "job_workflow_ref": deployClaims["job_workflow_ref"]}), "read", ""},
		"OtherWorkflow":       {gh("repo:org/app:environment:prod", map[string]any{"environment": "prod", "job_workflow_ref": "org/app/.github/workflows/deploy.yml@refs/heads/main"}), "read", ""},
		"WriteWithoutReason":  {gh("repo:org/app:environment:prod", deployClaims), "write", ""},
		"WriteFromCI":         {gh("repo:org/app:ref:refs/heads/main", mainClaims), "write", "please"},
	}
	for name, tc := range denied {
		status, r := b.Call(t, tc.token, "IssueCredential", map[string]any{"role": tc.role, "breakGlassReason": tc.reason})
		if msg := wantError(t, name, status, r, http.StatusForbidden, "permission_denied"); tc.reason == "" && tc.role == "read" && !strings.Contains(msg, "credbroker whoami") {
			t.Errorf("%s: the denial does not point at whoami: %q", name, msg)
		}
	}

	// ListRoles and the admin inventory ask the same decision.
	_, roles := b.Call(t, gh("repo:org/app:environment:prod", deployClaims), "ListRoles", map[string]any{})
	var got []string
	for _, r := range roles["roles"].([]any) {
		m := r.(map[string]any)
		got = append(got, fmt.Sprintf("%v:%v:%v", m["name"], m["breakGlassOnly"] == true, m["breakGlassMaxTtl"]))
	}
	if want := []string{"read:false:900s", "write:true:180s"}; !slices.Equal(got, want) {
		t.Errorf("ListRoles of a deployer = %v, want %v", got, want)
	}
	out, stderr, code := b.CLI(t, d.Issuer.Token(t, "auditor@example.com", nil, time.Hour), "admin", "inventory")
	var inv struct {
		Roles []struct {
			Name               string   `json:"name"`
			Policies           []string `json:"policies"`
			BreakGlassPolicies []string `json:"breakGlassPolicies"`
		} `json:"roles"`
	}
	if err := json.Unmarshal([]byte(out), &inv); code != 0 || err != nil {
		t.Fatalf("admin inventory: exit %d %s %v\n%s", code, stderr, err, out)
	}
	for _, r := range inv.Roles {
		switch r.Name {
		case "read":
			if !slices.Equal(r.Policies, []string{"app-ci", "app-deploy"}) || len(r.BreakGlassPolicies) != 0 {
				t.Errorf("inventory of read = %+v", r)
			}
		case "write":
			if len(r.Policies) != 0 || !slices.Equal(r.BreakGlassPolicies, []string{"app-deploy"}) {
				t.Errorf("inventory of write = %+v, want break-glass policy app-deploy", r)
			}
		}
	}
}

// TestIdentityPolicyWhoAmI: `credbroker whoami` with the built binary shows
// the issuer, subject, only the claims policies look at (never the token or
// other claims), the matching policies and the roles and break-glass roles.
func TestIdentityPolicyWhoAmI(t *testing.T) {
	t.Parallel()
	d := harness.NewDeployment(t)
	b := harness.StartBroker(t, policyRoles(d, githubPolicies), d.Env()...)
	token := d.Issuer.Token(t, "repo:org/app:environment:prod", map[string]any{
		"environment":      "prod",
		"job_workflow_ref": "org/shared/.github/workflows/deploy.yml@refs/heads/main",
		"runner_secret":    "do-not-echo-8c1f",
	}, time.Hour)

	// Not a terminal: JSON, like the other client commands.
	out, stderr, code := b.CLI(t, token, "whoami")
	if code != 0 {
		t.Fatalf("whoami: exit %d: %s", code, stderr)
	}
	var who struct {
		Issuer          string            `json:"issuer"`
		IssuerURL       string            `json:"issuerUrl"`
		Subject         string            `json:"subject"`
		Claims          map[string]string `json:"claims"`
		Policies        []string          `json:"policies"`
		Roles           []string          `json:"roles"`
		BreakGlassRoles []string          `json:"breakGlassRoles"`
		Admin           bool              `json:"admin"`
	}
	if err := json.Unmarshal([]byte(out), &who); err != nil {
		t.Fatalf("whoami output is not JSON: %v\n%s", err, out)
	}
	if who.Issuer != "test" || who.IssuerURL != d.Issuer.URL || who.Subject != "repo:org/app:environment:prod" || who.Admin {
		t.Errorf("whoami = %+v", who)
	}
	wantClaims := map[string]string{"environment": `"prod"`, "job_workflow_ref": `"org/shared/.github/workflows/deploy.yml@refs/heads/main"`}
	if fmt.Sprint(who.Claims) != fmt.Sprint(wantClaims) {
		t.Errorf("claims = %v, want only those the policies look at: %v", who.Claims, wantClaims)
	}
	if !slices.Equal(who.Policies, []string{"app-deploy"}) || !slices.Equal(who.Roles, []string{"read"}) || !slices.Equal(who.BreakGlassRoles, []string{"write"}) {
		t.Errorf("policies %v roles %v break-glass %v; want [app-deploy] [read] [write]", who.Policies, who.Roles, who.BreakGlassRoles)
	}
	for _, leak := range []string{token, strings.Split(token, ".")[1], "do-not-echo-8c1f", "runner_secret"} {
		if strings.Contains(out, leak) {
			t.Errorf("whoami printed %q", leak)
		}
	}

	text, stderr, code := b.CLI(t, token, "whoami", "--format", "text")
	if code != 0 {
		t.Fatalf("whoami --format text: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"subject:            repo:org/app:environment:prod", "policies matched:   app-deploy", "roles:              read", "break-glass roles:  write", `environment: "prod"`} {
		if !strings.Contains(text, want) {
			t.Errorf("whoami text does not say %q:\n%s", want, text)
		}
	}

	// A workload no policy matches learns that, and what it presented.
	evil := d.Issuer.Token(t, "repo:org/app-evil:ref:refs/heads/main", map[string]any{"ref": "refs/heads/main", "repository_owner": "org"}, time.Hour)
	text, _, code = b.CLI(t, evil, "whoami", "--format", "text")
	if code != 0 || !strings.Contains(text, "policies matched:   (none)") || !strings.Contains(text, "No policy matches") || !strings.Contains(text, `ref: "refs/heads/main"`) {
		t.Errorf("whoami of an unmatched identity: exit %d\n%s", code, text)
	}
	// The auditor is told it is an admin. (protojson varies its spacing, so
	// the JSON is decoded, not searched.)
	out, stderr, _ = b.CLI(t, d.Issuer.Token(t, "auditor@example.com", nil, time.Hour), "whoami", "--format", "json")
	var auditor struct {
		Admin bool `json:"admin"`
	}
	if err := json.Unmarshal([]byte(out), &auditor); err != nil || !auditor.Admin {
		t.Errorf("whoami of the auditor does not say admin (%v):\n%s%s", err, out, stderr)
	}
	// A bad token is refused, as for any call.
	if _, stderr, code := b.CLI(t, token+"x", "whoami"); code == 0 || !strings.Contains(stderr, "unauthenticated") {
		t.Errorf("whoami with a bad token: exit %d %s", code, stderr)
	}
}

// TestIdentityPolicyConfigCheck: `config check` warns on a subject that ends
// in name* and says what to write; the broker then does not let that
// pattern reach another repository.
func TestIdentityPolicyConfigCheck(t *testing.T) {
	t.Parallel()
	d := harness.NewDeployment(t)
	cfg := policyRoles(d, `  - name: loose
    issuer: test
    subject: "repo:org/app*"
    roles: [read]
`)
	path := filepath.Join(t.TempDir(), "credbroker.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(cfg, harness.ListenPlaceholder, "127.0.0.1:8420", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := harness.RunCLI(t, nil, "config", "check", path)
	if code != 0 || !strings.Contains(stderr, `warning: policies[0].subject: "repo:org/app*" ends in a bare * after a name`) || !strings.Contains(stderr, `write "repo:org/app:*"`) {
		t.Errorf("config check: exit %d, want 0 and a warning saying to write repo:org/app:*\n%s%s", code, stdout, stderr)
	}
	if _, stderr, code := harness.RunCLI(t, nil, "config", "check", "--strict", path); code != 1 || !strings.Contains(stderr, "1 warnings") {
		t.Errorf("config check --strict: exit %d: %s", code, stderr)
	}
	bad := strings.Replace(cfg, `subject: "repo:org/app*"`, "subject: \"repo:org/app:*\"\n    claims: {ref: {heads: main}}", 1)
	if err := os.WriteFile(path, []byte(strings.Replace(bad, harness.ListenPlaceholder, "127.0.0.1:8420", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := harness.RunCLI(t, nil, "config", "check", path); code != 1 || !strings.Contains(stderr, "policies[0].claims.ref") || !strings.Contains(stderr, "a string or a list of strings") {
		t.Errorf("config check of a claim that is a mapping: exit %d: %s", code, stderr)
	}

	b := harness.StartBroker(t, cfg, d.Env()...)
	issue(t, b, d.Issuer.Token(t, "repo:org/app-v2", nil, time.Hour), map[string]any{"role": "read"})
	for _, sub := range []string{"repo:org/app-evil:ref:refs/heads/main", "repo:org/app:ref:refs/heads/main"} {
		status, r := b.Call(t, d.Issuer.Token(t, sub, nil, time.Hour), "IssueCredential", map[string]any{"role": "read"})
		wantError(t, "repo:org/app* for "+sub, status, r, http.StatusForbidden, "permission_denied")
	}
	if !strings.Contains(b.Logs(), `ends in a bare * after a name`) {
		t.Error("serve did not log the warning")
	}
}

// TestIdentityPolicyRenewAsksPolicy: once a reload takes the grant away, the
// holder can no longer renew the lease (it runs out at its expiry), and can
// still revoke it.
func TestIdentityPolicyRenewAsksPolicy(t *testing.T) {
	t.Parallel()
	d := harness.NewDeployment(t)
	b := harness.StartBroker(t, policyRoles(d, githubPolicies), d.Env()...)
	token := d.Issuer.Token(t, "repo:org/app:ref:refs/heads/main", map[string]any{"ref": "refs/heads/main", "repository_owner": "org"}, time.Hour)
	cred := issue(t, b, token, map[string]any{"role": "read"})
	if status, r := b.Call(t, token, "RenewLease", map[string]any{"leaseId": cred.LeaseID}); status != http.StatusOK {
		t.Fatalf("renew while granted: HTTP %d %v", status, r)
	}

	orig, err := os.ReadFile(b.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	revoked := strings.Replace(string(orig), `ref: [refs/heads/main, "refs/tags/v*"]`, `ref: ["refs/tags/v*"]`, 1)
	if revoked == string(orig) {
		t.Fatal("test config did not have the expected claims line")
	}
	if err := os.WriteFile(b.ConfigPath, []byte(revoked), 0o600); err != nil {
		t.Fatal(err)
	}
	b.Signal(t, syscall.SIGHUP)
	var msg string
	eventually(t, 20*time.Second, "renewal still allowed after the grant was removed", func() bool {
		status, r := b.Call(t, token, "RenewLease", map[string]any{"leaseId": cred.LeaseID})
		msg, _ = r["message"].(string)
		return status == http.StatusForbidden && r["code"] == "permission_denied"
	})
	if !strings.Contains(msg, "no longer granted") || !strings.Contains(msg, "whoami") {
		t.Errorf("renew denial says %q", msg)
	}
	if status, r := b.Call(t, token, "RevokeLease", map[string]any{"leaseId": cred.LeaseID}); status != http.StatusOK {
		t.Errorf("revoke by the holder after the grant went: HTTP %d %v", status, r)
	}
}
