package external_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/external"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/plugins/redis"
)

// redisRole may read and write ext:* keys and nothing dangerous.
const redisRole = `rules: ["~ext:*", "+@read", "+@write", "-@dangerous", "+ping"]`

// redisConnection is the connection section of the test's Redis server;
// a password goes into a file the program reads (it runs as the test's
// user), so the section holds a reference.
func redisConnection(t testing.TB) string {
	t.Helper()
	opt, err := goredis.ParseURL(plugintest.RedisURL(t))
	if err != nil {
		t.Fatalf("parse %s: %v", plugintest.RedisURLEnv, plugins.Sanitize(err))
	}
	lines := []string{"addr: " + opt.Addr}
	if opt.Username != "" {
		lines = append(lines, "username: "+opt.Username)
	}
	if opt.Password != "" {
		path := filepath.Join(t.TempDir(), "redis-password")
		if err := os.WriteFile(path, []byte(opt.Password), 0o600); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, "password: file:"+path)
	}
	if opt.TLSConfig != nil {
		lines = append(lines, "tls: {enabled: true}")
	}
	return strings.Join(lines, "\n") + "\n"
}

// redisBackend is the Redis backend as the test runs it: in process, or as
// the program test/plugins/redis.
type redisBackend struct {
	driver     plugins.Driver
	connection any
	role       any
}

func inProcessRedis(t testing.TB) redisBackend {
	t.Helper()
	d := redis.New()
	return parsedRedis(t, d)
}

// outOfProcessRedis is the Redis backend as a program, pinned by the
// SHA-256 of the binary the test built; its driver is closed when the test
// ends.
func outOfProcessRedis(t testing.TB, edit func(*external.Config)) (redisBackend, *external.Driver) {
	t.Helper()
	path, sum := program(t, "redis")
	cfg := external.Config{
		Name:       "redis-program",
		Command:    []string{path},
		SHA256:     sum,
		Logger:     slog.New(slog.DiscardHandler),
		RestartMin: 20 * time.Millisecond,
		RestartMax: 500 * time.Millisecond,
		SocketDir:  t.TempDir(),
	}
	if edit != nil {
		edit(&cfg)
	}
	d, err := external.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return parsedRedis(t, d), d
}

func parsedRedis(t testing.TB, d plugins.Driver) redisBackend {
	t.Helper()
	conn, err := d.ParseConnection(plugintest.Decoder(redisConnection(t)))
	if err != nil {
		t.Fatalf("ParseConnection: %v", err)
	}
	role, _, err := d.ParseRole(plugintest.Decoder(redisRole))
	if err != nil {
		t.Fatalf("ParseRole: %v", err)
	}
	return redisBackend{driver: d, connection: conn, role: role}
}

// TestConformance runs the whole conformance suite twice for the Redis
// backend, in process and as a separate program, to show the transport
// adds nothing.
func TestConformance(t *testing.T) {
	t.Run("InProcess", func(t *testing.T) {
		t.Parallel()
		b := inProcessRedis(t)
		plugintest.Run(t, plugintest.Harness{Driver: b.driver, Connection: b.connection, Role: b.role, Login: redisLogin})
	})
	t.Run("OutOfProcess", func(t *testing.T) {
		t.Parallel()
		b, _ := outOfProcessRedis(t, nil)
		plugintest.Run(t, plugintest.Harness{Driver: b.driver, Connection: b.connection, Role: b.role, Login: redisLogin})
	})
}

// TestRedisRevokeAfterRestart issues a user through the program, kills the
// program with SIGKILL, and shows the revoke answer unavailable while it is
// down and complete once it is back, with the lease's state: what the
// reaper does with a due revoke.
func TestRedisRevokeAfterRestart(t *testing.T) {
	b, d := outOfProcessRedis(t, func(c *external.Config) { c.RestartMin, c.RestartMax = 300*time.Millisecond, time.Second })
	raw, err := d.Open(t.Context(), b.connection)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	p := plugins.Sanitized(raw)
	ctx := t.Context()
	username := plugins.NewUsername("restart", d.UsernameLimit())
	created, err := p.Create(ctx, plugins.CreateRequest{Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Role: "r", Spec: b.role})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	revoke := plugins.RevokeRequest{Username: username, Role: "r", State: created.State}
	t.Cleanup(func() { _, _ = p.Revoke(context.Background(), revoke) })
	session, err := redisLogin(ctx, created.Credential)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	defer session.Close()

	killAndWaitDown(t, raw.(*external.Plugin))
	if _, err := p.Revoke(ctx, revoke); !errors.Is(err, plugins.ErrUnavailable) {
		t.Fatalf("Revoke while the program is down = %v, want ErrUnavailable", err)
	}
	if err := session.Ping(ctx); err != nil {
		t.Fatalf("the user's session ended while the program was down: %v", err)
	}
	waitFor(t, 10*time.Second, "the revoke to complete after the restart", func() bool {
		_, err := p.Revoke(ctx, revoke)
		return err == nil
	})
	if s, err := redisLogin(ctx, created.Credential); err == nil {
		_ = s.Close()
		t.Error("the revoked credential still logs in")
	}
	if err := session.Ping(ctx); err == nil {
		t.Error("the session opened before the revoke still answers")
	}
}

