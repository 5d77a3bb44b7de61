package broker

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/authn"
)

func TestPolicy(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte(validConfig+`
  - name: orders-batch
    issuer: k8s-prod
    subject: "system:serviceaccount:orders:*"
    claims: {team: orders}
    roles: [orders-report]
`), testDrivers)
	if err != nil {
		t.Fatal(err)
	}
	k8s := func(sub string, claims map[string]any) authn.Identity {
		return authn.Identity{Issuer: "k8s-prod", Subject: sub, Claims: claims}
	}
	tests := map[string]struct {
		id    authn.Identity
		role  string
		allow bool
		admin bool
	}{
		"ExactSubject":         {id: k8s("system:serviceaccount:orders:api", nil), role: "orders-readonly", allow: true},
		"OtherSubject":         {id: k8s("system:serviceaccount:orders:web", nil), role: "orders-readonly"},
		"RoleNotInPolicy":      {id: k8s("system:serviceaccount:orders:api", nil), role: "orders-report"},
		"GlobAndClaim":         {id: k8s("system:serviceaccount:orders:batch", map[string]any{"team": "orders"}), role: "orders-report", allow: true},
		"GlobWithoutClaim":     {id: k8s("system:serviceaccount:orders:batch", nil), role: "orders-report"},
		"GlobWrongClaim":       {id: k8s("system:serviceaccount:orders:batch", map[string]any{"team": "billing"}), role: "orders-report"},
		"GlobOtherNamespace":   {id: k8s("system:serviceaccount:billing:batch", map[string]any{"team": "orders"}), role: "orders-report"},
		"OtherIssuerSameSub":   {id: authn.Identity{Issuer: "corp-oidc", Subject: "system:serviceaccount:orders:api"}, role: "orders-readonly"},
		"AdminByListMember":    {id: authn.Identity{Issuer: "corp-oidc", Subject: "ada", Claims: map[string]any{"groups": []any{"dev", "sre"}}}, admin: true},
		"AdminByEquality":      {id: authn.Identity{Issuer: "corp-oidc", Subject: "ada", Claims: map[string]any{"groups": "sre"}}, admin: true},
		"NotAdminWithoutGroup": {id: authn.Identity{Issuer: "corp-oidc", Subject: "bob", Claims: map[string]any{"groups": []any{"dev"}}}},
		"AdminGetsNoRoles":     {id: authn.Identity{Issuer: "corp-oidc", Subject: "ada", Claims: map[string]any{"groups": "sre"}}, role: "orders-readonly", admin: true},
		"UnknownRole":          {id: k8s("system:serviceaccount:orders:api", nil), role: "nope"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := cfg.Policy()
			if tc.role != "" {
				if got := p.Decide(tc.id, tc.role).Allowed(false); got != tc.allow {
					t.Errorf("Decide(%q).Allowed = %v, want %v", tc.role, got, tc.allow)
				}
			}
			if got := p.IsAdmin(tc.id); got != tc.admin {
				t.Errorf("IsAdmin = %v, want %v", got, tc.admin)
			}
		})
	}
}

