package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
)

// TestRevokeQuickPathFallsBack: a user that owns an object takes the careful
// path, which drops the object; and one that makes an object between the
// lookup and the quick drop (forced here by running the two apart) is not
// dropped by the quick path, which commits nothing, and then removed by the
// careful path in full.
func TestRevokeQuickPathFallsBack(t *testing.T) {
	t.Parallel()
	dbURL := plugintest.NewTestDatabase(t, plugintest.PostgresURL(t))
	admin := connect(t, dbURL)
	p := openInternal(t, dbURL, 2, nil)
	creators := groupRole(t, admin, "")
	if _, err := admin.Exec(t.Context(), "GRANT USAGE, CREATE ON SCHEMA public TO "+ident(creators)); err != nil {
		t.Fatal(err)
	}
	role := &Role{MemberOf: []string{creators}}
	// issue makes a user of role with a session of its own.
	issue := func(t *testing.T) (string, *pgx.Conn) {
		t.Helper()
		req := plugins.CreateOf[*Role]{
			Username: plugins.NewUsername("fallback", 63), Password: p.NewPassword(),
			ExpiresAt: time.Now().Add(time.Hour), Role: "fallback", Spec: role,
		}
		resp, err := p.Create(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = p.Revoke(context.Background(), plugins.RevokeOf[*Role]{Username: req.Username, Spec: role, State: resp.State})
		})
		return req.Username, connect(t, resp.Credential.URI.Reveal())
	}
	makeTable := func(t *testing.T, holder *pgx.Conn, table string) {
		t.Helper()
		if _, err := holder.Exec(t.Context(), "CREATE TABLE public."+table+" (id int)"); err != nil {
			t.Fatal(err)
		}
	}
	gone := func(t *testing.T, username, table string, holder *pgx.Conn) {
		t.Helper()
		if roleExists(t, admin, username) {
			t.Error("the user exists after the revoke")
		}
		var exists bool
		if err := admin.QueryRow(t.Context(), "SELECT to_regclass($1) IS NOT NULL", "public."+table).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Errorf("the user's table %s outlived the revoke", table)
		}
		if err := holder.Ping(t.Context()); err == nil {
			t.Error("the user's session outlived the revoke")
		}
	}

	t.Run("OwnsBeforeLookup", func(t *testing.T) {
		username, holder := issue(t)
		makeTable(t, holder, "owned_before")
		u, found, err := p.lookUp(t.Context(), username)
		if err != nil || !found || !u.depends {
			t.Fatalf("lookUp = %+v, %v, %v; want the user, depending", u, found, err)
		}
		if _, err := p.Revoke(t.Context(), plugins.RevokeOf[*Role]{Username: username, Spec: role}); err != nil {
			t.Fatal(err)
		}
		gone(t, username, "owned_before", holder)
	})

	t.Run("OwnsAfterLookup", func(t *testing.T) {
		username, holder := issue(t)
		u, found, err := p.lookUp(t.Context(), username)
		if err != nil || !found || u.depends {
			t.Fatalf("lookUp = %+v, %v, %v; want the user, not depending", u, found, err)
		}
		makeTable(t, holder, "owned_after")
		if err := p.dropQuickly(t.Context(), u); sqlState(err) != pgerrcode.DependentObjectsStillExist {
			t.Fatalf("dropQuickly of a user that owns a table = %v, want dependent_objects_still_exist", err)
		}
		if !roleExists(t, admin, username) {
			t.Fatal("the quick path dropped the user, or committed part of the drop")
		}
		if err := p.remove(t.Context(), u, state{V: stateVersion}); err != nil {
			t.Fatalf("remove after objects appeared: %v", err)
		}
		gone(t, username, "owned_after", holder)
	})
}
