package e2e_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/secret"
	"github.com/credbroker/credbroker/test/harness"
)

// newGameDayRedis makes a redis-server of the test's own with an ACL file
// (the plugin rotates no admin whose password would live in memory only)
// and an ACL user of the test's own as the broker's admin. The brokers
// reach the server through a StallProxy, the way to hold the rotation's
// ACL SETUSER: Redis has no lock to hold it on. The test itself (logins,
// the users' existence) talks to the server directly.
func newGameDayRedis(t *testing.T) *gameDayTarget {
	srv := harness.StartRedisServer(t, harness.WithACLFile())
	admin := harness.RandomName("cbtest_gdadmin_")
	password := plugins.NewPassword().Reveal()
	// Given as its hash: the plaintext never reaches the server.
	setUser := append([]any{"acl", "setuser", admin, aclPasswordHash(password)}, "on", "~*", "&*", "+@all")
	for _, cmd := range [][]any{setUser, {"acl", "save"}} {
		if err := srv.Admin().Do(t.Context(), cmd...).Err(); err != nil {
			t.Fatalf("make the admin user: %v", plugins.SanitizeString(err.Error(), secret.New(password)))
		}
	}
	proxy := harness.NewStallProxy(t, srv.Addr)

	// At the end, once the brokers are stopped: a crash of redis-server
	// brings back what its ACL file holds and nothing else, so every
	// password the admin has must be in the file by then, the store's
	// current one (which the restarted brokers issued with) among them.
	t.Cleanup(func() {
		before := adminPasswordHashes(t, srv, admin)
		srv.Restart(t)
		after := adminPasswordHashes(t, srv, admin)
		t.Logf("redis-server restarted at the end: the admin had %d passwords, has %d", len(before), len(after))
		for _, h := range before {
			if !slices.Contains(after, h) {
				t.Errorf("lockout: a password of the admin %s was not in the ACL file: redis-server lost it when restarted", admin)
			}
		}
	})

	return &gameDayTarget{
		backendYAML: fmt.Sprintf(`  - name: %s
    plugin: redis
    owner: e2e
    environment: test
    connection:
      addr: %q
      username: %s
      password: env:CB_GD_REDIS_PASSWORD
`, gameDayBackendName, proxy.Addr, admin),
		roleYAML:   `redis: {rules: ["~gd:*", "+@read"]}`,
		env:        []string{"CB_GD_REDIS_PASSWORD=" + password},
		password:   password,
		userExists: func(t *testing.T, name string) bool { return srv.UserExists(t, name) },
		adminLogin: func(ctx context.Context, password string) error { return redisLogin(ctx, srv.Addr, admin, password) },
		restart:    func(t *testing.T) { srv.Restart(t) },
		stall: func(t *testing.T) (func() int, func()) {
			// The rotation's ACL SETUSER <admin> as go-redis writes it
			// (RESP): the admin's name is the argument right after SETUSER.
			// "setuser" and the name anywhere in the window would also hold
			// an issue's ACL SETUSER cb_… on a connection whose HELLO or
			// AUTH (which names the admin) is still in the window.
			marker := fmt.Sprintf("setuser\r\n$%d\r\n%s\r\n", len(admin), admin)
			return proxy.Stall(t, func(w []byte) bool { return harness.ContainsFold(w, marker) })
		},
	}
}

// aclPasswordHash is the ACL rule that gives a user password: "#" and its
// SHA-256 in hex, as Redis keeps it.
func aclPasswordHash(password string) string {
	sum := sha256.Sum256([]byte(password))
	return "#" + hex.EncodeToString(sum[:])
}

// redisLogin logs in at addr as user with password, on a connection of its
// own that is neither retried nor kept.
func redisLogin(ctx context.Context, addr, user, password string) error {
	c := goredis.NewClient(&goredis.Options{Addr: addr, Username: user, Password: password,
		DisableIdentity: true, MaxRetries: -1, PoolSize: 1, DialerRetries: 1, DialTimeout: 5 * time.Second,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer c.Close()
	return plugins.Sanitize(c.Ping(ctx).Err(), secret.New(password))
}

// adminPasswordHashes returns the SHA-256 (hex) of every password user has
// on the server now, from ACL LIST, whose lines are those of the ACL file.
func adminPasswordHashes(t *testing.T, srv *harness.RedisServer, user string) []string {
	t.Helper()
	// Also asked from a clean-up, when t.Context() is done.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lines, err := srv.Admin().ACLList(ctx).Result()
	if err != nil {
		t.Fatalf("ACL LIST: %v", err)
	}
	return userHashes(lines, user)
}

// userHashes picks out of ACL lines ("user <name> on #<hash> … ~* +@all")
// the password hashes of user.
func userHashes(lines []string, user string) []string {
	var hashes []string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "user" || f[1] != user {
			continue
		}
		for _, r := range f[2:] {
			if h, ok := strings.CutPrefix(r, "#"); ok {
				hashes = append(hashes, h)
			}
		}
	}
	return hashes
}
