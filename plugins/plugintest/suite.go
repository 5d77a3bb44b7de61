package plugintest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
)

// Harness is what a backend's test gives [Run].
type Harness struct {
	// Driver is the backend's driver.
	Driver plugins.Driver
	// Connection is the value Driver.ParseConnection returned for a backend
	// the test can use.
	Connection any
	// Role is the value Driver.ParseRole returned for a role that can read
	// something (Session.CheckGrants proves what it allows).
	Role any
	// Login connects as the credential and returns a session that stays open;
	// it returns an error if the backend refuses the login.
	Login func(ctx context.Context, c plugins.Credential) (Session, error)
	// BackendExpiry, if set, returns the expiry the backend holds for
	// username, so Run can check that Create and Renew set it. Optional: not
	// every backend expires users.
	BackendExpiry func(ctx context.Context, username string) (time.Time, error)
}

// Session is an open connection made with an issued credential.
type Session interface {
	// Ping runs a trivial statement on the open session; it fails once the
	// session was ended.
	Ping(ctx context.Context) error
	// CheckGrants proves the session can do what the role allows and not more
	// (for example read but not write).
	CheckGrants(ctx context.Context) error
	// Close ends the session.
	Close() error
}

// Tuning of the suite.
const (
	// roleName is the role part of the usernames the suite generates.
	roleName = "conformance"
	// concurrentCreates is how many users ConcurrentCreatesNeverCollide makes
	// at once.
	concurrentCreates = 50
	// sessionGoneTimeout bounds how long an open session may outlive Revoke.
	sessionGoneTimeout = 15 * time.Second
	// cleanupTimeout bounds the revocations that clean up after the suite.
	cleanupTimeout = time.Minute
	// subtestTimeout bounds each subtest, so a plugin that hangs fails the
	// suite instead of stalling it.
	subtestTimeout = 2 * time.Minute
	// createTTL is how far ahead the suite's users expire.
	createTTL = 10 * time.Minute
)

// testContext returns a context that ends with the test or after
// subtestTimeout, whichever is first.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), subtestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// Run opens the backend and runs the conformance suite against it, as
// CamelCase subtests that build on each other:
//
//   - CreateAndLogin: Create returns the credential asked for, and it logs in.
//   - WrongPasswordFails: the same user with another password does not log in
//     (skipped where the test server trusts every login, unless
//     CREDBROKER_TEST_PASSWORD_AUTH=1 says it must not).
//   - GrantsAsRoleSays: the session can do what the role allows, not more.
//   - Renew: Renew succeeds (and moves the backend's expiry, with BackendExpiry).
//   - Revoke: Revoke succeeds.
//   - LoginFailsAfterRevoke: the credential no longer logs in and the session
//     opened before Revoke is gone.
//   - ListManagedHasUser, ListManagedDropsUser: ListManaged reports the user
//     while it exists and not after Revoke.
//   - RevokeAgainIsNil, RevokeUnknownIsNil: Revoke is idempotent.
//   - ConcurrentCreatesNeverCollide: 50 concurrent Creates all succeed with
//     distinct users, and all are revoked.
//   - ErrorsNeverContainPassword: provoked errors never quote the password.
//
// Every user the suite makes is revoked when it ends, even after a failure.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.Driver == nil || h.Login == nil {
		t.Fatal("plugintest.Run: the Harness needs a Driver and a Login")
	}
	p, err := plugins.Open(testContext(t), h.Driver, h.Connection)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s := &suite{h: h, p: p, limit: h.Driver.UsernameLimit()}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Cleanup(func() { s.cleanup(t) }) // before Close: cleanups run last-in first-out
	if err := p.Check(testContext(t)); err != nil {
		t.Fatalf("Check: %v", err)
	}

	t.Run("CreateAndLogin", s.createAndLogin)
	t.Run("WrongPasswordFails", s.wrongPasswordFails)
	t.Run("ListManagedHasUser", s.listManagedHasUser)
	t.Run("GrantsAsRoleSays", s.grantsAsRoleSays)
	t.Run("Renew", s.renew)
	t.Run("Revoke", s.revoke)
	t.Run("LoginFailsAfterRevoke", s.loginFailsAfterRevoke)
	t.Run("ListManagedDropsUser", s.listManagedDropsUser)
	t.Run("RevokeAgainIsNil", s.revokeAgainIsNil)
	t.Run("RevokeUnknownIsNil", s.revokeUnknownIsNil)
	t.Run("ConcurrentCreatesNeverCollide", s.concurrentCreatesNeverCollide)
	t.Run("ErrorsNeverContainPassword", s.errorsNeverContainPassword)
}