// TestGlob: `*` stays within a segment (':' and '/' end one), `**` spans
// segments, a `*` that is a whole last segment is everything under it, `?`
// is one non-separator character.
func TestGlob(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		glob, subject string
		want          bool
	}{
		"Literal":      {"a.b", "a.b", true},
		"DotIsLiteral": {"a.b", "axb", false},
		"Anchored":     {"api", "api-admin", false},
		"Question":     {"job-?", "job-7", true},
		"QuestionOne":  {"job-?", "job-17", false},
		"QuestionSep":  {"a?b", "a:b", false},
		"QuestionSl":   {"a?b", "a/b", false},
		"LoneStar":     {"*", "anything:at/all", true},
		"LoneDouble":   {"**", "anything:at/all", true},
		"RegexpMeta":   {"a(b)+", "a(b)+", true},
		"RegexpMetaNo": {"a(b)+", "abb", false},
		"TripleRegexp": {"^a$", "^a$", true},

		// SPIFFE IDs.
		"SpiffeSegment":          {"spiffe://example.org/ns/*/sa/api", "spiffe://example.org/ns/orders/sa/api", true},
		"SpiffeSegmentNotDeeper": {"spiffe://example.org/ns/*/sa/api", "spiffe://example.org/ns/orders/x/sa/api", false},
		"SpiffeSegmentNotEmpty":  {"spiffe://example.org/ns/*/sa/api", "spiffe://example.org/ns/orders/sa/api2", false},
		"SpiffeLastSegment":      {"spiffe://example.org/ns/orders/sa/*", "spiffe://example.org/ns/orders/sa/api", true},
		"SpiffeOtherDomain":      {"spiffe://example.org/ns/*/sa/api", "spiffe://example.org.evil/ns/orders/sa/api", false},
		"SpiffeTrustDomainStar":  {"spiffe://example.org/**", "spiffe://example.org/ns/a/sa/b", true},
		"SpiffeNotOtherDomain":   {"spiffe://example.org/**", "spiffe://example.org.evil/ns/a/sa/b", false},
		"SpiffeDoubleMiddle":     {"spiffe://example.org/**/sa/api", "spiffe://example.org/ns/orders/sa/api", true},
		"SpiffeDoubleMiddleNo":   {"spiffe://example.org/**/sa/api", "spiffe://example.org/ns/orders/sa/web", false},
		"SpiffePrefixStar":       {"spiffe://example.org/ns/orders/sa/api-*", "spiffe://example.org/ns/orders/sa/api-v2", true},
		"SpiffePrefixStarDeeper": {"spiffe://example.org/ns/orders/sa/api-*", "spiffe://example.org/ns/orders/sa/api-v2/x", false},

		// Kubernetes service-account subjects.
		"K8sNamespace":      {"system:serviceaccount:orders:*", "system:serviceaccount:orders:api", true},
		"K8sOtherNamespace": {"system:serviceaccount:orders:*", "system:serviceaccount:billing:api", false},
		"K8sNamespacePart":  {"system:serviceaccount:orders:*", "system:serviceaccount:orders-evil:api", false},
		"K8sAnyNamespace":   {"system:serviceaccount:*:api", "system:serviceaccount:orders:api", true},
		"K8sAnyNsNotSA":     {"system:serviceaccount:*:api", "system:serviceaccount:orders:api-x", false},
		"K8sNsPrefix":       {"system:serviceaccount:team-*:api", "system:serviceaccount:team-a:api", true},
		"K8sNsPrefixColon":  {"system:serviceaccount:team-*:api", "system:serviceaccount:team-a:b:api", false},

		// GitHub Actions subjects.
		"GitHubRepoAll":         {"repo:org/app:*", "repo:org/app:ref:refs/heads/main", true},
		"GitHubRepoEnv":         {"repo:org/app:*", "repo:org/app:environment:prod", true},
		"GitHubRepoAllNotEvil":  {"repo:org/app:*", "repo:org/app-evil:ref:refs/heads/main", false},
		"GitHubNameStar":        {"repo:org/app*", "repo:org/app-evil:ref:refs/heads/main", false},
		"GitHubNameStarOwn":     {"repo:org/app*", "repo:org/app:ref:refs/heads/main", false},
		"GitHubNameStarSegment": {"repo:org/app*", "repo:org/app-v2", true},
		"GitHubEnvExact":        {"repo:org/app:environment:prod", "repo:org/app:environment:prod", true},
		"GitHubEnvStar":         {"repo:org/app:environment:*", "repo:org/app:environment:prod", true},
		"GitHubEnvNotRef":       {"repo:org/app:environment:*", "repo:org/app:ref:refs/heads/main", false},
		"GitHubRefBranches":     {"repo:org/app:ref:refs/heads/*", "repo:org/app:ref:refs/heads/feature/x", true},
		"GitHubAnyRepoMain":     {"repo:org/*:ref:refs/heads/main", "repo:org/app:ref:refs/heads/main", true},
		"GitHubAnyRepoNotOrg":   {"repo:org/*:ref:refs/heads/main", "repo:org/app/x:ref:refs/heads/main", false},
		"GitHubDoubleSpans":     {"repo:org/app**", "repo:org/app-evil:ref:refs/heads/main", true},
		"GitHubOrgDouble":       {"repo:org/**", "repo:org/app:ref:refs/heads/main", true},
		"GitHubOrgDoubleNotOrg": {"repo:org/**", "repo:org-evil/app:ref:refs/heads/main", false},
		"GitHubPullRequest":     {"repo:org/app:pull_request", "repo:org/app:pull_request", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g, err := compileGlob(tc.glob)
			if err != nil {
				t.Fatal(err)
			}
			if got := g.match(tc.subject); got != tc.want {
				t.Errorf("glob %q on %q = %v, want %v", tc.glob, tc.subject, got, tc.want)
			}
		})
	}
}

