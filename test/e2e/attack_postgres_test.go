package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/test/harness"
)

// The tests in this file play the holder of an issued PostgreSQL credential
// against the built broker, and an operator whose group role is too strong.

// attackerRoles is a role "creator" whose users may create objects in schema
// public (through the backend's read group, given CREATE), with extra YAML
// under its postgres: section, granted to appSubject.
func attackerRoles(be *harness.Backend, extra string) string {
	return fmt.Sprintf(`roles:
  - name: creator
    backend: %s
    owner: e2e
    default_ttl: 10m
    max_ttl: 1h
    postgres:
      member_of: [%s]
%spolicies:
  - name: orders-api
    issuer: test
    subject: %q
    roles: [creator]
`, harness.BackendName, be.ReadGroup, extra, appSubject)
}

// pgSession logs in with an issued credential, closed when the test ends.
func pgSession(t *testing.T, cred issued) *pgx.Conn {
	t.Helper()
	conn, err := connectPG(t.Context(), cred.URI)
	if err != nil {
		t.Fatalf("log in as %s: %v", cred.Username, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// plantDefinerTraps has the holder make a SECURITY DEFINER function that says
// who it runs as, and a view that reads as its owner.
func plantDefinerTraps(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	for _, sql := range []string{
		`CREATE FUNCTION public.whoami() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text'`,
		`CREATE VIEW public.peek AS SELECT current_user::text AS who, name FROM customers`,
	} {
		if _, err := conn.Exec(t.Context(), sql); err != nil {
			t.Fatalf("as the holder, %s: %v", sql, err)
		}
	}
}

// trapOwners returns who owns public.whoami() and public.peek in the backend
// ("" when gone), and whether either owner is a superuser.
func trapOwners(t *testing.T, be *harness.Backend) (fn, view string, super bool) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), be.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(t.Context(), `
		SELECT COALESCE((SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE oid = to_regprocedure('public.whoami()')), ''),
		       COALESCE((SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass('public.peek')), ''),
		       EXISTS (SELECT 1 FROM pg_roles WHERE rolsuper AND rolname IN (
		           (SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE oid = to_regprocedure('public.whoami()')),
		           (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass('public.peek'))))`).Scan(&fn, &view, &super)
	if err != nil {
		t.Fatal(err)
	}
	return fn, view, super
}

func TestAttackPostgres(t *testing.T) {
	t.Parallel()

	// A holder's SECURITY DEFINER function used to be handed to the admin
	// (a superuser) on revoke; any later login then ran SQL as superuser.
	t.Run("DefinerObjectsDroppedOnRevoke", func(t *testing.T) {
		t.Parallel()
		d := harness.NewDeployment(t)
		d.Backend.Exec(t, "GRANT CREATE ON SCHEMA public TO "+d.Backend.ReadGroup)
		b := harness.StartBroker(t, d.Config(attackerRoles(d.Backend, "")), d.Env()...)
		token := d.Issuer.Token(t, appSubject, nil, time.Hour)
		attacker := issue(t, b, token, map[string]any{"role": "creator"})
		plantDefinerTraps(t, pgSession(t, attacker))

		revoke(t, b, token, attacker.LeaseID)
		if fn, view, _ := trapOwners(t, d.Backend); fn != "" || view != "" {
			t.Fatalf("after the revoke the function is owned by %q and the view by %q; want both dropped", fn, view)
		}
		next := pgSession(t, issue(t, b, token, map[string]any{"role": "creator"}))
		var who string
		if err := next.QueryRow(t.Context(), "SELECT public.whoami()").Scan(&who); sqlState(err) != pgerrcode.UndefinedFunction {
			t.Errorf("the next holder calls the revoked user's function: %q, %v; want undefined_function", who, err)
		}
		// Nor can a holder act as the marker role every issued user shares.
		if _, err := next.Exec(t.Context(), "SET ROLE "+harness.ManagedRole); sqlState(err) != pgerrcode.InsufficientPrivilege {
			t.Errorf("SET ROLE %s as an issued user = %v; want permission denied", harness.ManagedRole, err)
		}
	})

	// With reassign_owned_to they go to that NOLOGIN role instead: a definer
	// function then runs as it, never as the admin.
	t.Run("DefinerObjectsReassignedToNologinRole", func(t *testing.T) {
		t.Parallel()
		d := harness.NewDeployment(t)
		attic := harness.RandomName("cbtest_attic_")
		d.Backend.Exec(t, "GRANT CREATE ON SCHEMA public TO "+d.Backend.ReadGroup+"; CREATE ROLE "+attic+" NOLOGIN")
		t.Cleanup(func() { d.Backend.Exec(t, "DROP OWNED BY "+attic+"; DROP ROLE "+attic) })
		b := harness.StartBroker(t, d.Config(attackerRoles(d.Backend, "      reassign_owned_to: "+attic+"\n")), d.Env()...)
		token := d.Issuer.Token(t, appSubject, nil, time.Hour)
		attacker := issue(t, b, token, map[string]any{"role": "creator"})
		plantDefinerTraps(t, pgSession(t, attacker))

		revoke(t, b, token, attacker.LeaseID)
		if fn, view, super := trapOwners(t, d.Backend); fn != attic || view != attic || super {
			t.Fatalf("after the revoke the function is owned by %q and the view by %q (a superuser: %t); want both by %s", fn, view, super, attic)
		}
		next := pgSession(t, issue(t, b, token, map[string]any{"role": "creator"}))
		var who string
		if err := next.QueryRow(t.Context(), "SELECT public.whoami()").Scan(&who); err != nil || who != attic {
			t.Errorf("the revoked user's definer function runs as %q (%v), want %s", who, err, attic)
		}
	})

	// A group role that can administer roles hands that to every holder: the
	// broker refuses to start, naming the role and what is wrong.
	t.Run("TooStrongGroupRefusedAtStart", func(t *testing.T) {
		t.Parallel()
		d := harness.NewDeployment(t)
		strong := harness.RandomName("cbtest_strong_")
		d.Backend.Exec(t, "CREATE ROLE "+strong+" NOLOGIN CREATEROLE; GRANT "+strong+" TO "+d.Backend.ReadGroup)
		t.Cleanup(func() { d.Backend.Exec(t, "DROP ROLE "+strong) })
		cfg := strings.ReplaceAll(d.Config(attackerRoles(d.Backend, "")), harness.ListenPlaceholder, "127.0.0.1:1")
		path := filepath.Join(t.TempDir(), "credbroker.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := harness.RunCLI(t, d.Env(), "serve", "--config", path)
		if code == 0 {
			t.Fatal("serve with a too-strong group role exited 0")
		}
		for _, want := range []string{"creator", d.Backend.ReadGroup, strong, "CREATEROLE"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("serve's error does not name %q:\n%s", want, stderr)
			}
		}
	})
}
