package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/postgres"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/test/harness"
)

// The game day of root rotation (issue 11): two brokers on one store, a
// steady issue-and-revoke load on both, rotate-root on each backend in turn
// through the CLI, and a kill -9 of one broker in the middle of a rotation.
// Afterwards: zero failed issues once a rotation completed, zero lockouts
// (both brokers, the killed one restarted, still issue), every lease
// revocable and its user gone.

// gameDayBackend is a backend kind whose admin password the broker can
// rotate: what the game day needs of it. A backend kind joins the game day
// with one line in gameDayBackends once its rotation exists.
type gameDayBackend struct {
	name string
	// new makes the backend of one test: an admin of the test's own that
	// proves a password, and a role issued on it.
	new func(t *testing.T) *gameDayTarget
}

// gameDayTarget is one test's backend.
type gameDayTarget struct {
	// backendYAML is the backends: list item of a backend called gameDayBackendName.
	backendYAML string
	// roleYAML is the body of a role on it (the plugin's section).
	roleYAML string
	// env is what backendYAML's references need; password is the admin's
	// password as the config has it.
	env      []string
	password string
	// userExists reports whether an issued user still exists.
	userExists func(t *testing.T, username string) bool
	// stall makes the backend's next admin password change wait until
	// release is called, and waiting reports how many password changes
	// wait on it now: the way to catch a broker in the middle of a
	// rotation without a hook in the binary.
	stall func(t *testing.T) (waiting func() int, release func())
	// adminLogin logs in to the backend as the admin with password.
	adminLogin func(ctx context.Context, password string) error
	// restart, for a backend server the test runs itself, kills it and
	// starts it again: what it keeps across a crash must be what the
	// store says. nil for the shared servers.
	restart func(t *testing.T)
}

// gameDayBackends are the backend kinds that can rotate root: each joins
// with one line.
var gameDayBackends = []gameDayBackend{
	{name: "postgres", new: newGameDayPostgres},
	{name: "mysql", new: newGameDayMySQL},       // through a StallProxy: gameday_mysql_test.go
	{name: "rabbitmq", new: newGameDayRabbitMQ}, // through a StallProxy: gameday_rabbitmq_test.go
	{name: "redis", new: newGameDayRedis},       // its own redis-server with an aclfile: gameday_redis_test.go
}

const (
	gameDayBackendName = "gd-backend"
	gameDayAdmin       = "ops@example.com"
)

// gameDayDSNBackend is the backends: item of a plugin whose admin is in a
// DSN, taken from $CB_GD_ADMIN_DSN.
func gameDayDSNBackend(plugin string) string {
	return fmt.Sprintf(`  - name: %s
    plugin: %s
    owner: e2e
    environment: test
    connection:
      dsn: env:CB_GD_ADMIN_DSN
      max_conns: 8
`, gameDayBackendName, plugin)
}

