package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/postgres"
	"github.com/credbroker/credbroker/secret"
)

// The tests in this file play a holder of an issued credential who tries to
// keep, or gain, power the lease does not give.

// newRole creates a cluster-wide role named prefix plus a random suffix with
// the given CREATE ROLE options, dropped (with what it owns in the test's
// database) when the test ends.
func newRole(t *testing.T, adminURL, prefix, options string) string {
	t.Helper()
	name := plugins.NewUsername(prefix, 40)
	exec(t, adminURL, "CREATE ROLE "+name+" "+options)
	t.Cleanup(func() { exec(t, adminURL, "DROP OWNED BY "+name, "DROP ROLE "+name) })
	return name
}

// creatorGroup makes a group role that may create objects in schema public
// of the test's database and read its tables.
func creatorGroup(t *testing.T, adminURL string) string {
	t.Helper()
	g := newRole(t, adminURL, "cbtest_creators", "NOLOGIN")
	exec(t, adminURL,
		"GRANT USAGE, CREATE ON SCHEMA public TO "+g,
		"GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+g,
	)
	return g
}

// holder logs in as cred over TCP, with its password.
func holder(t *testing.T, cred plugins.Credential) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), cred.URI.Reveal())
	if err != nil {
		t.Fatalf("log in as %s: %v", cred.Username, plugins.Sanitize(err, cred.Password))
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// plantTraps has the holder make, in schema public, a SECURITY DEFINER
// function that reports who it runs as and a view that reads as its owner.
func plantTraps(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	for _, sql := range []string{
		`CREATE FUNCTION public.whoami() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text'`,
		`CREATE VIEW public.peek AS SELECT current_user::text AS who, name FROM items`,
	} {
		if _, err := conn.Exec(t.Context(), sql); err != nil {
			t.Fatalf("as the holder, %s: %v", sql, err)
		}
	}
}

// owners returns the owners of public.whoami() and public.peek, "" for one
// that does not exist.
func owners(t *testing.T, adminURL string) (fn, view string) {
	t.Helper()
	err := queryRow(t, adminURL, `
		SELECT COALESCE((SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE oid = to_regprocedure('public.whoami()')), ''),
		       COALESCE((SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass('public.peek')), '')`,
		nil, &fn, &view)
	if err != nil {
		t.Fatal(err)
	}
	return fn, view
}

func isSuperuser(t *testing.T, adminURL, role string) bool {
	t.Helper()
	var super bool
	if err := queryRow(t, adminURL, "SELECT rolsuper FROM pg_roles WHERE rolname = $1", []any{role}, &super); err != nil {
		t.Fatalf("look up %s: %v", role, err)
	}
	return super
}

// TestAttackObjectsOutliveRevoke: a holder whose group may CREATE in a schema
// makes a SECURITY DEFINER function and a view. Revoke used to reassign them
// to the admin (a superuser here), so any login could then run SQL as the
// superuser. Now they are dropped, or, with reassign_owned_to, owned by that
// NOLOGIN role.
func TestAttackObjectsOutliveRevoke(t *testing.T) {
	t.Parallel()
	t.Run("DroppedByDefault", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		p := open(t, b.conn)
		role := parseRole(t, "member_of: ["+creatorGroup(t, b.adminURL)+"]")
		attacker := issue(t, p, "attack", role)
		plantTraps(t, holder(t, attacker.Credential))

		if err := revoke(t.Context(), p, attacker); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if fn, view := owners(t, b.adminURL); fn != "" || view != "" {
			t.Fatalf("after Revoke the function is owned by %q and the view by %q; want both dropped", fn, view)
		}
		other := holder(t, issue(t, p, "attack", role).Credential)
		var who string
		err := other.QueryRow(t.Context(), "SELECT public.whoami()").Scan(&who)
		if sqlState(err) != pgerrcode.UndefinedFunction {
			t.Errorf("another holder calling the revoked user's function = %q, %v; want undefined_function", who, err)
		}
	})
	t.Run("ReassignedToNologinRole", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		p := open(t, b.conn)
		attic := newRole(t, b.adminURL, "cbtest_attic", "NOLOGIN")
		role := parseRole(t, "member_of: ["+creatorGroup(t, b.adminURL)+"]\nreassign_owned_to: "+attic)
		if err := p.CheckRole(t.Context(), role); err != nil {
			t.Fatalf("CheckRole: %v", err)
		}
		attacker := issue(t, p, "attack", role)
		plantTraps(t, holder(t, attacker.Credential))

		if err := revoke(t.Context(), p, attacker); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if fn, view := owners(t, b.adminURL); fn != attic || view != attic {
			t.Fatalf("after Revoke the function is owned by %q and the view by %q; want both by %s", fn, view, attic)
		}
		other := holder(t, issue(t, p, "attack", role).Credential)
		var who string
		if err := other.QueryRow(t.Context(), "SELECT public.whoami()").Scan(&who); err != nil {
			t.Fatalf("call the function: %v", err)
		}
		if who != attic || isSuperuser(t, b.adminURL, who) {
			t.Errorf("the revoked user's SECURITY DEFINER function runs as %q, want %s (no superuser)", who, attic)
		}
	})
	// An admin with CREATEROLE only (what Warnings recommends) can drop and
	// reassign what users own too.
	t.Run("CreateRoleAdmin", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		pw := plugins.NewPassword()
		admin := newRole(t, b.adminURL, "cbtest_admin", "LOGIN CREATEROLE PASSWORD '"+postgres.SCRAMVerifier(pw.Reveal())+"'")
		p := open(t, connection(t, withUser(t, b.adminURL, admin, pw).Reveal(), ""))
		group := creatorGroup(t, b.adminURL)
		attic := newRole(t, b.adminURL, "cbtest_attic", "NOLOGIN")
		// A new owner must be able to create in the schema, unless a
		// superuser reassigns.
		exec(t, b.adminURL, "GRANT CREATE ON SCHEMA public TO "+attic)
		for _, reassign := range []string{"", attic} {
			src := "member_of: [" + group + "]"
			if reassign != "" {
				src += "\nreassign_owned_to: " + reassign
			}
			attacker := issue(t, p, "attack", parseRole(t, src))
			plantTraps(t, holder(t, attacker.Credential))
			if err := revoke(t.Context(), p, attacker); err != nil {
				t.Fatalf("Revoke by a CREATEROLE admin (reassign_owned_to %q): %v", reassign, err)
			}
			if fn, view := owners(t, b.adminURL); fn != reassign || view != reassign {
				t.Fatalf("after Revoke (reassign_owned_to %q) the function is owned by %q and the view by %q", reassign, fn, view)
			}
			if roleExists(t, b.adminURL, attacker.Username) {
				t.Fatal("the user survived Revoke")
			}
		}
	})
	t.Run("TargetTurnedStrongFailsRevoke", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		p := open(t, b.conn)
		attic := newRole(t, b.adminURL, "cbtest_attic", "NOLOGIN")
		role := parseRole(t, "member_of: ["+creatorGroup(t, b.adminURL)+"]\nreassign_owned_to: "+attic)
		attacker := issue(t, p, "attack", role)
		plantTraps(t, holder(t, attacker.Credential))

		for _, change := range []struct{ alter, want, undo string }{
			{alter: "LOGIN", want: "can log in", undo: "NOLOGIN"},
			{alter: "SUPERUSER", want: "SUPERUSER", undo: "NOSUPERUSER"},
		} {
			exec(t, b.adminURL, "ALTER ROLE "+attic+" "+change.alter)
			err := revoke(t.Context(), p, attacker)
			if err == nil || !strings.Contains(err.Error(), change.want) || !strings.Contains(err.Error(), attic) {
				t.Fatalf("Revoke with reassign_owned_to %s %s = %v; want an error naming the role and %q", attic, change.alter, err, change.want)
			}
			var login bool
			if err := queryRow(t, b.adminURL, "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", []any{attacker.Username}, &login); err != nil {
				t.Fatalf("the user is gone although Revoke failed: %v", err)
			}
			if login {
				t.Error("the user may still log in after a failed Revoke")
			}
			if fn, view := owners(t, b.adminURL); fn != attacker.Username || view != attacker.Username {
				t.Errorf("after the failed Revoke the function is owned by %q and the view by %q; want the user still", fn, view)
			}
			exec(t, b.adminURL, "ALTER ROLE "+attic+" "+change.undo)
		}
		if err := revoke(t.Context(), p, attacker); err != nil {
			t.Fatalf("Revoke once the role is fit again: %v", err)
		}
		if fn, view := owners(t, b.adminURL); fn != attic || view != attic {
			t.Errorf("after Revoke the function is owned by %q and the view by %q; want both by %s", fn, view, attic)
		}
	})
}

