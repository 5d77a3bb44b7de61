package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
)

// The Redis raw baseline is the least an operator would type for the same
// user, over a go-redis client with the plugin's options (pool of 8, 5s
// timeouts, 2 retries):
//
//	issue:  ACL SETUSER <name> reset on #<sha256 of the password> resetkeys resetchannels -@all <rules…>
//	revoke: ACL DELUSER <name>
//
// each followed by ACL SAVE when the server has an aclfile (known once, at
// the start, as an operator knows their server), so the user outlives a
// restart as the plugin's do. The password is hashed client-side, as the
// plugin hashes it, so it never reaches the server.
type rawRedis struct {
	c      *goredis.Client
	prefix string
	rules  []string
	save   bool // the server has an aclfile
}

// redisOptions are the plugin's admin client options (plugins/redis
// Plugin.options) for the server of opt.
func redisOptions(opt *goredis.Options) *goredis.Options {
	return &goredis.Options{
		Addr:                     opt.Addr,
		Username:                 opt.Username,
		Password:                 opt.Password,
		DialTimeout:              5 * time.Second,
		ReadTimeout:              5 * time.Second,
		WriteTimeout:             5 * time.Second,
		ContextTimeoutEnabled:    true,
		MaxRetries:               2,
		DialerRetries:            2,
		PoolSize:                 8,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

func (r *rawRedis) issue(ctx context.Context) (leaseRef, error) {
	username := r.prefix + randText(10)
	sum := sha256.Sum256([]byte(plugins.NewPassword().Reveal()))
	setUser := append([]string{"reset", "on", "#" + hex.EncodeToString(sum[:]), "resetkeys", "resetchannels", "-@all"}, r.rules...)
	if err := r.c.ACLSetUser(ctx, username, setUser...).Err(); err != nil {
		return leaseRef{}, fmt.Errorf("ACL SETUSER: %w", err)
	}
	return leaseRef{username: username}, r.persist(ctx)
}

func (r *rawRedis) revoke(ctx context.Context, l leaseRef) error {
	if err := r.c.ACLDelUser(ctx, l.username).Err(); err != nil {
		return fmt.Errorf("ACL DELUSER: %w", err)
	}
	return r.persist(ctx)
}

// persist runs ACL SAVE on a server with an aclfile.
func (r *rawRedis) persist(ctx context.Context) error {
	if !r.save {
		return nil
	}
	if err := r.c.Do(ctx, "acl", "save").Err(); err != nil {
		return fmt.Errorf("ACL SAVE: %w", err)
	}
	return nil
}

func (r *rawRedis) side() sideOps {
	return sideOps{issue: r.issue, revoke: r.revoke}
}

// redisURL returns the Redis URL the tests use ($CREDBROKER_TEST_REDIS_URL or
// the default) and its options.
func redisURL() (string, *goredis.Options, error) {
	u := plugintest.DefaultRedisURL
	if v := strings.TrimSpace(os.Getenv(plugintest.RedisURLEnv)); v != "" {
		u = v
	}
	opt, err := goredis.ParseURL(u)
	return u, opt, err
}

// redisUsers returns this run's users on the server (either side's) whose
// names start with prefix, userPrefix when "".
func redisUsers(ctx context.Context, c *goredis.Client, prefix ...string) ([]string, error) {
	all, err := c.ACLUsers(ctx).Result()
	if err != nil {
		return nil, err
	}
	p := userPrefix
	if len(prefix) > 0 {
		p = prefix[0]
	}
	var mine []string
	for _, u := range all {
		if strings.HasPrefix(u, p) {
			mine = append(mine, u)
		}
	}
	return mine, nil
}

// redisServer is the Redis server a scenario drives: an admin client, what
// a broker's connection section needs, and what the server is.
type redisServer struct {
	opt     *goredis.Options
	admin   *goredis.Client
	conn    string   // the backend's connection section
	env     []string // what conn's env: references name
	version string
	aclfile string // "" when the server has none
}

// openRedis connects to the tests' Redis (skipping scn, or failing it under
// CREDBROKER_REQUIRE_SERVICES=1, when it does not answer) and registers the
// deletion of every user of this run left on it when b ends, after the
// brokers registered later have stopped.
func openRedis(b *testing.B, rep *report, scn string) *redisServer {
	b.Helper()
	u, opt, err := redisURL()
	if err != nil {
		b.Fatalf("redis: parse %s: %v", plugintest.RedisURLEnv, plugins.Sanitize(err))
	}
	if opt.TLSConfig != nil {
		rep.svcNote(scn, "skipped: "+plugintest.RedisURLEnv+" asks for TLS; the bench drives a plaintext server only")
		b.Skip("redis: TLS in the URL")
	}
	// go-redis logs failed dials as plain text to stderr; the errors say it
	// all (the broker silences it too).
	goredis.SetLogger(&logging.VoidLogger{})
	needService(b, rep, scn, u, func(ctx context.Context) error {
		o := *opt
		o.MaxRetries = -1
		o.DialerRetries = 1
		c := goredis.NewClient(&o)
		defer c.Close()
		return c.Ping(ctx).Err()
	})
	rs := &redisServer{opt: opt, admin: goredis.NewClient(redisOptions(opt))}
	// Registered first, so it runs last, after the broker has stopped:
	// delete every user of this run that is left, on a fresh client.
	b.Cleanup(func() {
		c := goredis.NewClient(redisOptions(opt))
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
		defer cancel()
		left, err := redisUsers(ctx, c)
		if err != nil {
			b.Errorf("%s cleanup: ACL USERS: %v", scn, plugins.Sanitize(err))
			return
		}
		for _, name := range left {
			if err := c.ACLDelUser(ctx, name).Err(); err != nil {
				b.Errorf("%s cleanup: ACL DELUSER %s: %v", scn, name, plugins.Sanitize(err))
			}
		}
		if len(left) > 0 {
			b.Logf("%s cleanup: deleted %d users this run left behind", scn, len(left))
		}
	})
	b.Cleanup(func() { _ = rs.admin.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
	defer cancel()
	info, err := rs.admin.Info(ctx, "server").Result()
	if err != nil {
		b.Fatalf("redis: INFO: %v", plugins.Sanitize(err))
	}
	aclfile, err := rs.admin.ConfigGet(ctx, "aclfile").Result()
	if err != nil {
		b.Fatalf("redis: CONFIG GET aclfile: %v", plugins.Sanitize(err))
	}
	rs.aclfile = aclfile["aclfile"]
	rs.version = "?"
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			rs.version = v
		}
	}
	rs.conn = fmt.Sprintf("addr: %q", opt.Addr)
	if opt.Username != "" {
		rs.conn += fmt.Sprintf("\nusername: %q", opt.Username)
	}
	if opt.Password != "" {
		rs.conn += "\npassword: env:CB_BENCH_REDIS_PASSWORD"
		rs.env = append(rs.env, "CB_BENCH_REDIS_PASSWORD="+opt.Password)
	}
	return rs
}

// broker is the svcBroker of a role on this server with the key and channel
// rules of rules.
func (rs *redisServer) broker(role string, rules []string) svcBroker {
	quoted := make([]string, len(rules))
	for i, r := range rules {
		quoted[i] = fmt.Sprintf("%q", r)
	}
	return svcBroker{
		plugin:     "redis",
		role:       role,
		connection: rs.conn,
		section:    "rules: [" + strings.Join(quoted, ", ") + "]",
		env:        rs.env,
	}
}

// count returns how many users whose names start with prefix (userPrefix
// when "") exist on the server.
func (rs *redisServer) count(tb testing.TB, prefix string) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
	defer cancel()
	if prefix == "" {
		prefix = userPrefix
	}
	users, err := redisUsers(ctx, rs.admin, prefix)
	if err != nil {
		tb.Fatalf("redis: ACL USERS: %v", plugins.Sanitize(err))
	}
	return len(users)
}

// redisRules are the key and channel rules of this run's role short: its
// own patterns, read and write commands only.
func redisRules(short string) []string {
	pat := "cbbench:" + runID + ":" + short
	return []string{"~" + pat + ":rw:*", "%R~" + pat + ":ro:*", "&" + pat + ":*", "+@read", "+@write", "-@dangerous"}
}

func benchRedis(b *testing.B, rep *report) {
	const scn = "redis"
	defer noteEnd(b, rep, scn)
	rs := openRedis(b, rep, scn)
	save := "no aclfile, so neither side runs ACL SAVE"
	if rs.aclfile != "" {
		save = "aclfile " + rs.aclfile + ": both sides run ACL SAVE on every issue and revoke"
	}
	rules := redisRules("rd")
	h := startSvcBroker(b, rs.broker(svcRole("rd"), rules))
	raw := &rawRedis{c: rs.admin, prefix: svcRawPrefix(), rules: rules, save: rs.aclfile != ""}

	rep.svcInfo(scn, fmt.Sprintf("Redis %s at %s, %s; role rules %s", rs.version, rs.opt.Addr, save, strings.Join(rules, " ")))
	sides := []side{{"raw", raw.side()}, {sideProto, h.proto.side(h.role)}, {sideJSON, h.json.side(h.role)}}
	benchService(b, rep, scn, *flagRedisOps, sides, func(tb testing.TB) int { return rs.count(tb, "") })
}
