package broker

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

// The tests of this file run one at a time (not in parallel): each checks,
// once its broker is closed, that no goroutine it started is left.

// verifyNoLeaks registers, first, a cleanup that runs last: after the
// broker's Close, no goroutine may remain that was not there before.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		goleak.VerifyNone(t, ignore)
	})
}

// TestHandlers calls every handler through the generated Connect clients,
// against a broker on a real store and a real PostgreSQL backend.
func TestHandlers(t *testing.T) {
	verifyNoLeaks(t)
	b := startBroker(t)
	ctx := t.Context()
	app, other, admin := b.token(t, "app"), b.token(t, "other"), b.token(t, "admin")

	// ListRoles: what app may request, with the TTLs its grant allows.
	roles, err := b.cred.ListRoles(ctx, authed(app, &credbrokerv1.ListRolesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range roles.Msg.GetRoles() {
		names = append(names, r.GetName())
		if r.GetPlugin() != "postgres" || r.GetBackend() != "pg" {
			t.Errorf("role %s: plugin %q backend %q", r.GetName(), r.GetPlugin(), r.GetBackend())
		}
	}
	if want := []string{"reader", "fixed", "emergency"}; !slices.Equal(names, want) {
		t.Errorf("ListRoles(app) = %v, want %v", names, want)
	}
	if e := roles.Msg.GetRoles()[2]; !e.GetBreakGlassOnly() || e.GetBreakGlassMaxTtl().AsDuration() != 2*time.Minute || e.GetMaxTtl().AsDuration() != time.Hour {
		t.Errorf("emergency for app: %v", e)
	}

	// WhoAmI.
	who, err := b.cred.WhoAmI(ctx, authed(app, &credbrokerv1.WhoAmIRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if m := who.Msg; m.GetSubject() != "app" || m.GetIssuer() != "test" || m.GetAdmin() ||
		!slices.Equal(m.GetRoles(), []string{"reader", "fixed"}) || !slices.Equal(m.GetBreakGlassRoles(), []string{"emergency"}) ||
		!slices.Equal(m.GetPolicies(), []string{"app"}) || m.GetExpiresAt() == nil {
		t.Errorf("WhoAmI(app) = %v", m)
	}
	if who, err := b.cred.WhoAmI(ctx, authed(admin, &credbrokerv1.WhoAmIRequest{})); err != nil || !who.Msg.GetAdmin() {
		t.Errorf("WhoAmI(admin) = %v, %v: want admin", who, err)
	}

	// IssueCredential: a real user that logs in.
	issued, err := b.cred.IssueCredential(ctx, authed(app, &credbrokerv1.IssueCredentialRequest{Role: "reader"}))
	if err != nil {
		t.Fatal(err)
	}
	lease, cred := issued.Msg.GetLease(), issued.Msg.GetCredential()
	if lease.GetState() != credbrokerv1.LeaseState_LEASE_STATE_ACTIVE || lease.GetRole() != "reader" || lease.GetSubject() != "app" ||
		issued.Msg.GetTtlClamped() || lease.GetExpiresAt().AsTime().Sub(lease.GetCreatedAt().AsTime()).Round(time.Second) != time.Minute {
		t.Errorf("issued lease %v", lease)
	}
	if cred.GetUsername() != lease.GetUsername() || cred.GetPassword() == "" || cred.GetUri() == "" {
		t.Fatalf("credential %q / uri set %t", cred.GetUsername(), cred.GetUri() != "")
	}
	if err := login(ctx, cred.GetUri()); err != nil {
		t.Fatalf("the issued credential does not log in: %v", err)
	}
	clamped, err := b.cred.IssueCredential(ctx, authed(app, &credbrokerv1.IssueCredentialRequest{Role: "reader", Ttl: durationpb.New(time.Hour)}))
	if err != nil || !clamped.Msg.GetTtlClamped() {
		t.Errorf("issue with ttl 1h over max_ttl 5m: %v, clamped %t", err, clamped.Msg.GetTtlClamped())
	}

	// GetLease: the holder and an admin see it; anyone else gets not_found.
	if got, err := b.cred.GetLease(ctx, authed(app, &credbrokerv1.GetLeaseRequest{LeaseId: lease.GetId()})); err != nil || got.Msg.GetLease().GetUsername() != lease.GetUsername() {
		t.Errorf("GetLease(app) = %v, %v", got, err)
	}
	if _, err := b.cred.GetLease(ctx, authed(admin, &credbrokerv1.GetLeaseRequest{LeaseId: lease.GetId()})); err != nil {
		t.Errorf("GetLease(admin): %v", err)
	}
	_, err = b.cred.GetLease(ctx, authed(other, &credbrokerv1.GetLeaseRequest{LeaseId: lease.GetId()}))
	wantCode(t, "GetLease of someone else's lease", err, connect.CodeNotFound, "lease not found")

	// ListLeases: one's own only.
	list, err := b.cred.ListLeases(ctx, authed(app, &credbrokerv1.ListLeasesRequest{State: credbrokerv1.LeaseState_LEASE_STATE_ACTIVE}))
	if err != nil || len(list.Msg.GetLeases()) != 2 {
		t.Errorf("ListLeases(app) = %v, %v: want 2", list, err)
	}
	if list, err := b.cred.ListLeases(ctx, authed(other, &credbrokerv1.ListLeasesRequest{})); err != nil || len(list.Msg.GetLeases()) != 0 {
		t.Errorf("ListLeases(other) = %v, %v: want none", list, err)
	}

	// RenewLease moves the expiry forward.
	renewed, err := b.cred.RenewLease(ctx, authed(app, &credbrokerv1.RenewLeaseRequest{LeaseId: lease.GetId(), Increment: durationpb.New(3 * time.Minute)}))
	if err != nil {
		t.Fatal(err)
	}
	if !renewed.Msg.GetLease().GetExpiresAt().AsTime().After(lease.GetExpiresAt().AsTime()) {
		t.Errorf("renewed expiry %v, was %v", renewed.Msg.GetLease().GetExpiresAt().AsTime(), lease.GetExpiresAt().AsTime())
	}

	// RevokeLease: the user is gone; a revoked lease cannot be renewed.
	revoked, err := b.cred.RevokeLease(ctx, authed(app, &credbrokerv1.RevokeLeaseRequest{LeaseId: lease.GetId()}))
	if err != nil || revoked.Msg.GetLease().GetState() != credbrokerv1.LeaseState_LEASE_STATE_REVOKED || revoked.Msg.GetLease().GetRevokeReason() != "revoked by holder" {
		t.Fatalf("RevokeLease = %v, %v", revoked, err)
	}
	if err := login(ctx, cred.GetUri()); err == nil {
		t.Error("the revoked credential still logs in")
	}
	_, err = b.cred.RenewLease(ctx, authed(app, &credbrokerv1.RenewLeaseRequest{LeaseId: lease.GetId()}))
	wantCode(t, "renew a revoked lease", err, connect.CodeFailedPrecondition, "the lease is not active")

	// A lease of a role that is not renewable.
	fixed, err := b.cred.IssueCredential(ctx, authed(app, &credbrokerv1.IssueCredentialRequest{Role: "fixed"}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.cred.RenewLease(ctx, authed(app, &credbrokerv1.RenewLeaseRequest{LeaseId: fixed.Msg.GetLease().GetId()}))
	wantCode(t, "renew a lease of a role that is not renewable", err, connect.CodeFailedPrecondition, "not renewable")

	// Break-glass: refused without a reason, capped with one.
	_, err = b.cred.IssueCredential(ctx, authed(app, &credbrokerv1.IssueCredentialRequest{Role: "emergency"}))
	wantCode(t, "break-glass role without a reason", err, connect.CodePermissionDenied, "break-glass only")
	bg, err := b.cred.IssueCredential(ctx, authed(app, &credbrokerv1.IssueCredentialRequest{Role: "emergency", BreakGlassReason: "incident 42", Ttl: durationpb.New(time.Hour)}))
	if err != nil || !bg.Msg.GetLease().GetBreakGlass() || !bg.Msg.GetTtlClamped() {
		t.Errorf("break-glass issue = %v, %v: want a break-glass lease clamped to 2m", bg, err)
	}

	// GetInventory: admins only; counts ACTIVE leases by role.
	_, err = b.adm.GetInventory(ctx, authed(app, &credbrokerv1.GetInventoryRequest{}))
	wantCode(t, "GetInventory(app)", err, connect.CodePermissionDenied, "admin policy")
	inv, err := b.adm.GetInventory(ctx, authed(admin, &credbrokerv1.GetInventoryRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	active := map[string]int64{}
	for _, r := range inv.Msg.GetRoles() {
		active[r.GetName()] = r.GetActiveLeases()
	}
	if active["reader"] != 1 || active["fixed"] != 1 || active["emergency"] != 1 || active["secret"] != 0 ||
		len(inv.Msg.GetBackends()) != 1 || inv.Msg.GetBackends()[0].GetPlugin() != "postgres" {
		t.Errorf("inventory: active %v, backends %v", active, inv.Msg.GetBackends())
	}

	// RevokeLeases: by role, by an admin.
	_, err = b.adm.RevokeLeases(ctx, authed(admin, &credbrokerv1.RevokeLeasesRequest{}))
	wantCode(t, "RevokeLeases with no filter", err, connect.CodeInvalidArgument, "give at least one of role, backend, subject")
	_, err = b.adm.RevokeLeases(ctx, authed(app, &credbrokerv1.RevokeLeasesRequest{Role: "reader"}))
	wantCode(t, "RevokeLeases(app)", err, connect.CodePermissionDenied, "admin policy")
	mass, err := b.adm.RevokeLeases(ctx, authed(admin, &credbrokerv1.RevokeLeasesRequest{Subject: "app", Reason: "rotation"}))
	if err != nil || mass.Msg.GetRevoked() != 3 || mass.Msg.GetRetrying() != 0 {
		t.Errorf("RevokeLeases(subject app) = %v, %v: want 3 revoked", mass, err)
	}

	// ExportLeaseHistory: every event, in one verifiable chain order; the
	// two refusals (app without a break-glass reason, other for a role not
	// granted) are on the record.
	if _, err := b.cred.IssueCredential(ctx, authed(other, &credbrokerv1.IssueCredentialRequest{Role: "fixed"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("issue of a role not granted: %v", err)
	}
	stream, err := b.adm.ExportLeaseHistory(ctx, authed(admin, &credbrokerv1.ExportLeaseHistoryRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var events []*credbrokerv1.LeaseEvent
	kinds := map[string]int{}
	for stream.Receive() {
		events = append(events, stream.Msg().GetEvent())
		kinds[stream.Msg().GetEvent().GetKind()]++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	_ = stream.Close()
	if n, err := VerifyExport(events, false); err != nil || n != len(events) {
		t.Errorf("VerifyExport: %d of %d, %v", n, len(events), err)
	}
	for kind, want := range map[string]int{"issued": 4, "renewed": 1, "revoked": 4, "break_glass": 1, "denied": 2, "exported": 1} {
		if kinds[kind] != want {
			t.Errorf("exported %d %s events, want %d (all: %v)", kinds[kind], kind, want, kinds)
		}
	}
	bad, err := b.adm.ExportLeaseHistory(ctx, authed(admin, &credbrokerv1.ExportLeaseHistoryRequest{
		StartTime: timestamppb.New(time.Now()), EndTime: timestamppb.New(time.Now().Add(-time.Hour)),
	}))
	if err == nil {
		for bad.Receive() {
		}
		err = bad.Err()
		_ = bad.Close()
	}
	wantCode(t, "export that ends before it starts", err, connect.CodeInvalidArgument, "end_time is before start_time")

	// The password left the process once, in the response: never in a log.
	if logs := b.logs.String(); strings.Contains(logs, cred.GetPassword()) {
		t.Error("the issued password is in the broker's logs")
	}
}

// TestErrorMapping checks the code and message callers get for each kind
// of failure, the store's outage and an internal error included.
func TestErrorMapping(t *testing.T) {
	verifyNoLeaks(t)
	b := startBroker(t)
	ctx := t.Context()
	app := b.token(t, "app")

	// unauthenticated: no token, an expired one, one signed by another key.
	_, err := b.cred.ListRoles(ctx, authed("", &credbrokerv1.ListRolesRequest{}))
	wantCode(t, "no token", err, connect.CodeUnauthenticated, "missing identity token")
	_, err = b.cred.ListRoles(ctx, authed(b.issuer.token(t, "app", -time.Minute), &credbrokerv1.ListRolesRequest{}))
	wantCode(t, "expired token", err, connect.CodeUnauthenticated, "")
	stranger := newTestIssuer(t, t.TempDir())
	_, err = b.cred.ListRoles(ctx, authed(stranger.token(t, "app", time.Hour), &credbrokerv1.ListRolesRequest{}))
	wantCode(t, "token signed by an unknown key", err, connect.CodeUnauthenticated, "")

	// permission_denied: a role that does not exist and one that is not
	// granted get the same answer.
	_, errUnknown := b.cred.IssueCredential(ctx, authed(app, &credbrokerv1.IssueCredentialRequest{Role: "nope"}))
	wantCode(t, "unknown role", errUnknown, connect.CodePermissionDenied, `role "nope" does not exist or is not granted to you`)
	_, errForbidden := b.cred.IssueCredential(ctx, authed(app, &credbrokerv1.IssueCredentialRequest{Role: "secret"}))
	wantCode(t, "forbidden role", errForbidden, connect.CodePermissionDenied, `role "secret" does not exist or is not granted to you`)
	if errUnknown != nil && errForbidden != nil &&
		strings.ReplaceAll(errUnknown.Error(), `"nope"`, "R") != strings.ReplaceAll(errForbidden.Error(), `"secret"`, "R") {
		t.Errorf("unknown and forbidden roles answer differently:\n%v\n%v", errUnknown, errForbidden)
	}

	// not_found.
	_, err = b.cred.GetLease(ctx, authed(app, &credbrokerv1.GetLeaseRequest{LeaseId: "lease_doesnotexist"}))
	wantCode(t, "unknown lease", err, connect.CodeNotFound, "lease not found: check the lease id")

	// invalid_argument.
	_, err = b.cred.IssueCredential(ctx, authed(app, &credbrokerv1.IssueCredentialRequest{Role: "reader", Ttl: durationpb.New(500 * time.Millisecond)}))
	wantCode(t, "ttl below the minimum", err, connect.CodeInvalidArgument, "ttl must be at least 1s")
	_, err = b.cred.ListLeases(ctx, authed(app, &credbrokerv1.ListLeasesRequest{PageSize: 501}))
	wantCode(t, "page_size 501", err, connect.CodeInvalidArgument, "page_size must be between 0 and 500")
	_, err = b.cred.ListLeases(ctx, authed(app, &credbrokerv1.ListLeasesRequest{PageToken: "not-a-token"}))
	wantCode(t, "a page token the store did not make", err, connect.CodeInvalidArgument, "")
	_, err = b.cred.RevokeLease(ctx, authed(app, &credbrokerv1.RevokeLeaseRequest{}))
	wantCode(t, "no lease_id", err, connect.CodeInvalidArgument, "lease_id is required")
	_, err = b.cred.GetLease(ctx, authed(app, &credbrokerv1.GetLeaseRequest{LeaseId: strings.Repeat("x", 1000)}))
	wantCode(t, "lease_id too long", err, connect.CodeInvalidArgument, "lease_id is 1000 bytes")

	// failed_precondition.
	fixed, err := b.cred.IssueCredential(ctx, authed(app, &credbrokerv1.IssueCredentialRequest{Role: "fixed"}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.cred.RenewLease(ctx, authed(app, &credbrokerv1.RenewLeaseRequest{LeaseId: fixed.Msg.GetLease().GetId()}))
	wantCode(t, "renew, not renewable", err, connect.CodeFailedPrecondition, "the lease's role is not renewable")

	// unavailable: the store's database is taken away (its sessions
	// terminated, new ones refused), then given back.
	database := b.storeDSN[strings.LastIndex(b.storeDSN, "/")+1:]
	database, _, _ = strings.Cut(database, "?")
	storeAccess(t, b.admin, database, false)
	t.Cleanup(func() { storeAccess(t, b.admin, database, true) }) // before the drop
	for name, call := range map[string]func() error{
		"ListLeases": func() error {
			_, err := b.cred.ListLeases(ctx, authed(app, &credbrokerv1.ListLeasesRequest{}))
			return err
		},
		"GetLease": func() error {
			_, err := b.cred.GetLease(ctx, authed(app, &credbrokerv1.GetLeaseRequest{LeaseId: fixed.Msg.GetLease().GetId()}))
			return err
		},
		"IssueCredential": func() error {
			_, err := b.cred.IssueCredential(ctx, authed(app, &credbrokerv1.IssueCredentialRequest{Role: "reader"}))
			return err
		},
	} {
		err := call()
		wantCode(t, name+" with the store down", err, connect.CodeUnavailable, "the lease store is unavailable; nothing was issued: retry shortly")
		if err != nil && strings.Contains(err.Error(), database) {
			t.Errorf("%s: the answer names the store's database: %v", name, err)
		}
	}
	storeAccess(t, b.admin, database, true)
	if _, err := b.cred.GetLease(ctx, authed(app, &credbrokerv1.GetLeaseRequest{LeaseId: fixed.Msg.GetLease().GetId()})); err != nil {
		t.Errorf("GetLease once the store is back: %v", err)
	}

	// internal: a failure nothing expects (the leases table is gone) is
	// logged on the server; the caller learns nothing of it.
	conn, err := pgx.Connect(ctx, b.storeDSN)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, "ALTER TABLE leases RENAME TO leases_gone")
	_ = conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.cred.ListLeases(ctx, authed(app, &credbrokerv1.ListLeasesRequest{}))
	wantCode(t, "store failure nothing expects", err, connect.CodeInternal, "")
	var ce *connect.Error
	if errors.As(err, &ce) && ce.Message() != "list leases failed: an internal error was logged on the server" {
		t.Errorf("internal error tells the caller %q", ce.Message())
	}
	if logs := b.logs.String(); !strings.Contains(logs, "list leases failed") || !strings.Contains(logs, "leases") {
		t.Errorf("the internal error was not logged:\n%s", logs)
	}
}

// storeAccess lets sessions into database, or refuses them and terminates
// the ones it has, from the admin database.
func storeAccess(t *testing.T, admin, database string, allow bool) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to the admin database: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{database}.Sanitize()+" ALLOW_CONNECTIONS "+map[bool]string{true: "true", false: "false"}[allow]); err != nil {
		t.Fatalf("allow connections %t: %v", allow, err)
	}
	if !allow {
		if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, database); err != nil {
			t.Fatalf("terminate the store's sessions: %v", err)
		}
	}
}