// newGameDayPostgres makes a backend database whose admin is a fresh role
// with LOGIN CREATEROLE and a SCRAM password (only postgres is trusted over
// TCP), dropped when the test ends.
func newGameDayPostgres(t *testing.T) *gameDayTarget {
	be := harness.NewBackend(t)
	role := harness.RandomName("cbtest_gdadmin_")
	password := plugins.NewPassword().Reveal()
	be.Exec(t, fmt.Sprintf("CREATE ROLE %s LOGIN CREATEROLE PASSWORD '%s'; GRANT %s TO %[1]s WITH ADMIN OPTION",
		pgx.Identifier{role}.Sanitize(), postgres.SCRAMVerifier(password), pgx.Identifier{be.ReadGroup}.Sanitize()))
	// Runs before the backend's own clean-up (the database and the read
	// group with its members): the issued users are revoked by then.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, be.URL)
		if err != nil {
			t.Errorf("drop %s: %v", role, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Errorf("drop %s: %v", role, err)
		}
	})
	u, err := url.Parse(be.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	return &gameDayTarget{
		backendYAML: gameDayDSNBackend("postgres"),
		roleYAML:    fmt.Sprintf("postgres: {member_of: [%s]}", be.ReadGroup),
		env:         []string{"CB_GD_ADMIN_DSN=" + u.String()},
		password:    password,
		userExists:  func(t *testing.T, name string) bool { return be.RoleExists(t, name) },
		adminLogin: func(ctx context.Context, password string) error {
			u := *u
			u.User = url.UserPassword(role, password)
			conn, err := connectPG(ctx, u.String())
			if err == nil {
				conn.Close(ctx)
			}
			return err
		},
		stall: func(t *testing.T) (func() int, func()) {
			// An open transaction that altered the admin role holds its
			// pg_authid row: the admin's ALTER ROLE … PASSWORD waits for it.
			ctx := context.WithoutCancel(t.Context())
			conn, err := pgx.Connect(ctx, be.URL)
			if err != nil {
				t.Fatal(err)
			}
			tx, err := conn.Begin(ctx)
			if err == nil {
				_, err = tx.Exec(ctx, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" CONNECTION LIMIT -1")
			}
			if err != nil {
				conn.Close(ctx)
				t.Fatalf("hold the admin role: %v", err)
			}
			var once sync.Once
			release := func() {
				once.Do(func() {
					_ = tx.Rollback(ctx)
					conn.Close(ctx)
				})
			}
			t.Cleanup(release)
			// Asked on a connection of its own: within the holder's
			// transaction pg_stat_activity stays the snapshot it first read.
			waiting := func() int {
				var n int
				pgQuery(t, be.URL, `SELECT count(*) FROM pg_stat_activity
					WHERE usename = $1 AND wait_event_type = 'Lock' AND starts_with(query, 'ALTER ROLE')`, []any{role}, &n)
				return n
			}
			return waiting, release
		},
	}
}

func TestGameDayRootRotation(t *testing.T) {
	for _, kind := range gameDayBackends {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			gameDay(t, kind.new(t))
		})
	}
}

// gdFailure is a failed call of the load.
type gdFailure struct {
	at, end time.Time // when the call started and when it failed
	broker  string
	op      string
	err     error
}

// gdLoad issues and revokes on the brokers until stopped, recording every
// credential it got and every failure with its time. A broker is loaded
// only while it is up: a broker the test killed refusing connections is
// no failure of the rotation.
type gdLoad struct {
	inflight atomic.Int64 // calls under way
	mu       sync.Mutex
	failures []gdFailure
	issued   map[string]string // lease id → username
	revoked  map[string]bool
	n        atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup
}

// fail records a call that started at and failed now.
func (l *gdLoad) fail(at time.Time, broker, op string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, gdFailure{at, time.Now(), broker, op, err})
}

func (l *gdLoad) run(name string, b *harness.Broker, up *atomic.Bool, app, admin string) {
	c, adm := b.Client(app), b.Client(admin)
	for w := range 2 {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if !up.Load() {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				l.inflight.Add(1)
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
				resp, err := c.IssueCredential(ctx, connect.NewRequest(&credbrokerv1.IssueCredentialRequest{Role: "gd-app"}))
				cancel()
				l.inflight.Add(-1)
				if err != nil {
					if up.Load() {
						l.fail(start, name, "issue", err)
					}
					continue
				}
				id, user := resp.Msg.GetLease().GetId(), resp.Msg.GetCredential().GetUsername()
				l.mu.Lock()
				l.issued[id] = user
				l.mu.Unlock()
				l.n.Add(1)
				if (i+w)%2 == 1 {
					time.Sleep(20 * time.Millisecond) // a steady load, not a flood
					continue                          // kept for the end
				}
				l.inflight.Add(1)
				start = time.Now()
				ctx, cancel = context.WithTimeout(context.Background(), 45*time.Second)
				_, err = adm.RevokeLease(ctx, connect.NewRequest(&credbrokerv1.RevokeLeaseRequest{LeaseId: id}))
				cancel()
				l.inflight.Add(-1)
				switch {
				case err == nil:
					l.mu.Lock()
					l.revoked[id] = true
					l.mu.Unlock()
				case up.Load():
					l.fail(start, name, "revoke", err)
				}
			}
		})
	}
}