// redisSession is a login as an issued credential: one held connection.
type redisSession struct {
	client *goredis.Client
	conn   *goredis.Conn
}

func redisLogin(ctx context.Context, c plugins.Credential) (plugintest.Session, error) {
	opt, err := goredis.ParseURL(c.URI.Reveal())
	if err != nil {
		return nil, plugins.Sanitize(err, c.Password)
	}
	opt.MaxRetries = -1
	opt.PoolSize = 1
	opt.DialerRetries = 1
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	client := goredis.NewClient(opt)
	conn := client.Conn()
	if err := conn.Ping(ctx).Err(); err != nil {
		_ = conn.Close()
		_ = client.Close()
		return nil, plugins.Sanitize(err, c.Password)
	}
	return &redisSession{client: client, conn: conn}, nil
}

func (s *redisSession) Ping(ctx context.Context) error { return s.conn.Ping(ctx).Err() }

func (s *redisSession) Close() error { return errors.Join(s.conn.Close(), s.client.Close()) }

// CheckGrants proves the user of redisRole can write and read ext:* keys,
// and neither touch other keys nor run FLUSHALL or ACL SETUSER.
func (s *redisSession) CheckGrants(ctx context.Context) error {
	key := "ext:" + strings.ToLower(plugins.NewPassword().Reveal()[:12])
	if err := s.conn.Set(ctx, key, "v", time.Minute).Err(); err != nil {
		return fmt.Errorf("SET %s: %w", key, err)
	}
	defer s.conn.Del(context.WithoutCancel(ctx), key)
	if got, err := s.conn.Get(ctx, key).Result(); err != nil || got != "v" {
		return fmt.Errorf("GET %s = %q, %v; want the value set", key, got, err)
	}
	for what, args := range map[string][]any{
		"GET other:x": {"get", "other:x"},
		"FLUSHALL":    {"flushall"},
		"ACL SETUSER": {"acl", "setuser", "cb_escape", "on", "nopass", "allkeys", "+@all"},
	} {
		cmd := goredis.NewCmd(ctx, args...)
		_ = s.conn.Process(ctx, cmd)
		if !goredis.IsPermissionError(cmd.Err()) {
			return fmt.Errorf("%s = %v, want NOPERM", what, cmd.Err())
		}
	}
	return nil
}

// BenchmarkOverhead measures what running the Redis backend as a separate
// program adds to a call: Check (a PING on the admin connection) and Create
// (ACL SETUSER), in process and out of process, with their p50 and p99.
func BenchmarkOverhead(b *testing.B) {
	for _, call := range []string{"Check", "Create"} {
		for _, mode := range []string{"InProcess", "OutOfProcess"} {
			b.Run(call+"/"+mode, func(b *testing.B) {
				var rb redisBackend
				if mode == "InProcess" {
					rb = inProcessRedis(b)
				} else {
					rb, _ = outOfProcessRedis(b, nil)
				}
				p, err := plugins.Open(b.Context(), rb.driver, rb.connection)
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				ctx := b.Context()
				var made []plugins.RevokeRequest
				defer func() {
					for _, r := range made {
						_, _ = p.Revoke(context.Background(), r)
					}
				}()
				var took []time.Duration
				for b.Loop() {
					start := time.Now()
					switch call {
					case "Check":
						err = p.Check(ctx)
					case "Create":
						var resp plugins.CreateResponse
						username := plugins.NewUsername("bench", rb.driver.UsernameLimit())
						resp, err = p.Create(ctx, plugins.CreateRequest{Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Role: "r", Spec: rb.role})
						made = append(made, plugins.RevokeRequest{Username: username, Role: "r", State: resp.State})
					}
					took = append(took, time.Since(start))
					if err != nil {
						b.Fatal(err)
					}
				}
				slices.Sort(took)
				b.ReportMetric(float64(took[len(took)/2])/float64(time.Microsecond), "p50-µs")
				b.ReportMetric(float64(took[len(took)*99/100])/float64(time.Microsecond), "p99-µs")
			})
		}
	}
}
