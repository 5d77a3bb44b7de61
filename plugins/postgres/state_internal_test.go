package postgres

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins"
)

// TestLegacyRevocationKey pins the key an earlier release wrote into the
// comment of each user (computed with sha256sum from the statements joined
// by a NUL byte): if it drifts, no legacy lease finds its statements again.
func TestLegacyRevocationKey(t *testing.T) {
	t.Parallel()
	got := legacyRevocationKey([]string{"REVOKE ALL ON t FROM {{name}}", "DROP SCHEMA x"})
	if want := "88c6ea9c7f1a4519e4326b00efefaf97"; got != want {
		t.Errorf("legacyRevocationKey = %s, want %s", got, want)
	}
}

func TestStateRoundTrip(t *testing.T) {
	t.Parallel()
	roles := map[string]*Role{
		"Nothing":  {MemberOf: []string{"r"}},
		"Reassign": {MemberOf: []string{"r"}, ReassignOwnedTo: `attic"x`},
		"Statements": {
			CreationStatements:   []string{"CREATE ROLE {{name}} LOGIN PASSWORD {{password}}"},
			RevocationStatements: []string{"REVOKE ALL ON t FROM {{name}}", "INSERT INTO log VALUES ('{{username}}')"},
			ReassignOwnedTo:      "attic",
		},
	}
	for name, role := range roles {
		t.Run(name, func(t *testing.T) {
			b, err := stateOf(role).encode()
			if err != nil {
				t.Fatal(err)
			}
			var raw map[string]any
			if err := json.Unmarshal(b, &raw); err != nil || raw["v"] != 1.0 {
				t.Fatalf("state %s: want a JSON object with v 1 (%v)", b, err)
			}
			for _, s := range role.CreationStatements {
				if strings.Contains(string(b), s) {
					t.Errorf("state %s holds the creation statements: Revoke does not need them", b)
				}
			}
			got, err := decodeState(b)
			if err != nil {
				t.Fatalf("decodeState(%s): %v", b, err)
			}
			if !slices.Equal(got.RevocationStatements, role.RevocationStatements) || got.ReassignOwnedTo != role.ReassignOwnedTo || got.RevocationStatementsUnknown {
				t.Errorf("decodeState(%s) = %+v", b, got)
			}
		})
	}
}

func TestDecodeStateRefuses(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ state, want string }{
		"Empty":           {``, "EOF"},
		"NotJSON":         {`revocation_statements=abc`, "invalid"},
		"NoVersion":       {`{}`, "version 0"},
		"NewerVersion":    {`{"v":2,"revocation_statements":["x"]}`, "version 2"},
		"UnknownField":    {`{"v":1,"drop_everything":true}`, "drop_everything"},
		"Trailing":        {`{"v":1}{"v":1}`, "after"},
		"EmptyStatement":  {`{"v":1,"revocation_statements":[" "]}`, "empty statement"},
		"PasswordInStmt":  {`{"v":1,"revocation_statements":["ALTER ROLE {{name}} PASSWORD {{password}}"]}`, "{{password}}"},
		"ReassignMarker":  {`{"v":1,"reassign_owned_to":"credbroker_managed"}`, "marker role"},
		"ReassignPg":      {`{"v":1,"reassign_owned_to":"pg_write_server_files"}`, "predefined"},
		"ReassignBlank":   {`{"v":1,"reassign_owned_to":" "}`, "not a role name"},
		"ReassignTooLong": {`{"v":1,"reassign_owned_to":"` + strings.Repeat("a", 64) + `"}`, "63"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := decodeState([]byte(tt.state))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("decodeState(%s) = %v, want an error containing %q", tt.state, err, tt.want)
			}
		})
	}
}

// TestLegacyState: the state of a user an earlier release issued takes the
// role's current statements only when they are the ones the user's comment
// names, and reassign_owned_to from the comment, whatever the role says now.
func TestLegacyState(t *testing.T) {
	t.Parallel()
	statements := []string{"REVOKE ALL ON t FROM {{name}}"}
	key := legacyRevocationKey(statements)
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := map[string]struct {
		info roleInfo
		spec *Role
		want state
	}{
		"Plain": {
			info: roleInfo{created: created},
			spec: &Role{MemberOf: []string{"r"}, RevocationStatements: statements, ReassignOwnedTo: "new_attic"},
			want: state{V: 1},
		},
		"StatementsMatch": {
			info: roleInfo{created: created, revocationKey: key, reassignOwnedTo: "attic"},
			spec: &Role{MemberOf: []string{"r"}, RevocationStatements: statements},
			want: state{V: 1, RevocationStatements: statements, ReassignOwnedTo: "attic"},
		},
		"StatementsChanged": {
			info: roleInfo{created: created, revocationKey: key},
			spec: &Role{MemberOf: []string{"r"}, RevocationStatements: []string{"REVOKE ALL ON u FROM {{name}}"}},
			want: state{V: 1, RevocationStatementsUnknown: true},
		},
		"StatementsRemoved": {
			info: roleInfo{created: created, revocationKey: key},
			spec: &Role{MemberOf: []string{"r"}},
			want: state{V: 1, RevocationStatementsUnknown: true},
		},
		"RoleGone": {
			info: roleInfo{created: created, revocationKey: key, reassignOwnedTo: "attic"},
			want: state{V: 1, ReassignOwnedTo: "attic", RevocationStatementsUnknown: true},
		},
		"RoleGoneNoStatements": {
			info: roleInfo{created: created, reassignOwnedTo: "attic"},
			want: state{V: 1, ReassignOwnedTo: "attic"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := legacyState(tt.info, tt.spec)
			if got.V != tt.want.V || !slices.Equal(got.RevocationStatements, tt.want.RevocationStatements) ||
				got.ReassignOwnedTo != tt.want.ReassignOwnedTo || got.RevocationStatementsUnknown != tt.want.RevocationStatementsUnknown {
				t.Errorf("legacyState = %+v, want %+v", got, tt.want)
			}
			// What it derives is a state Revoke reads.
			b, err := got.encode()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decodeState(b); err != nil {
				t.Errorf("decodeState(%s): %v", b, err)
			}
		})
	}
}

// TestParseRoleStateTooLarge: revocation statements that would not fit in
// the state the lease store keeps are refused when the config is read, not
// at the first issue.
func TestParseRoleStateTooLarge(t *testing.T) {
	t.Parallel()
	long := "INSERT INTO log VALUES ('{{name}}', '" + strings.Repeat("x", plugins.MaxStateSize) + "')"
	r := &Role{MemberOf: []string{"r"}, RevocationStatements: []string{long}}
	if _, err := r.validate(); err == nil || !strings.Contains(err.Error(), "revocation_statements") {
		t.Errorf("validate with %d bytes of revocation statements = %v, want an error naming them", len(long), err)
	}
	r = &Role{MemberOf: []string{"r"}, RevocationStatements: []string{long[:plugins.MaxStateSize/2]}}
	if _, err := r.validate(); err != nil {
		t.Errorf("validate with %d bytes of revocation statements: %v", plugins.MaxStateSize/2, err)
	}
}