type suite struct {
	h     Harness
	p     plugins.Plugin
	limit int

	// The user of the sequential subtests, and its session.
	cred    *plugins.Credential
	session Session
	revoked bool

	mu      sync.Mutex
	created []string          // every username the suite asked for, for cleanup
	states  map[string][]byte // the State Create returned, by username
}

// create asks for a new user expiring after createTTL and records it for
// cleanup.
func (s *suite) create(ctx context.Context, username string, password secret.Value, role any) (plugins.Credential, error) {
	s.mu.Lock()
	s.created = append(s.created, username)
	s.mu.Unlock()
	resp, err := s.p.Create(ctx, plugins.CreateRequest{
		Username:  username,
		Password:  password,
		ExpiresAt: time.Now().Add(createTTL).Truncate(time.Second),
		Role:      roleName,
		Spec:      role,
	})
	if err != nil {
		return plugins.Credential{}, err
	}
	s.mu.Lock()
	if s.states == nil {
		s.states = map[string][]byte{}
	}
	s.states[username] = resp.State
	s.mu.Unlock()
	return resp.Credential, nil
}

// state returns the State Create returned for username.
func (s *suite) state(username string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.states[username]
}

// revokeUser revokes username as the broker would for a lease of the
// harness's role, with the State Create returned. Without spec, it revokes
// as for a lease whose role was removed from the config: from State alone.
func (s *suite) revokeUser(ctx context.Context, username string, spec bool) error {
	req := plugins.RevokeRequest{Username: username, Role: roleName, State: s.state(username)}
	if spec {
		req.Spec = s.h.Role
	}
	_, err := s.p.Revoke(ctx, req)
	return err
}

