package mysql_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/mysql"
	"github.com/credbroker/credbroker/secret"
)

// The previous release (before contract v2) gave Revoke only a username. It
// recorded a role's revocation statements by granting the user an empty
// marker role credbroker_rv_<key>, key being the first 8 bytes of SHA-256
// over the statements joined by NUL, in hex. These tests make users exactly
// as it did, with SQL of their own, and check that their leases, which have
// no State, still revoke as that release would have.

// legacyMarker returns the marker role's name for statements, computed here
// as the previous release did, not by the plugin.
func legacyMarker(statements []string) string {
	sum := sha256.Sum256([]byte(strings.Join(statements, "\x00")))
	return "credbroker_rv_" + hex.EncodeToString(sum[:8])
}

// legacy is what a legacy test works with.
type legacy struct {
	bundle
	table string // where the revocation statements write
	// statements are the revocation statements of role, the role the users
	// were issued for.
	statements []string
	role       *mysql.Role
	// changed has other revocation statements; plain has none.
	changed, plain *mysql.Role
	p              plugins.Plugin
}

func setupLegacy(t *testing.T) legacy {
	t.Helper()
	l := legacy{bundle: setup(t)}
	l.table = "`" + l.database + "`.revocations"
	exec(t, l.adminDSN, "CREATE TABLE "+l.table+" (username varchar(64), what varchar(16))")
	l.statements = []string{"INSERT INTO " + l.table + " VALUES ('{{name}}', 'first')", "INSERT INTO " + l.table + " VALUES ({{username}}, 'second')"}
	grants := `grants: [{privileges: [SELECT], on: "` + l.database + `.*"}]`
	l.role = parseRole(t, grants+"\nrevocation_statements: ["+strconv.Quote(l.statements[0])+", "+strconv.Quote(l.statements[1])+"]")
	l.changed = parseRole(t, grants+"\nrevocation_statements: [\"INSERT INTO "+l.table+" VALUES ('{{name}}', 'changed')\"]")
	l.plain = parseRole(t, grants)
	l.p = open(t, l.conn)
	// The users of role share its marker role, as they did.
	marker := legacyMarker(l.statements)
	t.Cleanup(func() { exec(t, l.adminDSN, "DROP ROLE IF EXISTS `"+marker+"`") })
	return l
}

// issueLegacy makes a user as the previous release's Create did for a role
// with grants on the test's database and, if marked, the revocation
// statements of l.role, on every host given (its creation statements could
// make several accounts; the marker went to each).
func (l legacy) issueLegacy(t *testing.T, marked bool, hosts ...string) plugins.Credential {
	t.Helper()
	username := plugins.NewUsername("legacy", 32)
	password := plugins.NewPassword()
	t.Cleanup(func() {
		for _, h := range hosts {
			exec(t, l.adminDSN, "DROP USER IF EXISTS `"+username+"`@`"+h+"`")
		}
	})
	var accounts []string
	for _, h := range hosts {
		acct := "`" + username + "`@`" + h + "`"
		accounts = append(accounts, acct)
		exec(t, l.adminDSN,
			"CREATE USER "+acct+" IDENTIFIED BY PASSWORD '"+mysql.NativePasswordHash(password.Reveal())+"'",
			"GRANT SELECT ON `"+strings.ReplaceAll(l.database, "_", `\_`)+"`.* TO "+acct)
	}
	if marked {
		marker := "`" + legacyMarker(l.statements) + "`"
		exec(t, l.adminDSN, "CREATE ROLE IF NOT EXISTS "+marker, "GRANT "+marker+" TO "+strings.Join(accounts, ", "))
	}
	cfg, err := gomysql.ParseDSN(l.adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "mysql", User: url.UserPassword(username, password.Reveal()), Host: cfg.Addr, Path: "/" + l.database}
	return plugins.Credential{Username: username, Password: password, URI: secret.New(u.String())}
}

// upgrade asks the plugin for the State of a legacy lease, as the broker
// does once at start.
func (l legacy) upgrade(t *testing.T, username string, spec *mysql.Role) []byte {
	t.Helper()
	u, ok := l.p.(plugins.StateUpgrader)
	if !ok {
		t.Fatal("the opened plugin is not a StateUpgrader")
	}
	var req plugins.UpgradeStateRequest
	req.Username, req.Role = username, testRole
	if spec != nil {
		req.Spec = spec
	}
	state, err := u.UpgradeState(t.Context(), req)
	if err != nil {
		t.Fatalf("UpgradeState: %v", err)
	}
	return state
}

// stateStatements decodes a State's revocation statements.
func stateStatements(t *testing.T, state []byte) []string {
	t.Helper()
	var s struct {
		V                    int      `json:"v"`
		RevocationStatements []string `json:"revocation_statements"`
	}
	if err := json.Unmarshal(state, &s); err != nil {
		t.Fatalf("State %q: %v", state, err)
	}
	if s.V != 1 {
		t.Errorf("State %s: version %d, want 1", state, s.V)
	}
	return s.RevocationStatements
}

