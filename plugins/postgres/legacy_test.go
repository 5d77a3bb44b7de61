package postgres_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/plugins/postgres"
)

// legacyKey is the key the release before contract v2 wrote into a user's
// comment to name its role's revocation statements (its registerRevocation).
func legacyKey(statements []string) string {
	sum := sha256.Sum256([]byte(strings.Join(statements, "\x00")))
	return hex.EncodeToString(sum[:16])
}

// issueLegacy makes a user the way the release before contract v2 did, with
// SQL: the role, the comment that named the revocation statements by key
// and held reassign_owned_to, and the group. The lease it wrote has no state.
func issueLegacy(t *testing.T, adminURL, group string, statements []string, reassignTo string) lease {
	t.Helper()
	pw := plugins.NewPassword()
	name := plugins.NewUsername("legacy", 63)
	comment := "credbroker:created=" + time.Now().UTC().Format(time.RFC3339) +
		";revocation_statements=" + legacyKey(statements) +
		";reassign_owned_to=" + url.QueryEscape(reassignTo)
	exec(t, adminURL,
		"CREATE ROLE "+name+" LOGIN PASSWORD '"+postgres.SCRAMVerifier(pw.Reveal())+"' VALID UNTIL 'infinity'",
		"COMMENT ON ROLE "+name+" IS '"+comment+"'",
		"GRANT "+group+" TO "+name,
	)
	t.Cleanup(func() { // when Revoke did not
		exec(t, adminURL, "DO $$ BEGIN IF to_regrole('"+name+"') IS NOT NULL THEN DROP OWNED BY "+name+"; END IF; END $$",
			"DROP ROLE IF EXISTS "+name)
	})
	return lease{Credential: plugins.Credential{Username: name, Password: pw, URI: withUser(t, adminURL, name, pw)}}
}

// TestLegacyLease: a user the previous release issued, whose lease has no
// state, revokes as that release would have revoked it: with the role's
// revocation statements when they are still the ones its comment names, and
// with the comment's reassign_owned_to whatever the role says now. Either
// through UpgradeState (at start), whose state then suffices alone, or by
// Revoke meeting the lease first.
func TestLegacyLease(t *testing.T) {
	t.Parallel()
	server := plugintest.PostgresURL(t)
	atticThen := newRole(t, server, "cbtest_attic", "NOLOGIN")
	atticNow := newRole(t, server, "cbtest_attic", "NOLOGIN")
	statements := []string{"INSERT INTO revocations (username, by) VALUES ('{{name}}', 'issued')"}
	tests := map[string]struct {
		upgrade bool // UpgradeState first, then Revoke with its state and no spec
		change  func(src string) string
		wantRan bool // the revocation statements ran
	}{
		"UpgradeRoleUnchanged": {upgrade: true, wantRan: true},
		"UpgradeRoleChanged":   {upgrade: true, change: changeStatements},
		"UpgradeRoleRemoved":   {upgrade: true, change: removeRole},
		"RevokeRoleUnchanged":  {wantRan: true},
		"RevokeRoleChanged":    {change: changeStatements},
		"RevokeRoleRemoved":    {change: removeRole},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			exec(t, b.adminURL, "CREATE TABLE revocations (username text, by text)",
				"GRANT CREATE ON SCHEMA public TO "+atticThen, "GRANT CREATE ON SCHEMA public TO "+atticNow)
			group := creatorGroup(t, b.adminURL)
			p := open(t, b.conn)
			l := issueLegacy(t, b.adminURL, group, statements, atticThen)
			plantTraps(t, holder(t, l.Credential))

			// The role as the config says now: reassign_owned_to has moved on,
			// which must not matter for a user issued before.
			src := "member_of: [" + group + "]\nreassign_owned_to: " + atticNow +
				"\nrevocation_statements: [\"" + statements[0] + "\"]"
			if tt.change != nil {
				src = tt.change(src)
			}
			var spec any
			if src != "" {
				spec = parseRole(t, src)
			}

			req := plugins.RevokeRequest{Username: l.Username, Role: testRole, Spec: spec}
			if tt.upgrade {
				st, err := p.(plugins.StateUpgrader).UpgradeState(t.Context(), plugins.UpgradeStateRequest{
					Username: l.Username, Role: testRole, Spec: spec,
				})
				if err != nil {
					t.Fatalf("UpgradeState: %v", err)
				}
				var got struct {
					V                           int      `json:"v"`
					RevocationStatements        []string `json:"revocation_statements"`
					ReassignOwnedTo             string   `json:"reassign_owned_to"`
					RevocationStatementsUnknown bool     `json:"revocation_statements_unknown"`
				}
				if err := json.Unmarshal(st, &got); err != nil {
					t.Fatalf("UpgradeState returned %s: %v", st, err)
				}
				if got.V != 1 || got.ReassignOwnedTo != atticThen ||
					(len(got.RevocationStatements) > 0) != tt.wantRan || got.RevocationStatementsUnknown == tt.wantRan {
					t.Errorf("UpgradeState = %s; want v 1, reassign_owned_to %s, the statements %t, and saying they are unknown otherwise",
						st, atticThen, tt.wantRan)
				}
				// The state alone is enough from now on.
				req.Spec, req.State = nil, st
			}
			if _, err := p.Revoke(t.Context(), req); err != nil {
				t.Fatalf("Revoke: %v", err)
			}

			var ran []string
			if err := queryRow(t, b.adminURL, "SELECT COALESCE(array_agg(by), '{}') FROM revocations WHERE username = $1",
				[]any{l.Username}, &ran); err != nil {
				t.Fatal(err)
			}
			if want := map[bool][]string{true: {"issued"}}[tt.wantRan]; !slices.Equal(ran, want) {
				t.Errorf("revocation statements ran as %q, want %q", ran, want)
			}
			if fn, view := owners(t, b.adminURL); fn != atticThen || view != atticThen {
				t.Errorf("after Revoke the function is owned by %q and the view by %q; want both by %s, the comment's reassign_owned_to",
					fn, view, atticThen)
			}
			if roleExists(t, b.adminURL, l.Username) {
				t.Error("the legacy user survived Revoke")
			}
		})
	}
	t.Run("UpgradeGoneUser", func(t *testing.T) {
		t.Parallel()
		p := open(t, setup(t).conn)
		st, err := p.(plugins.StateUpgrader).UpgradeState(t.Context(), plugins.UpgradeStateRequest{
			Username: plugins.NewUsername("gone", 63), Role: testRole,
		})
		if err != nil || string(st) != `{"v":1}` {
			t.Errorf("UpgradeState of a user that is gone = %s, %v; want an empty state", st, err)
		}
	})
}

// changeStatements gives the role other revocation statements.
func changeStatements(src string) string {
	return strings.Replace(src, "'issued'", "'changed'", 1)
}

// removeRole removes the role from the config.
func removeRole(string) string { return "" }