// TestAttackActAsMarker: issued users used to be members of
// credbroker_managed, so a holder could SET ROLE to it and make objects every
// holder shares that no revoke removes.
func TestAttackActAsMarker(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	group := creatorGroup(t, b.adminURL)
	roles := map[string]string{
		"MemberOf": "member_of: [" + group + "]",
		"CreationStatements": `creation_statements:
  - CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}
  - GRANT ` + group + ` TO {{name}}`,
	}
	for name, src := range roles {
		t.Run(name, func(t *testing.T) {
			cred := issue(t, p, "attack", parseRole(t, src))
			conn := holder(t, cred.Credential)
			_, err := conn.Exec(t.Context(), "SET ROLE credbroker_managed")
			if sqlState(err) != pgerrcode.InsufficientPrivilege {
				t.Errorf("SET ROLE credbroker_managed as an issued user = %v; want permission denied", err)
			}
			// The comment is what marks the user as the broker's: a holder who
			// could change it would make Revoke refuse to drop it.
			for _, sql := range []string{"COMMENT ON ROLE " + cred.Username + " IS NULL", "COMMENT ON ROLE " + cred.Username + " IS 'mine now'"} {
				if _, err := conn.Exec(t.Context(), sql); sqlState(err) != pgerrcode.InsufficientPrivilege {
					t.Errorf("%s as an issued user = %v; want permission denied", sql, err)
				}
			}
			var oid uint32
			if err := conn.QueryRow(t.Context(), "SELECT lo_create(0)").Scan(&oid); err != nil {
				t.Fatal(err)
			}
			_, err = conn.Exec(t.Context(), "ALTER LARGE OBJECT "+strconv.FormatUint(uint64(oid), 10)+" OWNER TO credbroker_managed")
			if sqlState(err) != pgerrcode.InsufficientPrivilege {
				t.Errorf("giving a large object to credbroker_managed = %v; want permission denied", err)
			}
		})
	}
}