func TestGlobRefused(t *testing.T) {
	t.Parallel()
	if _, err := compileGlob("repo:org/***"); err == nil || !strings.Contains(err.Error(), "write **") {
		t.Errorf("compileGlob(***) = %v, want an error saying to write **", err)
	}
}

// TestGlobWarning: a pattern that ends in a bare * after a name is warned
// about with what to write instead; nothing else is.
func TestGlobWarning(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		pattern string
		want    []string // substrings; none means no warning
	}{
		"NameStar":    {"repo:org/app*", []string{`"repo:org/app:*"`, `"repo:org/app/*"`, "**"}},
		"SpiffeName":  {"spiffe://example.org/ns/orders/sa/api*", []string{`"spiffe://example.org/ns/orders/sa/api:*"`}},
		"DigitStar":   {"repo:org/app2*", []string{`"repo:org/app2:*"`}},
		"DashStar":    {"system:serviceaccount:orders:api-*", nil},
		"ColonStar":   {"repo:org/app:*", nil},
		"SlashStar":   {"spiffe://example.org/ns/*", nil},
		"MiddleStar":  {"spiffe://example.org/ns/*/sa/api", nil},
		"Double":      {"repo:org/app**", nil},
		"LoneStar":    {"*", nil},
		"NoStar":      {"repo:org/app:ref:refs/heads/main", nil},
		"Empty":       {"", nil},
		"QuestionEnd": {"job-?*", nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := globWarning(tc.pattern)
			if (got != "") != (tc.want != nil) {
				t.Fatalf("globWarning(%q) = %q, want a warning: %v", tc.pattern, got, tc.want != nil)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("globWarning(%q) = %q, want it to say %s", tc.pattern, got, w)
				}
			}
		})
	}
}

