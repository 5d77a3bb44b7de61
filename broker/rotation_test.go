package broker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/plugins/postgres"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/proto/credbroker/v1/credbrokerv1connect"
)

// rotationConfig is harnessConfig's shape with store.kek and one backend,
// pg, whose admin is a role of the test's own.
const rotationConfig = `
store: {dsn: "file:%[1]s", kek: "file:%[4]s"}
issuers:
  - %[3]s
backends:
  - {name: pg, plugin: postgres, owner: test, environment: test, connection: {dsn: "file:%[2]s"%[5]s}}
roles:
  - {name: reader, backend: pg, default_ttl: 1m, max_ttl: 5m, postgres: {member_of: [pg_read_all_data]}}
policies:
  - {name: app, issuer: test, subject: app, roles: [reader]}
  - {name: admins, issuer: test, subject: admin, admin: true}
`

// rotationEnv is a store, a backend with an admin role that logs in with a
// password (SCRAM over TCP), and the config of brokers on them.
type rotationEnv struct {
	cfgText   []byte
	superURL  string // the backend database as the superuser
	adminRole string
	adminURL  *url.URL // the backend database as adminRole, without password
	password  string   // adminRole's password as the config has it
	issuer    *testIssuer
	storeDSN  string
}

func newRotationEnv(t *testing.T, rotate string) *rotationEnv {
	t.Helper()
	super := plugintest.PostgresURL(t)
	dir := t.TempDir()
	e := &rotationEnv{issuer: newTestIssuer(t, dir), storeDSN: plugintest.NewTestDatabase(t, super)}
	e.superURL = plugintest.NewTestDatabase(t, super)
	e.adminRole = plugins.NewUsername("cbtest_rotadmin", 40)
	e.password = plugins.NewPassword().Reveal()
	execSQL(t, e.superURL,
		"CREATE ROLE "+e.adminRole+" LOGIN CREATEROLE PASSWORD '"+postgres.SCRAMVerifier(e.password)+"'",
		"GRANT pg_read_all_data TO "+e.adminRole+" WITH ADMIN OPTION")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, e.superURL); err == nil {
			_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+e.adminRole)
			_ = conn.Close(ctx)
		}
	})
	u, err := url.Parse(e.superURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(e.adminRole)
	e.adminURL = u
	withPW := *u
	withPW.User = url.UserPassword(e.adminRole, e.password)
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	storeFile, backendFile, kekFile := filepath.Join(dir, "store.dsn"), filepath.Join(dir, "backend.dsn"), filepath.Join(dir, "kek")
	for file, v := range map[string]string{storeFile: e.storeDSN, backendFile: withPW.String(), kekFile: base64.StdEncoding.EncodeToString(kek) + "\n"} {
		if err := os.WriteFile(file, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.cfgText = fmt.Appendf(nil, rotationConfig, storeFile, backendFile, e.issuer.yaml(), kekFile, rotate)
	return e
}

func execSQL(t *testing.T, dsn string, stmts ...string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	for _, s := range stmts {
		if _, err := conn.Exec(t.Context(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// adminLogin logs in to the backend as the admin role with password.
func (e *rotationEnv) adminLogin(ctx context.Context, password string) error {
	u := *e.adminURL
	u.User = url.UserPassword(e.adminRole, password)
	return login(ctx, u.String())
}

// rotBroker is one replica.
type rotBroker struct {
	srv  *Server
	http *httptest.Server
	logs *syncBuffer
	reg  *prometheus.Registry
	cred credbrokerv1connect.CredentialServiceClient
	adm  credbrokerv1connect.AdminServiceClient
}

// start starts a replica; its Close runs when the test ends (or earlier).
func (e *rotationEnv) start(t *testing.T) *rotBroker {
	t.Helper()
	cfg, err := ParseConfig(e.cfgText, testDrivers)
	if err != nil {
		t.Fatal(err)
	}
	b := &rotBroker{logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	log := slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b.srv, err = New(t.Context(), cfg, Options{Logger: log, Registry: b.reg})
	if err != nil {
		t.Fatal(err)
	}
	b.http = httptest.NewServer(b.srv.Handler())
	b.cred = credbrokerv1connect.NewCredentialServiceClient(b.http.Client(), b.http.URL)
	b.adm = credbrokerv1connect.NewAdminServiceClient(b.http.Client(), b.http.URL)
	t.Cleanup(b.Close)
	return b
}

func (b *rotBroker) Close() {
	b.http.CloseClientConnections()
	b.http.Close()
	b.srv.Close()
}

// issue issues reader and proves the credential logs in.
func (b *rotBroker) issue(t *testing.T, e *rotationEnv) *credbrokerv1.IssueCredentialResponse {
	t.Helper()
	resp, err := b.cred.IssueCredential(t.Context(), authed(e.issuer.token(t, "app", time.Hour), &credbrokerv1.IssueCredentialRequest{Role: "reader"}))
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	if err := login(t.Context(), resp.Msg.GetCredential().GetUri()); err != nil {
		t.Fatalf("log in with the issued credential: %v", err)
	}
	return resp.Msg
}

func (b *rotBroker) revoke(t *testing.T, e *rotationEnv, id string) {
	t.Helper()
	resp, err := b.cred.RevokeLease(t.Context(), authed(e.issuer.token(t, "admin", time.Hour), &credbrokerv1.RevokeLeaseRequest{LeaseId: id}))
	if err != nil || resp.Msg.GetLease().GetState() != credbrokerv1.LeaseState_LEASE_STATE_REVOKED {
		t.Fatalf("revoke %s: %v %v", id, resp, err)
	}
}

// stored returns the backend's current and candidate stored passwords.
func (b *rotBroker) stored(t *testing.T) (cur, cand *leases.AdminSecret) {
	t.Helper()
	cur, cand, err := b.srv.store.AdminSecrets(t.Context(), "pg")
	if err != nil {
		t.Fatal(err)
	}
	return cur, cand
}

// rotate calls RotateRoot as admin.
func (b *rotBroker) rotate(t *testing.T, e *rotationEnv) (*credbrokerv1.RotateRootResponse, error) {
	t.Helper()
	resp, err := b.adm.RotateRoot(t.Context(), authed(e.issuer.token(t, "admin", time.Hour), &credbrokerv1.RotateRootRequest{Backend: "pg"}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// dieAt runs RotateRoot as if the broker died right after stage
// ("recorded": the candidate is stored; "rotated": the backend took it),
// and returns the candidate it left.
func (b *rotBroker) dieAt(t *testing.T, e *rotationEnv, stage string) *leases.AdminSecret {
	t.Helper()
	rotationHook = func(at, _ string) error {
		if at == stage {
			return errors.New("the broker died")
		}
		return nil
	}
	_, err := b.rotate(t, e)
	rotationHook = func(string, string) error { return nil }
	if err == nil {
		t.Fatal("RotateRoot succeeded through the hook")
	}
	_, cand := b.stored(t)
	if cand == nil {
		t.Fatal("no candidate recorded")
	}
	return cand
}

func eventKinds(t *testing.T, b *rotBroker) string {
	t.Helper()
	var k []string
	if err := b.srv.store.Events(t.Context(), leases.EventFilter{}, func(e leases.Event) error {
		k = append(k, e.Kind)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return strings.Join(k, ",")
}

// TestRotateRoot runs root rotation against a real PostgreSQL whose admin
// logs in with a password: sequential subtests, since they set the
// package's rotationHook.
func TestRotateRoot(t *testing.T) {
	t.Run("EndToEndWithTwoReplicas", func(t *testing.T) {
		e := newRotationEnv(t, "")
		b1 := e.start(t)
		before := b1.issue(t, e)

		got, err := b1.rotate(t, e)
		if err != nil {
			t.Fatalf("RotateRoot: %v", err)
		}
		cur, cand := b1.stored(t)
		if cur == nil || cand != nil || cur.Version != got.GetVersion() || got.GetRotatedAt() == nil {
			t.Fatalf("after RotateRoot: current %v, candidate %v, response %v", cur, cand, got)
		}
		newPW := cur.Value.Reveal()
		if err := e.adminLogin(t.Context(), e.password); err == nil {
			t.Fatal("the old admin password still logs in")
		}
		if err := e.adminLogin(t.Context(), newPW); err != nil {
			t.Fatalf("the new admin password does not log in: %v", err)
		}
		after := b1.issue(t, e)
		b1.revoke(t, e, before.GetLease().GetId())

		// A second replica started from the same config (whose reference
		// still holds the old password) opens the backend with the stored
		// one.
		b2 := e.start(t)
		b2.issue(t, e)
		// Rotating again on b1: b2 picks the new password up by polling.
		if _, err := b1.rotate(t, e); err != nil {
			t.Fatalf("second RotateRoot: %v", err)
		}
		if err := b2.srv.SyncAdminSecrets(t.Context()); err != nil {
			t.Fatalf("SyncAdminSecrets: %v", err)
		}
		cur2, _ := b2.stored(t)
		if b2.srv.rt.Load().passwords["pg"].version != cur2.Version {
			t.Fatalf("b2 did not reopen pg with version %d", cur2.Version)
		}
		// b2's pool's idle sessions stay logged in after a password change,
		// so prove new sessions work: close the old pool's connections.
		b2.issue(t, e)
		b2.revoke(t, e, after.GetLease().GetId())
		if err := e.adminLogin(t.Context(), newPW); err == nil {
			t.Fatal("the first rotated password still logs in after the second rotation")
		}

		inv, err := b2.adm.GetInventory(t.Context(), authed(e.issuer.token(t, "admin", time.Hour), &credbrokerv1.GetInventoryRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if last := inv.Msg.GetBackends()[0].GetLastRootRotation(); last == nil || !last.AsTime().Equal(cur2.RotatedAt) {
			t.Fatalf("inventory last_root_rotation %v, want %v", last, cur2.RotatedAt)
		}
		var m dto.Metric
		if err := b2.srv.svc.metrics.rootRotated.WithLabelValues("pg").Write(&m); err != nil {
			t.Fatal(err)
		}
		if v := m.GetGauge().GetValue(); v != float64(cur2.RotatedAt.UnixNano())/1e9 {
			t.Fatalf("credbroker_root_rotation_timestamp_seconds = %v", v)
		}
		if k := eventKinds(t, b1); strings.Count(k, leases.EventRootRotated) != 2 {
			t.Fatalf("events %s: want two root_rotated", k)
		}
		for _, b := range []*rotBroker{b1, b2} {
			for _, pw := range []string{e.password, newPW, cur2.Value.Reveal()} {
				if strings.Contains(b.logs.String(), pw) {
					t.Fatal("an admin password is in the broker's logs")
				}
			}
		}
	})

	t.Run("CrashAfterRecordRollsForward", func(t *testing.T) {
		e := newRotationEnv(t, "")
		b1 := e.start(t)
		cand := b1.dieAt(t, e, "recorded")
		b1.Close()
		// The restart finds the candidate, which does not log in, and the
		// config's password, which does: it sets the candidate itself and
		// finishes, so that a change of the dead broker's still on its way
		// would set the same password.
		b2 := e.start(t)
		cur, left := b2.stored(t)
		if left != nil || cur == nil || cur.Value.Reveal() != cand.Value.Reveal() {
			t.Fatalf("after restart: current %v candidate %v; want the candidate current", cur, left)
		}
		if err := e.adminLogin(t.Context(), cand.Value.Reveal()); err != nil {
			t.Fatalf("the new admin password does not log in: %v", err)
		}
		if err := e.adminLogin(t.Context(), e.password); err == nil {
			t.Fatal("the config's admin password still logs in")
		}
		b2.issue(t, e)
		if k := eventKinds(t, b2); !strings.Contains(k, leases.EventRootRotated) {
			t.Fatalf("events %s", k)
		}
		// And a rotation now works.
		if _, err := b2.rotate(t, e); err != nil {
			t.Fatal(err)
		}
		b2.issue(t, e)
	})

	t.Run("CrashAfterRotateFinishes", func(t *testing.T) {
		e := newRotationEnv(t, "")
		b1 := e.start(t)
		lease := b1.issue(t, e)
		cand := b1.dieAt(t, e, "rotated")
		if err := e.adminLogin(t.Context(), e.password); err == nil {
			t.Fatal("the backend did not take the new password")
		}
		// A live replica (no restart) resolves it on its next poll.
		if err := b1.srv.SyncAdminSecrets(t.Context()); err != nil {
			t.Fatalf("SyncAdminSecrets: %v", err)
		}
		cur, left := b1.stored(t)
		if left != nil || cur == nil || cur.Value.Reveal() != cand.Value.Reveal() {
			t.Fatalf("after the poll: current %v candidate %v; want the candidate current", cur, left)
		}
		b1.issue(t, e)
		b1.revoke(t, e, lease.GetLease().GetId())
		b1.Close()
		// A restart opens with the stored password.
		b2 := e.start(t)
		b2.issue(t, e)
	})

	t.Run("FirstRotationChangeOnItsWayLocksNobodyOut", func(t *testing.T) {
		// A broker recorded the first rotation's candidate, sent the
		// backend its ALTER ROLE, and died while the statement waited on a
		// lock: PostgreSQL goes on with it. The recovery must not settle on
		// the config's password (which the store does not hold) and let
		// that change land after it: the broker would be locked out.
		e := newRotationEnv(t, "")
		b1 := e.start(t)
		cand := b1.dieAt(t, e, "recorded")
		ctx := context.WithoutCancel(t.Context())
		// The lock: an open transaction that altered the admin role.
		holder, err := pgx.Connect(ctx, e.superURL)
		if err != nil {
			t.Fatal(err)
		}
		defer holder.Close(ctx)
		tx, err := holder.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "ALTER ROLE "+e.adminRole+" CONNECTION LIMIT -1"); err != nil {
			t.Fatal(err)
		}
		// The dead broker's statement, on its way.
		u := *e.adminURL
		u.User = url.UserPassword(e.adminRole, e.password)
		dead, err := pgx.Connect(ctx, u.String())
		if err != nil {
			t.Fatal(err)
		}
		defer dead.Close(ctx)
		deadDone := make(chan error, 1)
		go func() {
			_, err := dead.Exec(ctx, "ALTER ROLE SESSION_USER PASSWORD '"+postgres.SCRAMVerifier(cand.Value.Reveal())+"'")
			deadDone <- err
		}()
		waiting := func() int {
			conn, err := pgx.Connect(ctx, e.superURL)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE usename = $1 AND wait_event_type = 'Lock' AND starts_with(query, 'ALTER ROLE')`, e.adminRole).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		waitFor := func(what string, ok func() bool) {
			t.Helper()
			for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("timed out waiting until %s", what)
				}
			}
		}
		waitFor("the dead broker's ALTER ROLE waits", func() bool { return waiting() == 1 })
		synced := make(chan error, 1)
		go func() { synced <- b1.srv.SyncAdminSecrets(ctx) }()
		// The recovery sets the config's password again, behind the dead
		// broker's change; before the fix it rolled back at once.
		waitFor("the recovery's ALTER ROLE waits or the recovery returns", func() bool { return waiting() == 2 || len(synced) == 1 })
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-deadDone; err != nil {
			t.Fatalf("the dead broker's ALTER ROLE: %v", err)
		}
		// PostgreSQL makes the second ALTER ROLE of the row fail ("tuple
		// concurrently updated"): the recovery keeps both and tries again,
		// and the next poll finds the backend took the candidate.
		if err := <-synced; err != nil {
			t.Logf("SyncAdminSecrets while the change was on its way: %v", err)
			if err := b1.srv.SyncAdminSecrets(ctx); err != nil {
				t.Fatalf("SyncAdminSecrets again: %v", err)
			}
		}
		cur, left := b1.stored(t)
		if left != nil {
			t.Fatalf("after the recovery a candidate is left: %v", left)
		}
		t.Logf("the recovery %s", map[bool]string{true: "finished the rotation", false: "rolled it back"}[cur != nil])
		want, other := e.password, cand.Value.Reveal()
		if cur != nil {
			if cur.Value.Reveal() != cand.Value.Reveal() {
				t.Fatalf("the store's current password is neither the config's nor the candidate")
			}
			want, other = other, want
		}
		if err := e.adminLogin(t.Context(), want); err != nil {
			t.Fatalf("lockout: the password the store settled on (finished: %v) does not log in: %v", cur != nil, err)
		}
		if err := e.adminLogin(t.Context(), other); err == nil {
			t.Fatalf("the password the store did not settle on (finished: %v) logs in", cur != nil)
		}
		b1.issue(t, e)
	})

	t.Run("RotatedByAnotherReplica", func(t *testing.T) {
		// b1 rotates; b2 has not polled, and its pool's sessions, which
		// logged in with the old password, end. b2's issue, renewal and
		// revoke go on: a failed backend call finds the new password in
		// the store and is made again.
		e := newRotationEnv(t, "")
		b1, b2 := e.start(t), e.start(t)
		lease := b2.issue(t, e)
		endAdminSessions := func() {
			execSQL(t, e.superURL, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '"+e.adminRole+"'")
		}
		if _, err := b1.rotate(t, e); err != nil {
			t.Fatal(err)
		}
		endAdminSessions()
		b2.issue(t, e)
		if _, err := b1.rotate(t, e); err != nil {
			t.Fatal(err)
		}
		endAdminSessions()
		renewed, err := b2.cred.RenewLease(t.Context(), authed(e.issuer.token(t, "app", time.Hour), &credbrokerv1.RenewLeaseRequest{LeaseId: lease.GetLease().GetId()}))
		if err != nil {
			t.Fatalf("renew on b2 after b1 rotated: %v", err)
		}
		if _, err := b1.rotate(t, e); err != nil {
			t.Fatal(err)
		}
		endAdminSessions()
		b2.revoke(t, e, renewed.Msg.GetLease().GetId())
		cur, _ := b2.stored(t)
		if got := b2.srv.rt.Load().passwords["pg"].version; got != cur.Version {
			t.Fatalf("b2 uses admin password version %d, the store's is %d", got, cur.Version)
		}
	})

	t.Run("RotateWhileLockedIsAborted", func(t *testing.T) {
		e := newRotationEnv(t, "")
		b1 := e.start(t)
		lock, ok, err := b1.srv.store.LockRotation(t.Context(), "pg")
		if err != nil || !ok {
			t.Fatalf("LockRotation: %v %v", ok, err)
		}
		_, err = b1.rotate(t, e)
		lock.Unlock(t.Context())
		wantCode(t, "RotateRoot while another rotation runs", err, connect.CodeAborted, "is running")
	})

	t.Run("PeriodicRotation", func(t *testing.T) {
		e := newRotationEnv(t, ", rotate: {period: 720h}")
		b1 := e.start(t)
		b2 := e.start(t)
		// Never rotated: the first poll rotates, once, on one replica.
		if err := b1.srv.SyncAdminSecrets(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := b2.srv.SyncAdminSecrets(t.Context()); err != nil {
			t.Fatal(err)
		}
		cur, _ := b1.stored(t)
		if cur == nil || cur.Actor != "broker" {
			t.Fatalf("not rotated by the poll: %v", cur)
		}
		if k := eventKinds(t, b1); strings.Count(k, leases.EventRootRotated) != 1 {
			t.Fatalf("events %s: want one root_rotated", k)
		}
		b2.issue(t, e)
		if err := e.adminLogin(t.Context(), e.password); err == nil {
			t.Fatal("the configured admin password still logs in")
		}
	})

	t.Run("NoKEK", func(t *testing.T) {
		b := startBroker(t)
		admin := b.token(t, "admin")
		_, err := b.adm.RotateRoot(t.Context(), authed(admin, &credbrokerv1.RotateRootRequest{Backend: "pg"}))
		wantCode(t, "RotateRoot without store.kek", err, connect.CodeFailedPrecondition, "store.kek is not set")
		_, err = b.adm.RewrapSecrets(t.Context(), authed(admin, &credbrokerv1.RewrapSecretsRequest{}))
		wantCode(t, "RewrapSecrets without store.kek", err, connect.CodeFailedPrecondition, "store.kek is not set")
		_, err = b.adm.RotateRoot(t.Context(), authed(b.token(t, "app"), &credbrokerv1.RotateRootRequest{Backend: "pg"}))
		wantCode(t, "RotateRoot by a non-admin", err, connect.CodePermissionDenied, "")
	})

	t.Run("Rewrap", func(t *testing.T) {
		e := newRotationEnv(t, "")
		b1 := e.start(t)
		if _, err := b1.rotate(t, e); err != nil {
			t.Fatal(err)
		}
		resp, err := b1.adm.RewrapSecrets(t.Context(), authed(e.issuer.token(t, "admin", time.Hour), &credbrokerv1.RewrapSecretsRequest{}))
		if err != nil || resp.Msg.GetRewrapped() != 0 || resp.Msg.GetUnchanged() != 1 || resp.Msg.GetKekId() == "" {
			t.Fatalf("RewrapSecrets = %v, %v", resp, err)
		}
	})
}

func TestRotationConfig(t *testing.T) {
	t.Parallel()
	const base = `
store: {dsn: "env:DB"%s}
issuers:
  - {name: t, issuer: "https://issuer.test", audiences: [credbroker], jwks_url: "https://issuer.test/jwks", algorithms: [RS256]}
backends:
  - {name: pg, plugin: postgres, owner: test, environment: test, connection: {dsn: "env:PG"%s}}
`
	for name, tc := range map[string]struct {
		store, conn string
		errs        []string
	}{
		"NoRotation":        {},
		"KEKList":           {store: `, kek: [file:/a, "env:B"]`, conn: `, rotate: {period: 720h}`},
		"RotateWithoutKEK":  {conn: `, rotate: {period: 720h}`, errs: []string{"backends[0].connection.rotate: needs store.kek"}},
		"PeriodTooShort":    {store: `, kek: file:/k`, conn: `, rotate: {period: 5m}`, errs: []string{"rotate.period: 5m0s: at least 1h"}},
		"PeriodMissing":     {store: `, kek: file:/k`, conn: `, rotate: {}`, errs: []string{"rotate.period: required"}},
		"UnknownRotateKey":  {store: `, kek: file:/k`, conn: `, rotate: {period: 1h, every: 2h}`, errs: []string{"rotate.every: unknown key"}},
		"InlineKEK":         {store: `, kek: c2VjcmV0`, errs: []string{"store.kek: secrets must not be written inline"}},
		"InlineKEKInList":   {store: `, kek: [file:/a, c2VjcmV0]`, errs: []string{"store.kek[1]: secrets must not be written inline"}},
		"DuplicateKEK":      {store: `, kek: [file:/a, file:/a]`, errs: []string{"store.kek[1]: file:/a is listed twice"}},
		"RotateNotAMapping": {store: `, kek: file:/k`, conn: `, rotate: 720h`, errs: []string{"rotate: want a mapping"}},
		"PluginStillStrict": {conn: `, dns: x`, errs: []string{"connection.dns: unknown key"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := ParseConfig(fmt.Appendf(nil, base, tc.store, tc.conn), testDrivers)
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(tc.conn, "rotate") && (cfg.Backends[0].Rotate == nil || cfg.Backends[0].Rotate.Period != 720*time.Hour) {
					t.Fatalf("rotate %+v", cfg.Backends[0].Rotate)
				}
				return
			}
			if err == nil {
				t.Fatal("config accepted")
			}
			for _, want := range tc.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}