// cleanup closes the session and revokes every user the suite asked for.
func (s *suite) cleanup(t *testing.T) {
	if s.session != nil {
		_ = s.session.Close() // already ended by Revoke, normally
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	s.mu.Lock()
	created := slices.Clone(s.created)
	s.mu.Unlock()
	for _, u := range created {
		if err := s.revokeUser(ctx, u, true); err != nil {
			t.Errorf("cleanup: Revoke %s: %v", u, err)
		}
	}
}

// PasswordAuthEnv, set to 1, says the test backends check passwords, so a
// wrong password that logs in fails the suite instead of skipping.
const PasswordAuthEnv = "CREDBROKER_TEST_PASSWORD_AUTH"

func (s *suite) wrongPasswordFails(t *testing.T) {
	s.needUser(t)
	ctx := testContext(t)
	right, wrong := s.cred.Password.Reveal(), plugins.NewPassword()
	swap := func(v secret.Value) secret.Value {
		return secret.New(strings.ReplaceAll(v.Reveal(), right, wrong.Reveal()))
	}
	bad := *s.cred
	bad.Password, bad.URI = wrong, swap(s.cred.URI)
	bad.Env = make(map[string]secret.Value, len(s.cred.Env))
	for k, v := range s.cred.Env {
		bad.Env[k] = swap(v)
	}
	session, err := s.h.Login(ctx, bad)
	if err == nil {
		_ = session.Close()
		if os.Getenv(PasswordAuthEnv) == "1" {
			t.Fatal("a wrong password logged in")
		}
		t.Skipf("the test server accepted a wrong password: it trusts every login, so passwords are not proven here (set %s=1 where it checks them)", PasswordAuthEnv)
	}
	if strings.Contains(err.Error(), right) || strings.Contains(err.Error(), wrong.Reveal()) {
		t.Errorf("login error quotes a password: %v", err)
	}
}

// managed reports whether ListManaged lists username.
func (s *suite) managed(t *testing.T, username string) bool {
	t.Helper()
	users, err := s.p.ListManaged(testContext(t))
	if err != nil {
		t.Fatalf("ListManaged: %v", err)
	}
	for _, u := range users {
		if u.Username == username {
			return true
		}
	}
	return false
}

func (s *suite) listManagedHasUser(t *testing.T) {
	s.needUser(t)
	if !s.managed(t, s.cred.Username) {
		t.Errorf("ListManaged does not report %s, which Create made", s.cred.Username)
	}
}

func (s *suite) listManagedDropsUser(t *testing.T) {
	s.needUser(t)
	if !s.revoked {
		t.Skip("needs Revoke, which failed")
	}
	if s.managed(t, s.cred.Username) {
		t.Errorf("ListManaged still reports %s after Revoke", s.cred.Username)
	}
}

func (s *suite) needUser(t *testing.T) {
	t.Helper()
	if s.cred == nil {
		t.Skip("needs the user of CreateAndLogin, which failed")
	}
}

func (s *suite) createAndLogin(t *testing.T) {
	ctx := testContext(t)
	username := plugins.NewUsername(roleName, s.limit)
	password := plugins.NewPassword()
	asked := time.Now().Add(createTTL)
	cred, err := s.create(ctx, username, password, s.h.Role)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if cred.Username != username {
		t.Errorf("Credential.Username = %q, want %q", cred.Username, username)
	}
	if cred.Password.Reveal() != password.Reveal() {
		t.Error("Credential.Password is not the password asked for")
	}
	if cred.URI.IsZero() {
		t.Error("Credential.URI is empty")
	}
	for k, v := range cred.Fields {
		if strings.Contains(v, password.Reveal()) {
			t.Errorf("Credential.Fields[%q] holds the password: Fields are not secret", k)
		}
	}
	s.cred = &cred
	if s.h.BackendExpiry != nil {
		got, err := s.h.BackendExpiry(ctx, username)
		if err != nil {
			t.Errorf("BackendExpiry after Create: %v", err)
		} else if d := got.Sub(asked).Abs(); d > 5*time.Second {
			t.Errorf("the backend's expiry is %v after Create, want about %v", got, asked)
		}
	}

	session, err := s.h.Login(ctx, cred)
	if err != nil {
		t.Fatalf("Login with the new credential: %v", err)
	}
	s.session = session
	if err := session.Ping(ctx); err != nil {
		t.Fatalf("Ping on the new session: %v", err)
	}
}

func (s *suite) grantsAsRoleSays(t *testing.T) {
	s.needUser(t)
	if s.session == nil {
		t.Skip("needs the session of CreateAndLogin, which failed")
	}
	if err := s.session.CheckGrants(testContext(t)); err != nil {
		t.Errorf("CheckGrants: %v", err)
	}
}

func (s *suite) renew(t *testing.T) {
	s.needUser(t)
	ctx := testContext(t)
	var before time.Time
	if s.h.BackendExpiry != nil {
		var err error
		if before, err = s.h.BackendExpiry(ctx, s.cred.Username); err != nil {
			t.Fatalf("BackendExpiry before Renew: %v", err)
		}
	}
	want := time.Now().Add(30 * time.Minute).Truncate(time.Second)
	if _, err := s.p.Renew(ctx, plugins.RenewRequest{Username: s.cred.Username, Role: roleName, Spec: s.h.Role, State: s.state(s.cred.Username), ExpiresAt: want}); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if s.h.BackendExpiry == nil {
		return
	}
	got, err := s.h.BackendExpiry(ctx, s.cred.Username)
	if err != nil {
		t.Fatalf("BackendExpiry after Renew: %v", err)
	}
	if !got.After(before) {
		t.Errorf("the backend's expiry did not move: %v before Renew, %v after", before, got)
	}
	if d := got.Sub(want).Abs(); d > time.Second {
		t.Errorf("the backend's expiry is %v after Renew, want %v", got, want)
	}
}

func (s *suite) revoke(t *testing.T) {
	s.needUser(t)
	// As for a lease whose role was removed from the config: State is all
	// the plugin gets, and it must be enough.
	if err := s.revokeUser(testContext(t), s.cred.Username, false); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	s.revoked = true
}

func (s *suite) loginFailsAfterRevoke(t *testing.T) {
	s.needUser(t)
	if !s.revoked {
		t.Skip("needs Revoke, which failed")
	}
	ctx := testContext(t)
	if session, err := s.h.Login(ctx, *s.cred); err == nil {
		_ = session.Close()
		t.Error("Login with a revoked credential succeeded")
	}
	if s.session == nil {
		return
	}
	if err := waitGone(ctx, s.session); err != nil {
		t.Error(err)
	}
}

func (s *suite) revokeAgainIsNil(t *testing.T) {
	s.needUser(t)
	if !s.revoked {
		t.Skip("needs Revoke, which failed")
	}
	if err := s.revokeUser(testContext(t), s.cred.Username, true); err != nil {
		t.Errorf("Revoke of a revoked user = %v, want nil", err)
	}
}

func (s *suite) revokeUnknownIsNil(t *testing.T) {
	if _, err := s.p.Revoke(testContext(t), plugins.RevokeRequest{Username: plugins.NewUsername(roleName, s.limit)}); err != nil {
		t.Errorf("Revoke of a user that never existed = %v, want nil", err)
	}
}

func (s *suite) concurrentCreatesNeverCollide(t *testing.T) {
	ctx := testContext(t)
	type result struct {
		username string
		cred     plugins.Credential
		err      error
	}
	results := make([]result, concurrentCreates)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			username := plugins.NewUsername(roleName, s.limit)
			cred, err := s.create(ctx, username, plugins.NewPassword(), s.h.Role)
			results[i] = result{username: username, cred: cred, err: err}
		})
	}
	wg.Wait()

	seen := make(map[string]bool)
	var made []result
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Errorf("Create %d of %d (%s): %v", i+1, concurrentCreates, r.username, r.err)
		case seen[r.cred.Username]:
			t.Errorf("Create %d of %d: username %s was issued twice", i+1, concurrentCreates, r.cred.Username)
		default:
			seen[r.cred.Username] = true
			made = append(made, r)
		}
	}
	// A few of them log in, to show they are real users.
	for _, r := range made[:min(3, len(made))] {
		session, err := s.h.Login(ctx, r.cred)
		if err != nil {
			t.Errorf("Login as %s: %v", r.username, err)
			continue
		}
		_ = session.Close()
	}

	errs := make([]error, len(results))
	for i, r := range results {
		wg.Go(func() { errs[i] = s.revokeUser(ctx, r.username, true) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Revoke %s: %v", results[i].username, err)
		}
	}
}