// window is a span of time during which failures are allowed.
type window struct {
	what       string
	start, end time.Time
}

func gameDay(t *testing.T, be *gameDayTarget) {
	iss := harness.NewIssuer(t, "test")
	store := harness.NewStore(t)
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	kekFile := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(kekFile, kek, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`listen: %s
store:
  dsn: env:CB_TEST_STORE_DSN
  kek: file:%s
  max_conns: 10
issuers:
%sbackends:
%sroles:
  - name: gd-app
    backend: %s
    owner: e2e
    default_ttl: 10m
    max_ttl: 1h
    %s
policies:
  - {name: app, issuer: test, subject: %q, roles: [gd-app]}
  - {name: ops, issuer: test, subject: %q, admin: true}
limits: {issue_rate: 100000, issue_burst: 100000, request_rate: 100000, request_burst: 100000}
reaper: {interval: 500ms, pending_grace: 3s}
`, harness.ListenPlaceholder, kekFile, iss.YAML(), be.backendYAML, gameDayBackendName, be.roleYAML, appSubject, gameDayAdmin)
	env := append(store.StoreEnv(), be.env...)
	a := harness.StartBroker(t, cfg, env...)
	b := harness.StartBroker(t, cfg, env...)
	for _, br := range []*harness.Broker{a, b} {
		br.Track(be.password)
	}
	// Every admin password the test saw: at the end only the store's
	// current one may log in.
	seen := map[string]bool{be.password: true}
	track := func() string {
		t.Helper()
		cur, all := trackStoredPasswords(t, store.URL, kek, a, b)
		for _, pw := range all {
			seen[pw] = true
		}
		return cur
	}
	app := iss.Token(t, appSubject, nil, 2*time.Hour)
	admin := iss.Token(t, gameDayAdmin, nil, 2*time.Hour)

	load := &gdLoad{issued: map[string]string{}, revoked: map[string]bool{}, stop: make(chan struct{})}
	var aUp, bUp atomic.Bool
	aUp.Store(true)
	bUp.Store(true)
	load.run("A", a, &aUp, app, admin)
	load.run("B", b, &bUp, app, admin)
	stopLoad := sync.OnceFunc(func() { close(load.stop); load.wg.Wait() })
	t.Cleanup(stopLoad)
	loaded := func(more int64) {
		t.Helper()
		target := load.n.Load() + more
		eventually(t, 2*time.Minute, fmt.Sprintf("the load did not issue %d more credentials", more), func() bool { return load.n.Load() >= target })
	}
	loaded(10)

	var windows []window
	lastRotation := func(br *harness.Broker) time.Time {
		t.Helper()
		out, stderr, code := br.CLI(t, admin, "admin", "inventory", "-o", "json")
		if code != 0 {
			t.Fatalf("admin inventory: exit %d: %s", code, stderr)
		}
		var inv struct {
			Backends []struct {
				Name             string
				LastRootRotation time.Time
			}
		}
		if err := json.Unmarshal([]byte(out), &inv); err != nil {
			t.Fatalf("admin inventory -o json: %v\n%s", err, out)
		}
		for _, x := range inv.Backends {
			if x.Name == gameDayBackendName {
				return x.LastRootRotation
			}
		}
		t.Fatalf("admin inventory has no backend %s:\n%s", gameDayBackendName, out)
		return time.Time{}
	}

	// 1. rotate-root through the CLI on A, under load.
	before := lastRotation(a)
	start := time.Now()
	out, stderr, code := a.CLI(t, admin, "admin", "rotate-root", gameDayBackendName)
	if code != 0 {
		t.Fatalf("rotate-root on A: exit %d: %s%s", code, out, stderr)
	}
	// From here B's calls must not fail: one that meets a refused
	// password finds the new one in the store at once, before B's poll.
	windows = append(windows, window{"rotate-root on A", start, time.Now()})
	rotated := lastRotation(a)
	if !rotated.After(before) {
		t.Fatalf("after rotate-root the inventory's last_root_rotation is %v (before: %v)", rotated, before)
	}
	track()
	// B picks the new password up by polling the store.
	eventually(t, time.Minute, "B's inventory does not show A's rotation", func() bool { return lastRotation(b).Equal(rotated) })
	loaded(10)

	// 2. rotate-root on B, and kill -9 B while the backend has not yet
	// taken the new password: B recorded its candidate and its password
	// change waits on the backend. The dead broker's backend session goes
	// on waiting, and once the backend lets it go it may still set the
	// password: before A looked at the abandoned rotation (A must find the
	// backend took it and finish) or after (A saw the backend without it).
	// Either way no broker may be locked out.
	issueOn := func(name string, br *harness.Broker) {
		t.Helper()
		resp, err := br.Client(app).IssueCredential(t.Context(), connect.NewRequest(&credbrokerv1.IssueCredentialRequest{Role: "gd-app"}))
		if err != nil {
			t.Errorf("lockout: %s cannot issue: %v", name, err)
			return
		}
		load.mu.Lock()
		load.issued[resp.Msg.GetLease().GetId()] = resp.Msg.GetCredential().GetUsername()
		load.mu.Unlock()
	}
	for _, releaseFirst := range []bool{true, false} {
		what := map[bool]string{true: "backend released before A resolves it", false: "backend released once A acted on it"}[releaseFirst]
		rotated = lastRotation(a)
		waiting, release := be.stall(t)
		start = time.Now()
		cli := exec.Command(harness.Binary(t), "admin", "rotate-root", gameDayBackendName)
		cli.Env = append(os.Environ(), "CREDBROKER_ADDR="+b.Addr, "CREDBROKER_TOKEN_FILE=", "CREDBROKER_TOKEN="+admin)
		var cliOut bytes.Buffer
		cli.Stdout, cli.Stderr = &cliOut, &cliOut
		cliDone := make(chan error, 1)
		if err := cli.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { cliDone <- cli.Wait() }()
		eventually(t, time.Minute, "B's rotation does not reach the backend", func() bool {
			select {
			case err := <-cliDone:
				t.Fatalf("rotate-root on B returned (%v) while the backend was held: %s", err, cliOut.String())
			default:
			}
			return waiting() > 0
		})
		track() // B's candidate, recorded before it touched the backend
		// A backend the test can restart is restarted once A resolved the
		// rotation, with no issue or revoke in between (theirs would save
		// what the resolution left unsaved): it must keep what the store
		// says.
		crash := releaseFirst && be.restart != nil
		if crash {
			aUp.Store(false)
			eventually(t, time.Minute, "the load's calls do not end", func() bool { return load.inflight.Load() == 0 })
		}
		bUp.Store(false)
		b.Kill()
		if err := <-cliDone; err == nil {
			t.Errorf("rotate-root on B succeeded although B was killed in the middle of it")
		}
		resolved := func() bool {
			var n int
			pgQuery(t, store.URL, `SELECT count(*) FROM admin_secrets WHERE backend = $1 AND slot = 'candidate'`, []any{gameDayBackendName}, &n)
			return n == 0
		}
		if releaseFirst {
			release()
		} else {
			// A has acted on the abandoned rotation: resolved it, or
			// itself waits on the backend behind the dead broker's change.
			eventually(t, time.Minute, "A does not act on the rotation B abandoned", func() bool { return resolved() || waiting() > 1 })
			release()
		}
		eventually(t, time.Minute, "A does not resolve the rotation B abandoned", resolved)
		eventually(t, time.Minute, "a password change is still waiting", func() bool { return waiting() == 0 })
		finished := lastRotation(a).After(rotated)
		t.Logf("kill -9 of B in the middle of rotate-root, %s: A %s the rotation", what, map[bool]string{true: "finished", false: "rolled back"}[finished])
		if crash {
			be.restart(t)
			t.Logf("restarted the backend server after A resolved the rotation")
		}
		if err := be.adminLogin(t.Context(), track()); err != nil {
			t.Errorf("lockout: after A %s the rotation B abandoned, the store's admin password does not log in "+
				"(kill -9 of B in the middle of rotate-root, %s; backend restarted: %v): %v",
				map[bool]string{true: "finished", false: "rolled back"}[finished], what, crash, plugins.SanitizeString(err.Error()))
		}
		aUp.Store(true)
		loaded(10)
		// 3. B comes back: no lockout.
		b.Restart(t)
		bUp.Store(true)
		windows = append(windows, window{"kill -9 of B in the middle of rotate-root, " + what, start, time.Now()})
		issueOn("A", a)
		issueOn("B (restarted)", b)
		loaded(10)
	}

	// And a rotation after all this works, from the restarted broker.
	start = time.Now()
	if out, stderr, code := b.CLI(t, admin, "admin", "rotate-root", gameDayBackendName); code != 0 {
		t.Errorf("rotate-root on restarted B: exit %d: %s%s", code, out, stderr)
	}
	windows = append(windows, window{"rotate-root on restarted B", start, time.Now()})
	final := track()
	loaded(10)
	// A's pool sessions logged in long ago; a restart makes it log in anew
	// with what the store now holds.
	aUp.Store(false)
	a.Restart(t)
	aUp.Store(true)
	issueOn("A (restarted)", a)
	loaded(20)
	stopLoad()

	// Zero failed issues outside the rotations.
	inWindow := map[string]int{}
	outside := 0
	load.mu.Lock()
	for _, f := range load.failures {
		w := ""
		for _, x := range windows {
			// A call that overlapped a rotation may fail with it.
			if !f.end.Before(x.start) && !f.at.After(x.end) {
				w = x.what
			}
		}
		if w == "" {
			outside++
			t.Errorf("%s %s started at %s, overlapped no rotation, and failed: %v", f.op, f.broker, f.at.Format(time.RFC3339Nano), f.err)
			continue
		}
		if inWindow[w]++; inWindow[w] <= 3 {
			t.Logf("allowed: %s %s started during %q and failed: %v", f.op, f.broker, w, f.err)
		}
	}
	issued := make(map[string]string, len(load.issued))
	for id, u := range load.issued {
		if !load.revoked[id] {
			issued[id] = u
		}
	}
	total, revokedByLoad := len(load.issued), len(load.revoked)
	load.mu.Unlock()
	t.Logf("load: %d credentials issued, %d revoked under load; failures during the rotations: %v; after them: %d", total, revokedByLoad, inWindow, outside)

	// An issue the load gave up on as it stopped may still have finished
	// on the broker (an issue that reached the store is completed even if
	// its caller goes away): its lease is ACTIVE without the load knowing.
	// It is revoked like the others.
	load.mu.Lock()
	for _, l := range store.Leases(t) {
		if _, known := load.issued[l.ID]; !known && l.State == "ACTIVE" {
			issued[l.ID] = l.Username
		}
	}
	load.mu.Unlock()
	// Every lease issued is revocable, from either broker, and its user is gone.
	i := 0
	for id := range issued {
		br := []*harness.Broker{a, b}[i%2]
		i++
		if _, err := br.Client(admin).RevokeLease(t.Context(), connect.NewRequest(&credbrokerv1.RevokeLeaseRequest{LeaseId: id})); err != nil {
			t.Errorf("revoke %s: %v", id, err)
		}
	}
	// The issues a kill -9 cut short (PENDING, never answered) are the
	// reaper's, after its pending grace.
	eventually(t, time.Minute, "leases are left PENDING or REVOKING", func() bool {
		for _, l := range store.Leases(t) {
			if l.State == "PENDING" || l.State == "REVOKING" {
				return false
			}
		}
		return true
	})
	load.mu.Lock()
	defer load.mu.Unlock()
	for _, l := range store.Leases(t) {
		if _, ok := load.issued[l.ID]; ok && l.State != "REVOKED" {
			t.Errorf("lease %s (%s) is %s after revoking everything", l.ID, l.Username, l.State)
		}
		if be.userExists(t, l.Username) {
			t.Errorf("lease %s is %s but its user %s still exists", l.ID, l.State, l.Username)
		}
	}
	for _, br := range []*harness.Broker{a, b} {
		br.AssertNoSecrets(t)
	}
	// Only the broker knows a working admin password: the config's and
	// every earlier one, finished or rolled back, are refused.
	for pw := range seen {
		err := be.adminLogin(t.Context(), pw)
		switch {
		case pw == final && err != nil:
			t.Errorf("lockout: the store's current admin password does not log in: %v", plugins.SanitizeString(err.Error()))
		case pw != final && err == nil:
			t.Errorf("an admin password other than the store's current one still logs in (the config's: %v)", pw == be.password)
		}
	}
}