// withUser returns adminURL with the user and password replaced.
func withUser(t *testing.T, adminURL, user string, pw secret.Value) secret.Value {
	t.Helper()
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, pw.Reveal())
	return secret.New(u.String())
}

// sqlState returns err's SQLSTATE, or "" when the server did not send one.
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// TestUpgradeTakesMarkerBack: a user an older release issued is a member of
// credbroker_managed and can SET ROLE to it. Opening the plugin takes that
// away on PostgreSQL 15, and the user stays listed and revocable.
func TestUpgradeTakesMarkerBack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pw := plugins.NewPassword()
	legacy := plugins.NewUsername("legacy", 63)
	exec(t, b.adminURL,
		"CREATE ROLE "+legacy+" LOGIN PASSWORD '"+postgres.SCRAMVerifier(pw.Reveal())+"'",
		"GRANT credbroker_managed TO "+legacy,
	)
	t.Cleanup(func() { exec(t, b.adminURL, "DROP ROLE IF EXISTS "+legacy) })
	cred := plugins.Credential{Username: legacy, Password: pw, URI: withUser(t, b.adminURL, legacy, pw)}
	before := holder(t, cred)
	if _, err := before.Exec(t.Context(), "SET ROLE credbroker_managed; RESET ROLE"); err != nil {
		t.Fatalf("the legacy user cannot SET ROLE before the upgrade, so this test proves nothing: %v", err)
	}
	// Marked as the older release marked its users only now: any plugin
	// another test (or package) opens on this server takes the membership
	// of a marked user back, which would race the check above.
	exec(t, b.adminURL, "COMMENT ON ROLE "+legacy+" IS 'credbroker:created="+time.Now().UTC().Format(time.RFC3339)+"'")

	p := open(t, b.conn)
	if _, err := holder(t, cred).Exec(t.Context(), "SET ROLE credbroker_managed"); sqlState(err) != pgerrcode.InsufficientPrivilege {
		t.Errorf("SET ROLE credbroker_managed after the upgrade = %v; want permission denied", err)
	}
	users, err := p.ListManaged(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(users, func(u plugins.ManagedUser) bool { return u.Username == legacy }) {
		t.Errorf("ListManaged does not list the legacy user %s", legacy)
	}
	// A lease of that release has no state.
	if _, err := p.Revoke(t.Context(), plugins.RevokeRequest{Username: legacy, Role: testRole}); err != nil {
		t.Fatalf("Revoke of the legacy user: %v", err)
	}
	if roleExists(t, b.adminURL, legacy) {
		t.Error("the legacy user survived Revoke")
	}
}