// roleGrants counts the role grants the server holds for username.
func roleGrants(t *testing.T, dsn, username string) int {
	t.Helper()
	var version string
	if err := queryRow(t, dsn, "SELECT VERSION()", nil, &version); err != nil {
		t.Fatal(err)
	}
	query := "SELECT COUNT(*) FROM mysql.role_edges WHERE TO_USER = ?"
	if strings.Contains(strings.ToLower(version), "mariadb") {
		query = "SELECT COUNT(*) FROM mysql.roles_mapping WHERE User = ?"
	}
	var n int
	if err := queryRow(t, dsn, query, []any{username}, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLegacyUpgradeState: UpgradeState derives a legacy lease's State from
// its user's marker role: the current role's revocation statements when the
// marker names them, none otherwise (the previous release, whose registry
// held only the statements of the config it read, would have run none
// either). A lease revoked with that State, its role since removed, runs
// what the previous release would have and leaves nothing behind.
func TestLegacyUpgradeState(t *testing.T) {
	t.Parallel()
	l := setupLegacy(t)
	tests := map[string]struct {
		marked bool        // the user holds the marker role of l.role's statements
		hosts  []string    // the user's accounts
		spec   *mysql.Role // the lease's role as the config holds it now
		want   []string    // the revocation statements the State holds
		rows   string      // what they insert at revoke
	}{
		"Matches":           {marked: true, hosts: []string{"%"}, spec: l.role, want: l.statements, rows: "first,second"},
		"MatchesTwoHosts":   {marked: true, hosts: []string{"%", "localhost"}, spec: l.role, want: l.statements, rows: "first,second"},
		"RoleChanged":       {marked: true, hosts: []string{"%"}, spec: l.changed},
		"RoleRemoved":       {marked: true, hosts: []string{"%"}},
		"RoleHasNone":       {marked: true, hosts: []string{"%"}, spec: l.plain},
		"NoMarker":          {hosts: []string{"%"}, spec: l.role},
		"NoMarkerNoneSince": {hosts: []string{"%"}, spec: l.plain},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cred := l.issueLegacy(t, tt.marked, tt.hosts...)
			state := l.upgrade(t, cred.Username, tt.spec)
			if got := stateStatements(t, state); !slices.Equal(got, tt.want) {
				t.Errorf("UpgradeState = %s, want the statements %q", state, tt.want)
			}
			// As if the role then left the config: the State alone.
			if err := revoke(t.Context(), l.p, issued{Credential: cred, state: state}); err != nil {
				t.Fatalf("Revoke with the upgraded State: %v", err)
			}
			if got := revocations(t, l.adminDSN, l.table, cred.Username); got != tt.rows {
				t.Errorf("the revocation statements inserted %q, want %q", got, tt.rows)
			}
			if n := accounts(t, l.adminDSN, cred.Username); n != 0 {
				t.Errorf("%d accounts left after Revoke", n)
			}
			if n := roleGrants(t, l.adminDSN, cred.Username); n != 0 {
				t.Errorf("%d role grants of the user left after Revoke", n)
			}
			if tt.marked && accounts(t, l.adminDSN, legacyMarker(l.statements)) != 1 {
				t.Error("Revoke dropped the marker role, which other users (and a broker of the previous release) may still hold")
			}
		})
	}
	t.Run("UserGone", func(t *testing.T) {
		t.Parallel()
		state := l.upgrade(t, plugins.NewUsername("gone", 32), l.role)
		if got := stateStatements(t, state); len(got) != 0 {
			t.Errorf("UpgradeState of a user that is gone = %s, want no statements", state)
		}
	})
	t.Run("ForeignUser", func(t *testing.T) {
		t.Parallel()
		_, err := l.p.(plugins.StateUpgrader).UpgradeState(t.Context(), plugins.UpgradeStateRequest{Username: "root", Spec: l.role})
		if err == nil || !strings.Contains(err.Error(), "credbroker did not make it") {
			t.Errorf("UpgradeState of a user credbroker did not make = %v, want a refusal", err)
		}
	})
}

// TestLegacyRevokeWithoutState: a legacy lease that meets Revoke before any
// upgrade (no State) revokes as the previous release would: the statements
// its marker names run when the lease's role still has them, the user is
// dropped in any case, its sessions end, and its marker role grant goes
// with it.
func TestLegacyRevokeWithoutState(t *testing.T) {
	t.Parallel()
	l := setupLegacy(t)
	tests := map[string]struct {
		spec *mysql.Role
		rows string
	}{
		"Matches":     {spec: l.role, rows: "first,second"},
		"RoleChanged": {spec: l.changed},
		"RoleRemoved": {},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cred := l.issueLegacy(t, true, "%")
			s := holderSession(t, l.bundle, cred)
			req := plugins.RevokeRequest{Username: cred.Username, Role: testRole}
			if tt.spec != nil {
				req.Spec = tt.spec
			}
			if _, err := l.p.Revoke(t.Context(), req); err != nil {
				t.Fatalf("Revoke without State: %v", err)
			}
			if got := revocations(t, l.adminDSN, l.table, cred.Username); got != tt.rows {
				t.Errorf("the revocation statements inserted %q, want %q", got, tt.rows)
			}
			if n := accounts(t, l.adminDSN, cred.Username); n != 0 {
				t.Errorf("%d accounts left after Revoke", n)
			}
			if n := roleGrants(t, l.adminDSN, cred.Username); n != 0 {
				t.Errorf("%d role grants of the user left after Revoke", n)
			}
			if err := s.Ping(t.Context()); err == nil {
				t.Error("the legacy user's session survived Revoke")
			}
			if _, err := l.login(t.Context(), cred); err == nil {
				t.Error("the legacy credential logged in after Revoke")
			}
			if accounts(t, l.adminDSN, legacyMarker(l.statements)) != 1 {
				t.Error("Revoke dropped the marker role")
			}
			// Again: gone already is success, and nothing runs twice.
			if _, err := l.p.Revoke(t.Context(), req); err != nil {
				t.Errorf("Revoke again = %v, want nil", err)
			}
			if got := revocations(t, l.adminDSN, l.table, cred.Username); got != tt.rows {
				t.Errorf("after a second Revoke the revocation statements inserted %q, want %q", got, tt.rows)
			}
		})
	}
}