// TestClaimMatches: a policy claim matches a token claim that is a string
// one of the wanted globs matches, or a list holding such a string, and
// nothing else a token could carry.
func TestClaimMatches(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		claim any
		want  []string
		match bool
	}{
		"String":             {claim: "sre", want: []string{"sre"}, match: true},
		"OtherString":        {claim: "dev", want: []string{"sre"}},
		"StringCase":         {claim: "SRE", want: []string{"sre"}},
		"StringList":         {claim: []any{"dev", "sre"}, want: []string{"sre"}, match: true},
		"GoStringList":       {claim: []string{"dev", "sre"}, want: []string{"sre"}, match: true},
		"ListWithout":        {claim: []any{"dev"}, want: []string{"sre"}},
		"EmptyList":          {claim: []any{}, want: []string{"sre"}},
		"NestedList":         {claim: []any{[]any{"sre"}}, want: []string{"sre"}},
		"NestedGoList":       {claim: []any{[]string{"sre"}}, want: []string{"sre"}},
		"DeeplyNested":       {claim: []any{[]any{[]any{"sre"}}}, want: []string{"sre"}},
		"BoolTrue":           {claim: true, want: []string{"true"}},
		"BoolInList":         {claim: []any{true}, want: []string{"true"}},
		"Number":             {claim: float64(1), want: []string{"1"}},
		"NumberInList":       {claim: []any{float64(42)}, want: []string{"42"}},
		"Object":             {claim: map[string]any{"sre": true}, want: []string{"sre"}},
		"ObjectPrintsAsWant": {claim: map[string]any{}, want: []string{"map[]"}},
		"ObjectInList":       {claim: []any{map[string]any{"sre": "sre"}}, want: []string{"sre"}},
		"Null":               {claim: nil, want: []string{""}},
		"NullWantsNil":       {claim: nil, want: []string{"<nil>"}},
		"NullInList":         {claim: []any{nil}, want: []string{"<nil>"}},
		"NullStar":           {claim: nil, want: []string{"*"}},
		"ObjectStar":         {claim: map[string]any{"a": "b"}, want: []string{"**"}},
		"NumberStar":         {claim: float64(3), want: []string{"*"}},

		// Any of a list.
		"AnyOfFirst":      {claim: "sre", want: []string{"sre", "dba"}, match: true},
		"AnyOfSecond":     {claim: "dba", want: []string{"sre", "dba"}, match: true},
		"AnyOfNone":       {claim: "dev", want: []string{"sre", "dba"}},
		"AnyOfListClaim":  {claim: []any{"dev", "dba"}, want: []string{"sre", "dba"}, match: true},
		"AnyOfNestedList": {claim: []any{[]any{"dba"}}, want: []string{"sre", "dba"}},

		// Globs with the segment rules.
		"RefBranch":         {claim: "refs/heads/main", want: []string{"refs/heads/*"}, match: true},
		"RefNotTag":         {claim: "refs/tags/v1", want: []string{"refs/heads/*"}},
		"RefPrefix":         {claim: "refs/tags/v1.2", want: []string{"refs/tags/v*"}, match: true},
		"RefPrefixNoDeeper": {claim: "refs/tags/v1/x", want: []string{"refs/tags/v*"}},
		"RepoSegment":       {claim: "org/app", want: []string{"org/*"}, match: true},
		"RepoNotOtherOrg":   {claim: "org-evil/app", want: []string{"org/*"}},
		"GlobInList":        {claim: []any{"team-a", "ops"}, want: []string{"team-*"}, match: true},
		"GlobNestedList":    {claim: []any{[]any{"team-a"}}, want: []string{"team-*"}},
		"WorkflowRef":       {claim: "org/shared/.github/workflows/deploy.yml@refs/heads/main", want: []string{"org/shared/.github/workflows/deploy.yml@**"}, match: true},
		"WorkflowRefStar":   {claim: "org/shared/.github/workflows/deploy.yml@refs/heads/main", want: []string{"org/shared/.github/workflows/deploy.yml@*"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var want []glob
			for _, w := range tc.want {
				g, err := compileGlob(w)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, g)
			}
			if got := claimMatches(tc.claim, want); got != tc.match {
				t.Errorf("claimMatches(%#v, %q) = %v, want %v", tc.claim, tc.want, got, tc.match)
			}
		})
	}
}

// decideConfig has a role granted normally, one break-glass only, and one
// not renewable, to GitHub Actions identities told apart by claims.
const decideConfig = `
listen: 127.0.0.1:8420
store: {dsn: env:CREDBROKER_DATABASE_URL}
issuers:
  - {name: github, issuer: https://token.actions.githubusercontent.com, audiences: [credbroker], jwks_file: /etc/jwks.json}
backends:
  - {name: pg, plugin: postgres, environment: test, owner: team-test, connection: {dsn: env:PG}}
roles:
  - {name: read, backend: pg, default_ttl: 30m, max_ttl: 2h, postgres: {member_of: [r]}}
  - {name: write, backend: pg, default_ttl: 10m, max_ttl: 1h, break_glass_max_ttl: 5m, postgres: {member_of: [w]}}
  - {name: batch, backend: pg, default_ttl: 10m, max_ttl: 1h, renewable: false, postgres: {member_of: [b]}}
policies:
  - name: app-ci
    issuer: github
    subject: "repo:org/app:*"
    claims:
      ref: [refs/heads/main, "refs/tags/v*"]
      repository_owner: org
    roles: [read, batch]
  - name: app-deploy
    issuer: github
    subject: "repo:org/app:environment:*"
    claims: {environment: prod, job_workflow_ref: "org/shared/.github/workflows/deploy.yml@**"}
    roles: [read]
    break_glass_roles: [write]
  - name: app-prod-write
    issuer: github
    subject: repo:org/app:environment:prod
    claims: {environment: prod, actor: [alice, bob]}
    roles: [write]
`