// TestCheckRoleTooStrong: a group role that can do more than hand out grants
// on data gives every holder that power; CheckRole refuses it at start,
// naming the role and what is wrong.
func TestCheckRoleTooStrong(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	other := newRole(t, b.adminURL, "cbtest_other", "NOLOGIN")
	tests := map[string]struct {
		setup func(g string) // makes g too strong, or not
		field string         // member_of (default) or reassign_owned_to
		want  []string       // in the error; none: no error
	}{
		"Plain":               {setup: func(string) {}},
		"PgReadAllData":       {setup: func(g string) { exec(t, b.adminURL, "GRANT pg_read_all_data TO "+g) }},
		"Superuser":           {setup: alter(t, b.adminURL, "SUPERUSER"), want: []string{"SUPERUSER"}},
		"CreateRole":          {setup: alter(t, b.adminURL, "CREATEROLE"), want: []string{"CREATEROLE"}},
		"CreateDB":            {setup: alter(t, b.adminURL, "CREATEDB"), want: []string{"CREATEDB"}},
		"BypassRLS":           {setup: alter(t, b.adminURL, "BYPASSRLS"), want: []string{"BYPASSRLS"}},
		"Replication":         {setup: alter(t, b.adminURL, "REPLICATION"), want: []string{"REPLICATION"}},
		"AdminOption":         {setup: func(g string) { exec(t, b.adminURL, "GRANT "+other+" TO "+g+" WITH ADMIN OPTION") }, want: []string{"ADMIN OPTION", other}},
		"SignalBackend":       {setup: func(g string) { exec(t, b.adminURL, "GRANT pg_signal_backend TO "+g) }, want: []string{"pg_signal_backend"}},
		"NestedServerProgram": {setup: nested(t, b.adminURL, "", "GRANT pg_execute_server_program TO %s"), want: []string{"pg_execute_server_program", "cbtest_mid"}},
		"NestedSuperuser":     {setup: nested(t, b.adminURL, "SUPERUSER", ""), want: []string{"SUPERUSER", "cbtest_mid"}},
		"NestedAdminOption":   {setup: nested(t, b.adminURL, "", "GRANT "+other+" TO %s WITH ADMIN OPTION"), want: []string{"ADMIN OPTION", "cbtest_mid"}},
		"ReadServerFiles":     {setup: func(g string) { exec(t, b.adminURL, "GRANT pg_read_server_files TO "+g) }, want: []string{"pg_read_server_files"}},
		"ReassignPlain":       {setup: func(string) {}, field: "reassign_owned_to"},
		"ReassignLogin":       {setup: alter(t, b.adminURL, "LOGIN"), field: "reassign_owned_to", want: []string{"can log in"}},
		"ReassignSuperuser":   {setup: alter(t, b.adminURL, "SUPERUSER"), field: "reassign_owned_to", want: []string{"SUPERUSER"}},
		"ReassignCreateRole":  {setup: alter(t, b.adminURL, "CREATEROLE"), field: "reassign_owned_to", want: []string{"CREATEROLE"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			g := newRole(t, b.adminURL, "cbtest_group", "NOLOGIN")
			tt.setup(g)
			src := "member_of: [" + g + "]"
			if tt.field == "reassign_owned_to" {
				src = "member_of: [pg_read_all_data]\nreassign_owned_to: " + g
			}
			err := p.CheckRole(t.Context(), parseRole(t, src))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("CheckRole = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, postgres.ErrTooStrong) {
				t.Fatalf("CheckRole = %v, want ErrTooStrong", err)
			}
			for _, w := range append(tt.want, g, cmpOr(tt.field, "member_of")) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckRole error does not name %q: %v", w, err)
				}
			}
		})
	}
	t.Run("Missing", func(t *testing.T) {
		for _, src := range []string{"member_of: [cbtest_no_such_group]", "member_of: [pg_read_all_data]\nreassign_owned_to: cbtest_no_such_role"} {
			err := p.CheckRole(t.Context(), parseRole(t, src))
			if err == nil || !strings.Contains(err.Error(), "does not exist") {
				t.Errorf("CheckRole(%s) = %v, want an error saying the role does not exist", src, err)
			}
		}
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// alter returns a setup that gives a role the attributes.
func alter(t *testing.T, adminURL, attributes string) func(string) {
	return func(g string) { exec(t, adminURL, "ALTER ROLE "+g+" "+attributes) }
}

// nested returns a setup that makes g a member of a new role cbtest_mid…
// with the attributes, after running grant (a format with %s for that role).
func nested(t *testing.T, adminURL, attributes, grant string) func(string) {
	return func(g string) {
		mid := newRole(t, adminURL, "cbtest_mid", "NOLOGIN "+attributes)
		if grant != "" {
			exec(t, adminURL, strings.ReplaceAll(grant, "%s", mid))
		}
		exec(t, adminURL, "GRANT "+mid+" TO "+g)
	}
}

// TestAttackCreationStatementsTooStrong: creation statements are SQL the
// plugin cannot parse; a statement that makes the user stronger than an
// issued user may be is caught before the transaction commits.
func TestAttackCreationStatementsTooStrong(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	strong := newRole(t, b.adminURL, "cbtest_strong", "NOLOGIN BYPASSRLS")
	keeper := newRole(t, b.adminURL, "cbtest_keeper", "NOLOGIN")
	tests := map[string]struct{ statements, extra, want string }{
		"Marker": {
			statements: "  - CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}\n  - GRANT credbroker_managed TO {{name}}\n",
			want:       "credbroker_managed",
		},
		"ReassignTarget": {
			statements: "  - CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}\n  - GRANT " + keeper + " TO {{name}}\n",
			extra:      "reassign_owned_to: " + keeper + "\n",
			want:       keeper,
		},
		"CreateDB": {
			statements: "  - CREATE ROLE {{name}} LOGIN CREATEDB PASSWORD {{password}} VALID UNTIL {{expiration}}\n",
			want:       "CREATEDB",
		},
		"SignalBackend": {
			statements: "  - CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}\n  - GRANT pg_signal_backend TO {{name}}\n",
			want:       "pg_signal_backend",
		},
		"StrongGroup": {
			statements: "  - CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}\n  - GRANT " + strong + " TO {{name}}\n",
			want:       "BYPASSRLS",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			username := plugins.NewUsername("strong", 63)
			t.Cleanup(func() { exec(t, b.adminURL, "DROP ROLE IF EXISTS "+username) })
			_, err := p.Create(t.Context(), plugins.CreateRequest{
				Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour),
				Role: testRole, Spec: parseRole(t, tt.extra+"creation_statements:\n"+tt.statements),
			})
			if !errors.Is(err, postgres.ErrTooStrong) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Create = %v, want ErrTooStrong naming %s", err, tt.want)
			}
			if roleExists(t, b.adminURL, username) {
				t.Error("the too-strong user exists: the transaction was not rolled back")
			}
		})
	}
	t.Run("GroupTurnedStrongAfterStart", func(t *testing.T) {
		g := newRole(t, b.adminURL, "cbtest_group", "NOLOGIN")
		role := parseRole(t, "member_of: ["+g+"]")
		exec(t, b.adminURL, "ALTER ROLE "+g+" CREATEROLE")
		username := plugins.NewUsername("strong", 63)
		t.Cleanup(func() { exec(t, b.adminURL, "DROP ROLE IF EXISTS "+username) })
		_, err := p.Create(t.Context(), plugins.CreateRequest{
			Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Role: testRole, Spec: role,
		})
		if !errors.Is(err, postgres.ErrTooStrong) || !strings.Contains(err.Error(), "CREATEROLE") {
			t.Errorf("Create = %v, want ErrTooStrong naming CREATEROLE", err)
		}
		if roleExists(t, b.adminURL, username) {
			t.Error("the too-strong user exists: the transaction was not rolled back")
		}
	})
}

