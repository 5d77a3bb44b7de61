package postgres

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins"
)

func TestMarkerGrant(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		version int
		want    string
	}{
		"PostgreSQL14": {140011, ""},
		"PostgreSQL15": {150008, ""},
		"PostgreSQL16": {160000, `GRANT "credbroker_managed" TO "cb_u" WITH INHERIT FALSE, SET FALSE`},
		"PostgreSQL17": {170002, `GRANT "credbroker_managed" TO "cb_u" WITH INHERIT FALSE, SET FALSE`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := markerGrant(tt.version, ident("cb_u")); got != tt.want {
				t.Errorf("markerGrant(%d) = %q, want %q", tt.version, got, tt.want)
			}
		})
	}
}

// TestCreateStepsMarker: the statements Create runs never make the user a
// member of the marker it could SET ROLE to.
func TestCreateStepsMarker(t *testing.T) {
	t.Parallel()
	roles := map[string]*Role{
		"MemberOf":           {MemberOf: []string{"readers"}},
		"CreationStatements": {CreationStatements: []string{"CREATE ROLE {{name}} LOGIN PASSWORD {{password}}"}},
	}
	for name, role := range roles {
		for _, version := range []int{150008, 160002} {
			p := &Plugin{version: version}
			steps, err := p.createSteps(plugins.CreateOf[*Role]{
				Username: "cb_u", Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Role: "r", Spec: role,
			})
			if err != nil {
				t.Fatalf("%s on %d: %v", name, version, err)
			}
			var marker []string
			comment := false
			for _, s := range steps {
				if strings.Contains(s.sql, markerRole) {
					marker = append(marker, s.sql)
				}
				if c, ok := strings.CutPrefix(s.sql, `COMMENT ON ROLE "cb_u" IS 'credbroker:created=`); ok {
					comment = true
					// The date and the contract alone: what Revoke needs is in
					// the lease's state.
					if _, err := time.Parse(time.RFC3339+";contract=2'", c); err != nil {
						t.Errorf("%s on %d: the comment holds more than the date: %s", name, version, s.sql)
					}
				}
			}
			want := []string(nil)
			if version >= 160000 {
				want = []string{`GRANT "credbroker_managed" TO "cb_u" WITH INHERIT FALSE, SET FALSE`}
			}
			if !slices.Equal(marker, want) {
				t.Errorf("%s on %d: statements naming the marker %q, want %q", name, version, marker, want)
			}
			if !comment {
				t.Errorf("%s on %d: no COMMENT ON ROLE marks the user as the plugin's", name, version)
			}
		}
	}
}

