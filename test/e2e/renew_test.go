package e2e_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRenewMovesValidUntil(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "1m", "3m", "")
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)

	cred := issue(t, b, token, map[string]any{"role": "readonly", "ttl": "30s"})
	if got := cred.ExpiresAt.Sub(cred.MaxExpiresAt); got > -2*time.Minute-29*time.Second || got < -2*time.Minute-31*time.Second {
		t.Errorf("issued with ttl 30s on a role with max_ttl 3m: expires_at - max_expires_at = %s, want about -2m30s", got)
	}
	checkValidUntil(t, d.Backend.ValidUntil(t, cred.Username), cred.ExpiresAt, "after issue")

	// renew posts RenewLease and returns the new expiry and ttl_clamped.
	renew := func(increment string) (time.Time, bool) {
		t.Helper()
		req := map[string]any{"leaseId": cred.LeaseID}
		if increment != "" {
			req["increment"] = increment
		}
		status, resp := b.Call(t, token, "RenewLease", req)
		if status != http.StatusOK {
			t.Fatalf("RenewLease %v: HTTP %d %v", req, status, resp)
		}
		if m := timeOf(t, resp, "lease", "maxExpiresAt"); !m.Equal(cred.MaxExpiresAt) {
			t.Errorf("renew changed max_expires_at from %s to %s", cred.MaxExpiresAt, m)
		}
		clamped, _ := resp["ttlClamped"].(bool)
		return timeOf(t, resp, "lease", "expiresAt"), clamped
	}

	before := time.Now()
	exp, clamped := renew("120s")
	if !exp.After(cred.ExpiresAt) || clamped {
		t.Errorf("renew by 2m: expires_at %s (was %s), ttl_clamped %v; want later and not clamped", exp, cred.ExpiresAt, clamped)
	}
	if lo, hi := before.Add(2*time.Minute-time.Second), time.Now().Add(2*time.Minute+time.Second); exp.Before(lo) || exp.After(hi) {
		t.Errorf("renew by 2m: expires_at %s, want now+2m", exp)
	}
	vu := d.Backend.ValidUntil(t, cred.Username)
	checkValidUntil(t, vu, exp, "after renew by 2m")

	// An increment past max_ttl is clamped to max_expires_at, and stays
	// there however often it is asked for.
	for i, inc := range []string{"600s", "86400s"} {
		exp, clamped := renew(inc)
		if !exp.Equal(cred.MaxExpiresAt) || !clamped {
			t.Errorf("renew #%d by %q: expires_at %s ttl_clamped %v, want max_expires_at %s and clamped", i, inc, exp, clamped, cred.MaxExpiresAt)
		}
		checkValidUntil(t, d.Backend.ValidUntil(t, cred.Username), cred.MaxExpiresAt, "after a clamped renew")
	}

	// The CLI does the same, and says so.
	stdout, stderr, code := b.CLI(t, token, "lease", "renew", cred.LeaseID, "--increment", "1h")
	if code != 0 {
		t.Fatalf("credbroker lease renew: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "max expiry") {
		t.Errorf("credbroker lease renew past max: no note on stderr: %q", stderr)
	}
	var out struct {
		Lease struct {
			ExpiresAt time.Time `json:"expiresAt"`
		} `json:"lease"`
		TTLClamped bool `json:"ttlClamped"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("credbroker lease renew printed no JSON: %v\n%s", err, stdout)
	}
	if !out.Lease.ExpiresAt.Equal(cred.MaxExpiresAt) || !out.TTLClamped {
		t.Errorf("credbroker lease renew: %+v, want expires_at %s and clamped", out, cred.MaxExpiresAt)
	}

	// The lease store agrees with what the API said.
	for _, l := range d.Store.Leases(t) {
		if l.ID == cred.LeaseID && (!l.ExpiresAt.Equal(cred.MaxExpiresAt) || l.ExpiresAt.After(l.MaxExpiresAt)) {
			t.Errorf("store: expires_at %s, max_expires_at %s", l.ExpiresAt, l.MaxExpiresAt)
		}
	}
	if n := d.Store.EventCount(t, "renewed"); n != 4 {
		t.Errorf("store: %d renewed events, want 4", n)
	}
}

// TestRenewNeverShortensLease renews a lease with an increment shorter than
// the time it has left. DESIGN.md §5 says renew moves expires_at forward: it
// must not bring the expiry (and VALID UNTIL) closer.
func TestRenewNeverShortensLease(t *testing.T) {
	t.Parallel()
	d, b := setup(t, "1m", "10m", "")
	token := d.Issuer.Token(t, appSubject, nil, time.Hour)
	cred := issue(t, b, token, map[string]any{"role": "readonly", "ttl": "300s"})

	for _, inc := range []string{"60s", ""} { // "": the role's default_ttl, 1m
		status, resp := b.Call(t, token, "RenewLease", map[string]any{"leaseId": cred.LeaseID, "increment": inc})
		if inc == "" {
			status, resp = b.Call(t, token, "RenewLease", map[string]any{"leaseId": cred.LeaseID})
		}
		if status != http.StatusOK {
			t.Fatalf("RenewLease by %q: HTTP %d %v", inc, status, resp)
		}
		if exp := timeOf(t, resp, "lease", "expiresAt"); exp.Before(cred.ExpiresAt) {
			t.Errorf("RenewLease by %q moved expires_at back by %s, from %s to %s (rolvaliduntil %s)", inc,
				cred.ExpiresAt.Sub(exp).Round(time.Second), cred.ExpiresAt, exp, d.Backend.ValidUntil(t, cred.Username))
		}
	}
}

// checkValidUntil compares pg_roles.rolvaliduntil with a lease's expires_at,
// at PostgreSQL's microsecond precision.
func checkValidUntil(t *testing.T, validUntil, expiresAt time.Time, when string) {
	t.Helper()
	if !validUntil.Equal(expiresAt.Truncate(time.Microsecond)) {
		t.Errorf("%s: rolvaliduntil %s, lease expires_at %s: they differ by %s",
			when, validUntil.UTC().Format(time.RFC3339Nano), expiresAt.UTC().Format(time.RFC3339Nano), validUntil.Sub(expiresAt))
	}
}
