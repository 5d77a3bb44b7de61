package e2e_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/test/harness"
)

func TestAuthErrors(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "10m", "1h", "")
	iss := d.Issuer
	app := iss.Token(t, appSubject, nil, time.Hour)
	other := iss.Token(t, otherSubject, nil, time.Hour)
	issueReq := map[string]any{"role": "readonly"}

	t.Run("Unauthenticated", func(t *testing.T) {
		stranger := harness.NewIssuer(t, "stranger")
		// An issuer with the right name and URL but another key: a forged token.
		forger := harness.NewIssuer(t, "test")
		forger.KID = iss.KID
		unsigned := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{
			"iss": iss.URL, "sub": appSubject, "aud": harness.Audience, "exp": time.Now().Add(time.Hour).Unix(),
		})
		none, err := unsigned.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		for name, token := range map[string]string{
			"NoToken":         "",
			"Garbage":         "garbage",
			"GarbageJWT":      "eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
			"UnknownIssuer":   stranger.Token(t, appSubject, nil, time.Hour),
			"UnknownIssuerIs": stranger.Token(t, appSubject, map[string]any{"iss": iss.URL}, time.Hour),
			"Forged":          forger.Token(t, appSubject, nil, time.Hour),
			"AlgNone":         none,
			"Expired":         iss.Token(t, appSubject, nil, -10*time.Minute),
			"NotYetValid":     iss.Token(t, appSubject, map[string]any{"nbf": time.Now().Add(10 * time.Minute).Unix()}, time.Hour),
			"WrongAudience":   iss.Token(t, appSubject, map[string]any{"aud": "someone-else"}, time.Hour),
			"NoAudience":      iss.Token(t, appSubject, map[string]any{"aud": nil}, time.Hour),
			"NoExpiry":        iss.Token(t, appSubject, map[string]any{"exp": nil}, time.Hour),
			"TamperedClaims":  tamper(t, app, otherSubject),
		} {
			t.Run(name, func(t *testing.T) {
				for _, method := range []string{"IssueCredential", "ListRoles", "GetLease"} {
					status, resp := b.Call(t, token, method, issueReq)
					if method == "GetLease" {
						status, resp = b.Call(t, token, method, map[string]any{"leaseId": "lease_x"})
					}
					wantError(t, method, status, resp, http.StatusUnauthorized, "unauthenticated")
				}
			})
		}
		// The Go client reports the same code.
		_, err = b.Client(iss.Token(t, appSubject, nil, -time.Hour)).ListRoles(t.Context(), connect.NewRequest(&credbrokerv1.ListRolesRequest{}))
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("Go client with an expired token: %v, want unauthenticated", err)
		}
		// Without the Bearer scheme.
		_, err = b.Client("Basic "+base64.StdEncoding.EncodeToString([]byte("a:b"))).ListRoles(t.Context(), connect.NewRequest(&credbrokerv1.ListRolesRequest{}))
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("Go client with a Basic credential as token: %v, want unauthenticated", err)
		}
	})

	t.Run("PermissionDenied", func(t *testing.T) {
		denied := d.Store.EventCount(t, "denied")
		status, resp := b.Call(t, app, "IssueCredential", map[string]any{"role": "reports"})
		msg := wantError(t, "a role no policy grants", status, resp, http.StatusForbidden, "permission_denied")
		if !strings.Contains(msg, "reports") {
			t.Errorf("the message does not name the role: %q", msg)
		}
		// Denials are counted and written off the request path, one event
		// per identity, role and minute (see attack_requests_test.go).
		if n := d.Store.EventCount(t, "denied"); n != denied {
			t.Errorf("store: %d denied events, want %d: a denial wrote on the request path", n, denied)
		}
		// A token whose subject no policy names at all.
		nobody := iss.Token(t, "system:serviceaccount:evil:pod", nil, time.Hour)
		status, resp = b.Call(t, nobody, "IssueCredential", issueReq)
		wantError(t, "an identity no policy names", status, resp, http.StatusForbidden, "permission_denied")
		if users := d.Backend.ManagedUsers(t); len(users) != 0 {
			t.Errorf("denied requests created users: %v", users)
		}
	})

	t.Run("UnknownRole", func(t *testing.T) {
		// Answered like a role not granted, so callers cannot list roles.
		status, resp := b.Call(t, app, "IssueCredential", map[string]any{"role": "no-such-role"})
		wantError(t, "unknown role", status, resp, http.StatusForbidden, "permission_denied")
	})

	t.Run("SomeoneElsesLease", func(t *testing.T) {
		theirs := issue(t, b, other, issueReq)
		mine := issue(t, b, app, issueReq)
		nonexistent := "lease_" + strings.Repeat("a", len(theirs.LeaseID)-len("lease_"))
		for _, method := range []string{"GetLease", "RenewLease", "RevokeLease"} {
			status, resp := b.Call(t, app, method, map[string]any{"leaseId": theirs.LeaseID})
			msgTheirs := wantError(t, method+" of someone else's lease", status, resp, http.StatusNotFound, "not_found")
			status, resp = b.Call(t, app, method, map[string]any{"leaseId": nonexistent})
			msgNone := wantError(t, method+" of a nonexistent lease", status, resp, http.StatusNotFound, "not_found")
			if msgTheirs != msgNone {
				t.Errorf("%s: someone else's lease says %q, a nonexistent one %q: the difference tells that the lease exists", method, msgTheirs, msgNone)
			}
			// The holder still can.
			status, resp = b.Call(t, app, method, map[string]any{"leaseId": mine.LeaseID})
			if status != http.StatusOK {
				t.Errorf("%s of my own lease: HTTP %d %v", method, status, resp)
			}
		}
		// Their lease is untouched: still ACTIVE, the user still there.
		status, resp := b.Call(t, other, "GetLease", map[string]any{"leaseId": theirs.LeaseID})
		if status != http.StatusOK || str(resp, "lease", "state") != "LEASE_STATE_ACTIVE" || str(resp, "lease", "expiresAt") != str(theirs.Raw, "lease", "expiresAt") {
			t.Errorf("the other holder's lease changed: HTTP %d %v", status, resp)
		}
		if !d.Backend.RoleExists(t, theirs.Username) {
			t.Errorf("the other holder's user was dropped")
		}
		// ListLeases shows only the caller's own.
		status, resp = b.Call(t, app, "ListLeases", map[string]any{})
		if status != http.StatusOK {
			t.Fatalf("ListLeases: HTTP %d %v", status, resp)
		}
		list, _ := resp["leases"].([]any)
		for _, l := range list {
			if l, _ := l.(map[string]any); str(l, "subject") != appSubject {
				t.Errorf("ListLeases returned a lease of %s", str(l, "subject"))
			}
		}
		// The CLI says not_found and exits 1.
		_, stderr, code := b.CLI(t, app, "lease", "get", theirs.LeaseID)
		if code != 1 || !strings.Contains(stderr, "not_found") {
			t.Errorf("credbroker lease get of someone else's lease: exit %d, %q", code, stderr)
		}
	})

	t.Run("InvalidArgument", func(t *testing.T) {
		for name, req := range map[string]map[string]any{
			"TTLZero":      {"role": "readonly", "ttl": "0s"},
			"TTLSubSecond": {"role": "readonly", "ttl": "0.5s"},
			"TTLNegative":  {"role": "readonly", "ttl": "-60s"},
			"TTLNotADur":   {"role": "readonly", "ttl": "ten minutes"},
		} {
			status, resp := b.Call(t, app, "IssueCredential", req)
			wantError(t, name, status, resp, http.StatusBadRequest, "invalid_argument")
		}
		status, resp := b.Call(t, app, "IssueCredential", `{"role": `)
		wantError(t, "malformed JSON", status, resp, http.StatusBadRequest, "invalid_argument")
		status, resp = b.Call(t, app, "GetLease", map[string]any{})
		wantError(t, "no lease_id", status, resp, http.StatusBadRequest, "invalid_argument")
		status, resp = b.Call(t, app, "ListLeases", map[string]any{"pageSize": 100000})
		wantError(t, "page_size too large", status, resp, http.StatusBadRequest, "invalid_argument")

		mine := issue(t, b, app, issueReq)
		status, resp = b.Call(t, app, "RenewLease", map[string]any{"leaseId": mine.LeaseID, "increment": "-5s"})
		wantError(t, "negative renew increment", status, resp, http.StatusBadRequest, "invalid_argument")

		// A body past the size limit is refused before it is parsed.
		status, resp = b.Call(t, app, "IssueCredential", map[string]any{"role": strings.Repeat("r", 128<<10)})
		if status < 400 || status >= 500 {
			t.Errorf("128 KiB request: HTTP %d %v, want a 4xx", status, resp)
		}

		_, stderr, code := b.CLI(t, app, "creds", "readonly", "--ttl", "500ms")
		if code != 1 || !strings.Contains(stderr, "invalid_argument") {
			t.Errorf("credbroker creds --ttl 500ms: exit %d, %q", code, stderr)
		}
		_, _, code = b.CLI(t, app, "creds")
		if code != 2 {
			t.Errorf("credbroker creds without a role: exit %d, want 2 (usage)", code)
		}
	})

	// No failed request left a user behind or a lease outside the holder's.
	var errs []error
	for _, l := range d.Store.Leases(t) {
		if l.State == "ACTIVE" && !d.Backend.RoleExists(t, l.Username) {
			errs = append(errs, errors.New("ACTIVE lease "+l.ID+" has no user"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
}

// tamper replaces the sub claim of a signed token, keeping its signature.
func tamper(t *testing.T, token, sub string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(claims), appSubject, sub, 1)
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(changed))
	return strings.Join(parts, ".")
}