func TestDropOwnedSteps(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		reassign string
		acl      bool
		want     []string
	}{
		"Default":    {want: []string{`DROP OWNED BY "cb_u"`}},
		"DefaultACL": {acl: true, want: []string{"SELECT pg_advisory_xact_lock($1)", `DROP OWNED BY "cb_u"`}},
		"Reassign": {reassign: `attic"x`, want: []string{
			`REASSIGN OWNED BY "cb_u" TO "attic""x"`, `DROP OWNED BY "cb_u"`,
		}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, s := range dropOwnedSteps(ident("cb_u"), tt.reassign, tt.acl) {
				got = append(got, s.sql)
				if strings.Contains(strings.ToUpper(s.sql), "CURRENT_USER") || strings.Contains(s.sql, "SESSION_USER") {
					t.Errorf("a statement hands objects to the admin: %s", s.sql)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("dropOwnedSteps = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRoleComment(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 11, 28, 6, 0, 0, 0, time.FixedZone("X", 3600))
	c := roleComment(created)
	if c != "credbroker:created=2026-11-28T05:00:00Z;contract=2" {
		t.Errorf("roleComment = %q, want the marker, the date in UTC and the contract alone", c)
	}
	if info, ours := parseRoleComment(c); !ours || !info.created.Equal(created) || info != (roleInfo{created: info.created, v2: true}) {
		t.Errorf("parseRoleComment(%q) = %+v, %t", c, info, ours)
	}
	for _, c := range []string{"", "a role", "credbroker", "Credbroker:created=x"} {
		if _, ours := parseRoleComment(c); ours {
			t.Errorf("parseRoleComment(%q) says the role is ours", c)
		}
	}
}

// legacyRoleComment is the comment releases before contract v2 wrote,
// copied from that release, for the tests of reading it.
func legacyRoleComment(info roleInfo) string {
	c := commentPrefix + "created=" + info.created.UTC().Format(time.RFC3339)
	if info.revocationKey != "" {
		c += ";revocation_statements=" + info.revocationKey
	}
	if info.reassignOwnedTo != "" {
		c += ";reassign_owned_to=" + url.QueryEscape(info.reassignOwnedTo)
	}
	return c
}

// TestLegacyRoleComment: the comments an earlier release wrote still read
// back whole, for the upgrade of its leases.
func TestLegacyRoleComment(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)
	tests := map[string]roleInfo{
		"Plain":             {created: created},
		"Revocation":        {created: created, revocationKey: "0123abcd"},
		"Reassign":          {created: created, reassignOwnedTo: "attic"},
		"ReassignAwkward":   {created: created, revocationKey: "k", reassignOwnedTo: `a;b=c %d "é'`},
		"ReassignSeparator": {created: created, reassignOwnedTo: ";revocation_statements=evil"},
	}
	for name, info := range tests {
		t.Run(name, func(t *testing.T) {
			got, ours := parseRoleComment(legacyRoleComment(info))
			if !ours || got != info {
				t.Errorf("parseRoleComment(legacyRoleComment(%+v)) = %+v, %t", info, got, ours)
			}
		})
	}
	// A role an even older release made: only created=.
	if info, ours := parseRoleComment("credbroker:created=2026-01-02T03:04:05Z"); !ours || info.reassignOwnedTo != "" || info.created.IsZero() {
		t.Errorf("an older release's comment reads as %+v, %t", info, ours)
	}
}

func TestSuperuserWarning(t *testing.T) {
	t.Parallel()
	for version, wantAdmin := range map[int]bool{150008: false, 160000: true} {
		w := superuserWarning("admin", version)
		if !strings.Contains(w, "superuser") || !strings.Contains(w, "CREATEROLE") {
			t.Errorf("version %d: %q does not name superuser and CREATEROLE", version, w)
		}
		if strings.Contains(w, "ADMIN OPTION") != wantAdmin {
			t.Errorf("version %d: %q: mentions ADMIN OPTION = %t, want %t", version, w, !wantAdmin, wantAdmin)
		}
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		role, finding string
		path          []string
		want          string
	}{
		"Own":            {"g", "SUPERUSER", []string{"g"}, `"g" has SUPERUSER`},
		"Predefined":     {"pg_signal_backend", predefinedFinding, []string{"pg_signal_backend"}, `"pg_signal_backend" is a dangerous predefined role`},
		"Member":         {"m", "CREATEROLE", []string{"g", "m"}, `"g" is a member of "m", which has CREATEROLE`},
		"Chain":          {"pg_read_server_files", predefinedFinding, []string{"g", "m", "pg_read_server_files"}, `"g" is a member of "pg_read_server_files" ("g" → "m" → "pg_read_server_files"), a dangerous predefined role`},
		"MemberAdminOpt": {"m", `ADMIN OPTION on role "x"`, []string{"g", "m"}, `"g" is a member of "m", which has ADMIN OPTION on role "x"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := describe(tt.role, tt.path, tt.finding); got != tt.want {
				t.Errorf("describe = %s\nwant       %s", got, tt.want)
			}
		})
	}
}

func TestAdminMembership(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		version int
		want    string
	}{
		"PostgreSQL15": {150008, `GRANT "cb_u" TO CURRENT_USER`},
		"PostgreSQL16": {160004, `GRANT "cb_u" TO CURRENT_USER WITH INHERIT TRUE`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := adminMembership(tt.version, ident("cb_u")); got != tt.want {
				t.Errorf("adminMembership = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestReachQuery: on PostgreSQL 16+ only memberships that let a role act as
// another (SET or INHERIT) count, so the marker's own membership, granted
// with neither, does not; before 16 every membership counts.
func TestReachQuery(t *testing.T) {
	const filter = "(m.set_option OR m.inherit_option)"
	if q := reachQuery(150000, "$2"); strings.Contains(q, filter) {
		t.Errorf("reachQuery(15) filters memberships by options PostgreSQL 15 does not have:\n%s", q)
	}
	if q := reachQuery(160000, "$2"); !strings.Contains(q, filter) {
		t.Errorf("reachQuery(16) counts memberships without SET or INHERIT, such as the marker's own:\n%s", q)
	}
}