// TestDecide: the one decision function answers whether, how (normal or
// break-glass), with which TTL cap and renewability.
func TestDecide(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte(decideConfig), testDrivers)
	if err != nil {
		t.Fatal(err)
	}
	gh := func(sub string, claims map[string]any) authn.Identity {
		return authn.Identity{Issuer: "github", Subject: sub, Claims: claims}
	}
	mainCI := gh("repo:org/app:ref:refs/heads/main", map[string]any{"ref": "refs/heads/main", "repository_owner": "org"})
	deploy := func(actor string) authn.Identity {
		return gh("repo:org/app:environment:prod", map[string]any{"environment": "prod", "actor": actor,
			"job_workflow_ref": "org/shared/.github/workflows/deploy.yml@refs/heads/main"})
	}
	tests := map[string]struct {
		id        authn.Identity
		role      string
		access    Access
		maxTTL    time.Duration // normal
		bgTTL     time.Duration
		renewable bool
		policies  []string
		bgPol     []string
	}{
		"MainRead":         {id: mainCI, role: "read", access: AccessNormal, maxTTL: 2 * time.Hour, bgTTL: 15 * time.Minute, renewable: true, policies: []string{"app-ci"}},
		"MainBatch":        {id: mainCI, role: "batch", access: AccessNormal, maxTTL: time.Hour, bgTTL: 15 * time.Minute, policies: []string{"app-ci"}},
		"MainNoWrite":      {id: mainCI, role: "write"},
		"TagRead":          {id: gh("repo:org/app:ref:refs/tags/v1.2", map[string]any{"ref": "refs/tags/v1.2", "repository_owner": "org"}), role: "read", access: AccessNormal, maxTTL: 2 * time.Hour, bgTTL: 15 * time.Minute, renewable: true, policies: []string{"app-ci"}},
		"BranchNoRead":     {id: gh("repo:org/app:ref:refs/heads/dev", map[string]any{"ref": "refs/heads/dev", "repository_owner": "org"}), role: "read"},
		"EvilRepoNoRead":   {id: gh("repo:org/app-evil:ref:refs/heads/main", map[string]any{"ref": "refs/heads/main", "repository_owner": "org"}), role: "read"},
		"OwnerMissing":     {id: gh("repo:org/app:ref:refs/heads/main", map[string]any{"ref": "refs/heads/main"}), role: "read"},
		"DeployRead":       {id: deploy("carol"), role: "read", access: AccessNormal, maxTTL: 2 * time.Hour, bgTTL: 15 * time.Minute, renewable: true, policies: []string{"app-deploy"}},
		"DeployBreakGlass": {id: deploy("carol"), role: "write", access: AccessBreakGlass, maxTTL: time.Hour, bgTTL: 5 * time.Minute, renewable: true, bgPol: []string{"app-deploy"}},
		"DeployNormalToo":  {id: deploy("alice"), role: "write", access: AccessNormal, maxTTL: time.Hour, bgTTL: 5 * time.Minute, renewable: true, policies: []string{"app-prod-write"}, bgPol: []string{"app-deploy"}},
		"UnknownRole":      {id: deploy("alice"), role: "nope"},
		"OtherIssuer":      {id: authn.Identity{Issuer: "k8s", Subject: "repo:org/app:ref:refs/heads/main", Claims: mainCI.Claims}, role: "read"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			g := cfg.Policy().Decide(tc.id, tc.role)
			if g.Access != tc.access {
				t.Fatalf("Access = %v, want %v", g.Access, tc.access)
			}
			if g.Allowed(false) != (tc.access == AccessNormal) || g.Allowed(true) != (tc.access != AccessNone) {
				t.Errorf("Allowed(false, true) = %v, %v for access %v", g.Allowed(false), g.Allowed(true), g.Access)
			}
			if tc.access == AccessNone {
				return
			}
			if g.MaxTTL(false) != tc.maxTTL || g.MaxTTL(true) != tc.bgTTL {
				t.Errorf("MaxTTL = %s, break-glass %s; want %s, %s", g.MaxTTL(false), g.MaxTTL(true), tc.maxTTL, tc.bgTTL)
			}
			if g.Renewable() != tc.renewable {
				t.Errorf("Renewable = %v", g.Renewable())
			}
			if !slices.Equal(g.Policies, tc.policies) || !slices.Equal(g.BreakGlassPolicies, tc.bgPol) {
				t.Errorf("policies %v, break-glass %v; want %v, %v", g.Policies, g.BreakGlassPolicies, tc.policies, tc.bgPol)
			}
		})
	}

	t.Run("Grants", func(t *testing.T) {
		t.Parallel()
		var got []string
		for _, g := range cfg.Policy().Grants(deploy("carol")) {
			got = append(got, g.Role.Name+":"+map[Access]string{AccessNormal: "normal", AccessBreakGlass: "break-glass"}[g.Access])
		}
		if want := []string{"read:normal", "write:break-glass"}; !slices.Equal(got, want) {
			t.Errorf("Grants = %v, want %v", got, want)
		}
		if got, want := cfg.Policy().Matched(deploy("alice")), []string{"app-deploy", "app-prod-write"}; !slices.Equal(got, want) {
			t.Errorf("Matched = %v, want %v", got, want)
		}
		if got, want := cfg.Policy().ClaimsConsidered("github"), []string{"actor", "environment", "job_workflow_ref", "ref", "repository_owner"}; !slices.Equal(got, want) {
			t.Errorf("ClaimsConsidered = %v, want %v", got, want)
		}
		n, bg := cfg.Policy().RolePolicies("write")
		if !slices.Equal(n, []string{"app-prod-write"}) || !slices.Equal(bg, []string{"app-deploy"}) {
			t.Errorf("RolePolicies(write) = %v, %v", n, bg)
		}
	})
}