// pgQuery runs one query returning one row into dest.
func pgQuery(t *testing.T, dsn, sql string, args []any, dest ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// trackStoredPasswords adds every admin password the store holds for the
// backend (decrypted with the test's KEK) to the secrets the brokers' logs
// must not contain, and returns the current one and all of them.
func trackStoredPasswords(t *testing.T, storeURL string, kek []byte, brokers ...*harness.Broker) (current string, all []string) {
	t.Helper()
	kr, err := leases.NewKeyring(kek)
	if err != nil {
		t.Fatal(err)
	}
	st, err := leases.Open(t.Context(), leases.Config{DSN: storeURL, MaxConns: 2, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cur, cand, err := st.AdminSecrets(t.Context(), gameDayBackendName)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []*leases.AdminSecret{cur, cand} {
		if a == nil {
			continue
		}
		all = append(all, a.Value.Reveal())
		for _, b := range brokers {
			b.Track(a.Value.Reveal())
		}
	}
	if cur == nil {
		t.Fatalf("the store holds no current admin password of %s", gameDayBackendName)
	}
	return cur.Value.Reveal(), all
}

// TestRotateRootRefusedRollsBack: a rotation the plugin refuses before it
// changes anything (Redis's default user, whose password every client
// shares) is rolled back at once: rotate-root says why, no candidate is
// left for the replicas to retry every poll, a root_rotation_rolled_back
// event records it, and asking again gets the same answer.
func TestRotateRootRefusedRollsBack(t *testing.T) {
	t.Parallel()
	iss := harness.NewIssuer(t, "test")
	store := harness.NewStore(t)
	rd := harness.NewRedis(t)
	kekFile := filepath.Join(t.TempDir(), "kek")
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kekFile, kek, 0o600); err != nil {
		t.Fatal(err)
	}
	b := harness.StartBroker(t, fmt.Sprintf(`listen: %s
store:
  dsn: env:CB_TEST_STORE_DSN
  kek: file:%s
issuers:
%sbackends:
%spolicies:
  - {name: ops, issuer: test, subject: %q, admin: true}
`, harness.ListenPlaceholder, kekFile, iss.YAML(), rd.BackendYAML("cache"), gameDayAdmin), store.StoreEnv()...)
	admin := iss.Token(t, gameDayAdmin, nil, time.Hour)
	for i := range 2 {
		out, stderr, code := b.CLI(t, admin, "admin", "rotate-root", "cache")
		if code == 0 || !strings.Contains(stderr, "default user") {
			t.Fatalf("rotate-root of Redis's default user: exit %d, stdout %q, stderr %q; want a failure naming the default user", code, out, stderr)
		}
		var left int
		pgQuery(t, store.URL, `SELECT count(*) FROM admin_secrets WHERE backend = 'cache'`, nil, &left)
		if left != 0 {
			t.Fatalf("after a refused rotation the store holds %d admin secrets of cache; want none", left)
		}
		// Events reach lease_events through the background sealer.
		eventually(t, 30*time.Second, "no root_rotation_rolled_back event per refusal", func() bool {
			var n int
			pgQuery(t, store.URL, `SELECT count(*) FROM lease_events WHERE kind = 'root_rotation_rolled_back'`, nil, &n)
			return n == i+1
		})
	}
}