// TestWarnings: an admin that is a superuser, and a marker role that owns
// something, are reported at start.
func TestWarnings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	t.Run("SuperuserAdmin", func(t *testing.T) {
		w := strings.Join(open(t, b.conn).(plugins.Warner).Warnings(t.Context()), "\n")
		if !strings.Contains(w, "superuser") || !strings.Contains(w, "CREATEROLE") {
			t.Errorf("Warnings with a superuser admin = %q; want one naming superuser and CREATEROLE", w)
		}
	})
	t.Run("CreateRoleAdmin", func(t *testing.T) {
		pw := plugins.NewPassword()
		admin := newRole(t, b.adminURL, "cbtest_admin", "LOGIN CREATEROLE PASSWORD '"+postgres.SCRAMVerifier(pw.Reveal())+"'")
		w := open(t, connection(t, withUser(t, b.adminURL, admin, pw).Reveal(), "")).(plugins.Warner).Warnings(t.Context())
		for _, line := range w {
			if strings.Contains(line, "superuser") {
				t.Errorf("Warnings with a CREATEROLE admin = %q", line)
			}
		}
	})
	t.Run("MarkerOwns", func(t *testing.T) {
		exec(t, b.adminURL, "CREATE TABLE left_by_marker (id int)", "ALTER TABLE left_by_marker OWNER TO credbroker_managed")
		t.Cleanup(func() { exec(t, b.adminURL, "DROP TABLE left_by_marker") })
		w := strings.Join(open(t, b.conn).(plugins.Warner).Warnings(t.Context()), "\n")
		if !strings.Contains(w, b.database) || !strings.Contains(w, "DROP OWNED BY credbroker_managed") {
			t.Errorf("Warnings with a table owned by the marker = %q; want one naming the database and the fix", w)
		}
	})
}