// TestPolicyConfig: claim values that are neither a string nor a list of
// strings, an empty list and a *** are refused with the path and what to
// write; a subject ending in name* is a warning; old configs still parse.
func TestPolicyConfig(t *testing.T) {
	t.Parallel()
	base := strings.Split(decideConfig, "policies:\n")[0] + "policies:\n"
	tests := map[string]struct {
		policy  string
		errs    []string
		warning string
	}{
		"ClaimString":     {policy: `{name: p, issuer: github, claims: {ref: refs/heads/main}, roles: [read]}`},
		"ClaimList":       {policy: `{name: p, issuer: github, claims: {ref: [a, b]}, roles: [read]}`},
		"ClaimBoolScalar": {policy: `{name: p, issuer: github, claims: {ref_protected: true}, roles: [read]}`},
		"ClaimMap":        {policy: `{name: p, issuer: github, claims: {ref: {a: b}}, roles: [read]}`, errs: []string{"policies[0].claims.ref", "a string or a list of strings"}},
		"ClaimNestedList": {policy: `{name: p, issuer: github, claims: {ref: [[a]]}, roles: [read]}`, errs: []string{"policies[0].claims.ref", "a string or a list of strings"}},
		"ClaimEmptyList":  {policy: `{name: p, issuer: github, claims: {ref: []}, roles: [read]}`, errs: []string{"policies[0].claims.ref", "matches no token", "write the value"}},
		"ClaimNull":       {policy: `{name: p, issuer: github, claims: {ref: null}, roles: [read]}`, errs: []string{"policies[0].claims.ref", "matches no token", "write the value"}},
		"ClaimNumber":     {policy: `{name: p, issuer: github, claims: {run_attempt: 1}, roles: [read]}`},
		"ClaimTriple":     {policy: `{name: p, issuer: github, claims: {ref: [a, "x***"]}, roles: [read]}`, errs: []string{"policies[0].claims.ref[1]", "write **"}},
		"SubjectTriple":   {policy: `{name: p, issuer: github, subject: "repo:***", roles: [read]}`, errs: []string{"policies[0].subject", "write **"}},
		"SubjectNameStar": {policy: `{name: p, issuer: github, subject: "repo:org/app*", roles: [read]}`, warning: `policies[0].subject: "repo:org/app*" ends in a bare * after a name`},
		"OldK8sGlob":      {policy: `{name: p, issuer: github, subject: "system:serviceaccount:orders:*", roles: [read]}`},
		"OldLoneStar":     {policy: `{name: p, issuer: github, subject: "*", roles: [read]}`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := ParseConfig([]byte(base+"  - "+tc.policy+"\n"), testDrivers)
			if tc.errs != nil {
				if err == nil {
					t.Fatal("ParseConfig succeeded")
				}
				for _, e := range tc.errs {
					if !strings.Contains(err.Error(), e) {
						t.Errorf("error %q does not say %q", err, e)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(cfg.Warnings, "\n")
			if tc.warning == "" && got != "" || !strings.Contains(got, tc.warning) {
				t.Errorf("warnings %q, want %q", got, tc.warning)
			}
		})
	}
}
