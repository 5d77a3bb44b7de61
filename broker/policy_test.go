package broker

import (
	"testing"

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
			if tc.role != "" {
				if got := cfg.Allowed(tc.id, tc.role); got != tc.allow {
					t.Errorf("Allowed = %v, want %v", got, tc.allow)
				}
			}
			if got := cfg.IsAdmin(tc.id); got != tc.admin {
				t.Errorf("IsAdmin = %v, want %v", got, tc.admin)
			}
		})
	}
}

func TestGlobPattern(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		glob, subject string
		want          bool
	}{
		"Literal":          {"a.b", "a.b", true},
		"DotIsLiteral":     {"a.b", "axb", false},
		"StarCrossesSlash": {"spiffe://prod/ns/*", "spiffe://prod/ns/orders/sa/api", true},
		"Question":         {"job-?", "job-7", true},
		"QuestionOneChar":  {"job-?", "job-17", false},
		"Anchored":         {"api", "api-admin", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := globPattern(tc.glob).MatchString(tc.subject); got != tc.want {
				t.Errorf("glob %q on %q = %v", tc.glob, tc.subject, got)
			}
		})
	}
}

// TestClaimHas: a policy claim matches a token claim that is the string, or
// a list holding the string, and nothing else a token could carry.
func TestClaimHas(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		claim any
		want  string
		match bool
	}{
		"String":             {claim: "sre", want: "sre", match: true},
		"OtherString":        {claim: "dev", want: "sre"},
		"StringCase":         {claim: "SRE", want: "sre"},
		"StringList":         {claim: []any{"dev", "sre"}, want: "sre", match: true},
		"GoStringList":       {claim: []string{"dev", "sre"}, want: "sre", match: true},
		"ListWithout":        {claim: []any{"dev"}, want: "sre"},
		"EmptyList":          {claim: []any{}, want: "sre"},
		"NestedList":         {claim: []any{[]any{"sre"}}, want: "sre"},
		"NestedGoList":       {claim: []any{[]string{"sre"}}, want: "sre"},
		"DeeplyNested":       {claim: []any{[]any{[]any{"sre"}}}, want: "sre"},
		"BoolTrue":           {claim: true, want: "true"},
		"BoolInList":         {claim: []any{true}, want: "true"},
		"Number":             {claim: float64(1), want: "1"},
		"NumberInList":       {claim: []any{float64(42)}, want: "42"},
		"Object":             {claim: map[string]any{"sre": true}, want: "sre"},
		"ObjectPrintsAsWant": {claim: map[string]any{}, want: "map[]"},
		"ObjectInList":       {claim: []any{map[string]any{"sre": "sre"}}, want: "sre"},
		"Null":               {claim: nil, want: ""},
		"NullWantsNil":       {claim: nil, want: "<nil>"},
		"NullInList":         {claim: []any{nil}, want: "<nil>"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := claimHas(tc.claim, tc.want); got != tc.match {
				t.Errorf("claimHas(%#v, %q) = %v, want %v", tc.claim, tc.want, got, tc.match)
			}
		})
	}
}