func (s *suite) errorsNeverContainPassword(t *testing.T) {
	ctx := testContext(t)
	type provoked struct {
		what      string
		err       error
		passwords []secret.Value
	}
	var all []provoked

	// The same username twice.
	username := plugins.NewUsername(roleName, s.limit)
	first, second := plugins.NewPassword(), plugins.NewPassword()
	if _, err := s.create(ctx, username, first, s.h.Role); err != nil {
		t.Fatalf("Create: %v", err)
	}
	_, err := s.create(ctx, username, second, s.h.Role)
	all = append(all, provoked{"Create of an existing username", err, []secret.Value{first, second}})

	// A username longer than the driver allows.
	long := username + strings.Repeat("x", max(0, s.limit-len(username)+1))
	pw := plugins.NewPassword()
	_, err = s.create(ctx, long, pw, s.h.Role)
	all = append(all, provoked{"Create of a username over the limit", err, []secret.Value{pw}})

	// A role the driver did not parse.
	pw = plugins.NewPassword()
	_, err = s.create(ctx, plugins.NewUsername(roleName, s.limit), pw, struct{ Bogus string }{"x"})
	all = append(all, provoked{"Create with a role the driver did not parse", err, []secret.Value{pw}})

	// A canceled context.
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	pw = plugins.NewPassword()
	_, err = s.create(canceled, plugins.NewUsername(roleName, s.limit), pw, s.h.Role)
	all = append(all, provoked{"Create with a canceled context", err, []secret.Value{pw}})

	failures := 0
	for _, p := range all {
		if p.err == nil {
			t.Logf("%s did not fail; nothing to check", p.what)
			continue
		}
		failures++
		for _, pw := range p.passwords {
			for _, text := range []string{p.err.Error(), fmt.Sprintf("%+v", p.err)} {
				if strings.Contains(text, pw.Reveal()) {
					t.Errorf("%s: the error quotes the password: %s", p.what, plugins.SanitizeString(text, pw))
					break
				}
			}
		}
	}
	if failures == 0 {
		t.Error("no provoked error happened: the suite checked nothing")
	}
}

// waitGone polls the session until Ping fails, for at most
// sessionGoneTimeout. A Ping that fails only because it timed out proves
// nothing (and leaves the session closed by the client), so it is an error.
func waitGone(ctx context.Context, session Session) error {
	deadline := time.Now().Add(sessionGoneTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
		err := session.Ping(pingCtx)
		timedOut := pingCtx.Err() != nil
		cancel()
		switch {
		case timedOut:
			return fmt.Errorf("the revoked session's Ping hung for %v: cannot tell whether Revoke ended it", pingTimeout)
		case err != nil:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("the session opened before Revoke still answers %v after it", sessionGoneTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
