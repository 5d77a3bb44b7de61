package broker

import (
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/credbroker/credbroker/authn"
	"github.com/credbroker/credbroker/leases"
)

// TestDecideIssueAndRenewal: the issue and renewal decisions, and the TTL a
// grant gives, come from the policy alone; handlers only pass them on.
func TestDecideIssueAndRenewal(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte(decideConfig), testDrivers)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Policy()
	gh := func(sub string, claims map[string]any) authn.Identity {
		return authn.Identity{Issuer: "github", Subject: sub, Claims: claims}
	}
	mainCI := gh("repo:org/app:ref:refs/heads/main", map[string]any{"ref": "refs/heads/main", "repository_owner": "org"})
	carol := gh("repo:org/app:environment:prod", map[string]any{"environment": "prod", "actor": "carol",
		"job_workflow_ref": "org/shared/.github/workflows/deploy.yml@refs/heads/main"})
	stranger := gh("repo:other/x:ref:refs/heads/main", map[string]any{"ref": "refs/heads/main", "repository_owner": "other"})

	codeOf := func(err error) connect.Code {
		if err == nil {
			return 0
		}
		return connect.CodeOf(err)
	}
	for name, tc := range map[string]struct {
		id         authn.Identity
		role       string
		breakGlass bool
		want       connect.Code
	}{
		"Granted":            {id: mainCI, role: "read"},
		"Unknown":            {id: mainCI, role: "nope", want: connect.CodePermissionDenied},
		"NotGranted":         {id: mainCI, role: "write", want: connect.CodePermissionDenied},
		"BreakGlassNoReason": {id: carol, role: "write", want: connect.CodePermissionDenied},
		"BreakGlass":         {id: carol, role: "write", breakGlass: true},
		"NormalWithReason":   {id: mainCI, role: "read", breakGlass: true},
	} {
		g, err := p.DecideIssue(tc.id, tc.role, tc.breakGlass)
		if codeOf(err) != tc.want || (err == nil && g.Role.Name != tc.role) {
			t.Errorf("%s: DecideIssue = %v, %v; want code %v", name, g.Role, err, tc.want)
		}
	}

	// TTL: the default within the cap, a request clamped to it.
	g, _ := p.DecideIssue(carol, "write", true)
	for _, tc := range []struct {
		breakGlass bool
		requested  time.Duration
		want       time.Duration
		clamped    bool
	}{
		{false, 0, 10 * time.Minute, false},
		{true, 0, 5 * time.Minute, false},
		{true, time.Minute, time.Minute, false},
		{true, time.Hour, 5 * time.Minute, true},
		{false, 2 * time.Hour, time.Hour, true},
	} {
		if ttl, clamped := g.TTL(tc.breakGlass, tc.requested); ttl != tc.want || clamped != tc.clamped {
			t.Errorf("TTL(%t, %s) = %s, %t; want %s, %t", tc.breakGlass, tc.requested, ttl, clamped, tc.want, tc.clamped)
		}
	}

	lease := func(id authn.Identity, role string, renewable, breakGlass bool) leases.Lease {
		return leases.Lease{Issuer: id.Issuer, Subject: id.Subject, Role: role, Renewable: renewable, BreakGlass: breakGlass, ExpiresAt: time.Now().Add(time.Minute)}
	}
	for name, tc := range []struct {
		name string
		id   authn.Identity
		l    leases.Lease
		want connect.Code
	}{
		{"Holder", mainCI, lease(mainCI, "read", true, false), 0},
		{"IssuedNotRenewable", mainCI, lease(mainCI, "read", false, false), connect.CodeFailedPrecondition},
		{"RoleNotRenewable", mainCI, lease(mainCI, "batch", true, false), connect.CodeFailedPrecondition},
		{"RoleGone", mainCI, lease(mainCI, "removed", true, false), connect.CodeFailedPrecondition},
		{"HolderNoLongerGranted", stranger, lease(stranger, "read", true, false), connect.CodePermissionDenied},
		{"BreakGlassHolder", carol, lease(carol, "write", true, true), 0},
		{"BreakGlassOnlyIssuedNormally", carol, lease(carol, "write", true, false), connect.CodePermissionDenied},
		// Not the holder (an admin, as ownLease decided): the holder's grants
		// do not matter.
		{"NotHolder", stranger, lease(mainCI, "read", true, false), 0},
	} {
		if _, err := p.DecideRenewal(tc.id, tc.l); codeOf(err) != tc.want {
			t.Errorf("%d %s: DecideRenewal = %v, want code %v", name, tc.name, err, tc.want)
		}
	}
}