// TestAttackShadowCatalogFunction plays a holder who may create functions in
// schema public: it defines public.shobj_description(oid, text), which
// overload resolution prefers to pg_catalog's (oid, name) for an untyped
// literal, and which creates a superuser when run by a superuser. The
// broker's own statements must never call it.
func TestAttackShadowCatalogFunction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := open(t, b.conn)
	role := parseRole(t, "member_of: ["+creatorGroup(t, b.adminURL)+"]")
	attacker := issue(t, p, "attack", role)
	pwned := plugins.NewUsername("cbtest_pwned", 40)
	t.Cleanup(func() { exec(t, b.adminURL, "DROP ROLE IF EXISTS "+pwned) })
	// Each shadows a built-in the plugin calls with an argument whose type
	// PostgreSQL has to guess.
	shadows := map[string]string{
		"shobj_description(oid, text)":          "text",
		"pg_terminate_backend(integer, bigint)": "boolean",
	}
	conn := holder(t, attacker.Credential)
	for signature, returns := range shadows {
		fn := `CREATE FUNCTION public.` + signature + ` RETURNS ` + returns + ` LANGUAGE plpgsql AS $$ BEGIN
				IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
					EXECUTE 'CREATE ROLE ` + pwned + ` LOGIN SUPERUSER';
				END IF;
				RETURN NULL;
			END $$`
		if _, err := conn.Exec(t.Context(), fn); err != nil {
			t.Fatalf("plant public.%s: %v", signature, err)
		}
	}
	if _, err := p.ListManaged(t.Context()); err != nil {
		t.Fatalf("ListManaged: %v", err)
	}
	if err := revoke(t.Context(), p, attacker); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if roleExists(t, b.adminURL, pwned) {
		t.Fatalf("the holder's shadow function ran as the admin: role %s exists", pwned)
	}
}
