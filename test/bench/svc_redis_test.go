package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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

// The Redis raw baseline sends, over a go-redis client with the plugin's
// options (pool of 8, 5s timeouts, 2 retries), the commands of
// plugins/redis Plugin.Create and Plugin.Revoke on a standalone server:
//
//	issue:  pipeline(ACL GETUSER <name>, CONFIG GET aclfile)
//	        ACL SETUSER <name> reset on #<sha256> resetkeys resetchannels -@all <rules…>
//	        [ACL SAVE, when the server has an aclfile]
//	revoke: pipeline(ACL DELUSER <name>, CONFIG GET aclfile)
//	        [ACL SAVE, when the server has an aclfile]
type rawRedis struct {
	c      *goredis.Client
	prefix string
	rules  []string
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

// redisPipelined is plugins/redis pipelined: a command's own error is left
// on the command.
func redisPipelined(ctx context.Context, c *goredis.Client, queue func(goredis.Pipeliner)) error {
	pipe := c.Pipeline()
	queue(pipe)
	cmds, err := pipe.Exec(ctx)
	if err == nil {
		return nil
	}
	for _, cmd := range cmds {
		if cmd.Err() != nil {
			return nil
		}
	}
	return err
}

func (r *rawRedis) issue(ctx context.Context) (leaseRef, error) {
	username := r.prefix + randText(10)
	password := plugins.NewPassword()
	var get *goredis.Cmd
	var cfg *goredis.MapStringStringCmd
	if err := redisPipelined(ctx, r.c, func(pipe goredis.Pipeliner) {
		get = pipe.Do(ctx, "acl", "getuser", username)
		cfg = pipe.ConfigGet(ctx, "aclfile")
	}); err != nil {
		return leaseRef{}, err
	}
	switch err := get.Err(); {
	case errors.Is(err, goredis.Nil):
	case err != nil:
		return leaseRef{}, fmt.Errorf("ACL GETUSER: %w", err)
	default:
		return leaseRef{}, fmt.Errorf("user %s exists", username)
	}
	if err := cfg.Err(); err != nil {
		return leaseRef{}, fmt.Errorf("CONFIG GET aclfile: %w", err)
	}
	sum := sha256.Sum256([]byte(password.Reveal()))
	setUser := append([]string{"reset", "on", "#" + hex.EncodeToString(sum[:]), "resetkeys", "resetchannels", "-@all"}, r.rules...)
	if err := r.c.ACLSetUser(ctx, username, setUser...).Err(); err != nil {
		return leaseRef{}, fmt.Errorf("ACL SETUSER: %w", err)
	}
	if cfg.Val()["aclfile"] != "" {
		if err := r.c.Do(ctx, "acl", "save").Err(); err != nil {
			return leaseRef{}, fmt.Errorf("ACL SAVE: %w", err)
		}
	}
	return leaseRef{username: username}, nil
}

func (r *rawRedis) revoke(ctx context.Context, l leaseRef) error {
	var del *goredis.IntCmd
	var cfg *goredis.MapStringStringCmd
	if err := redisPipelined(ctx, r.c, func(pipe goredis.Pipeliner) {
		del = pipe.ACLDelUser(ctx, l.username)
		cfg = pipe.ConfigGet(ctx, "aclfile")
	}); err != nil {
		return err
	}
	if err := del.Err(); err != nil {
		return fmt.Errorf("ACL DELUSER: %w", err)
	}
	if err := cfg.Err(); err != nil {
		return fmt.Errorf("CONFIG GET aclfile: %w", err)
	}
	if cfg.Val()["aclfile"] != "" {
		if err := r.c.Do(ctx, "acl", "save").Err(); err != nil {
			return fmt.Errorf("ACL SAVE: %w", err)
		}
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

// redisUsers returns this run's users on the server (either side's).
func redisUsers(ctx context.Context, c *goredis.Client) ([]string, error) {
	all, err := c.ACLUsers(ctx).Result()
	if err != nil {
		return nil, err
	}
	var mine []string
	for _, u := range all {
		if strings.HasPrefix(u, userPrefix) {
			mine = append(mine, u)
		}
	}
	return mine, nil
}

func benchRedis(b *testing.B, rep *report) {
	const scn = "redis"
	defer noteEnd(b, rep, scn)
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
	admin := goredis.NewClient(redisOptions(opt))
	// Registered first, so it runs last, after the broker has stopped:
	// delete every user of this run that is left, on a fresh client.
	b.Cleanup(func() {
		c := goredis.NewClient(redisOptions(opt))
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
		defer cancel()
		left, err := redisUsers(ctx, c)
		if err != nil {
			b.Errorf("redis cleanup: ACL USERS: %v", plugins.Sanitize(err))
			return
		}
		for _, name := range left {
			if err := c.ACLDelUser(ctx, name).Err(); err != nil {
				b.Errorf("redis cleanup: ACL DELUSER %s: %v", name, plugins.Sanitize(err))
			}
		}
		if len(left) > 0 {
			b.Logf("redis cleanup: deleted %d users this run left behind", len(left))
		}
	})
	b.Cleanup(func() { _ = admin.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
	defer cancel()
	info, err := admin.Info(ctx, "server").Result()
	if err != nil {
		b.Fatalf("redis: INFO: %v", plugins.Sanitize(err))
	}
	aclfile, err := admin.ConfigGet(ctx, "aclfile").Result()
	if err != nil {
		b.Fatalf("redis: CONFIG GET aclfile: %v", plugins.Sanitize(err))
	}
	version := "?"
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			version = v
		}
	}
	save := "no aclfile, so neither side runs ACL SAVE"
	if aclfile["aclfile"] != "" {
		save = "aclfile " + aclfile["aclfile"] + ": both sides run ACL SAVE on every issue and revoke"
	}

	// Key and channel patterns of this run alone.
	pat := "cbbench:" + runID
	rules := []string{"~" + pat + ":rw:*", "%R~" + pat + ":ro:*", "&" + pat + ":*", "+@read", "+@write", "-@dangerous"}
	quoted := make([]string, len(rules))
	for i, r := range rules {
		quoted[i] = fmt.Sprintf("%q", r)
	}
	conn := fmt.Sprintf("addr: %q", opt.Addr)
	var envs []string
	if opt.Username != "" {
		conn += fmt.Sprintf("\nusername: %q", opt.Username)
	}
	if opt.Password != "" {
		conn += "\npassword: env:CB_BENCH_REDIS_PASSWORD"
		envs = append(envs, "CB_BENCH_REDIS_PASSWORD="+opt.Password)
	}
	broker := startSvcBroker(b, svcBroker{
		plugin:     "redis",
		role:       svcRole("rd"),
		connection: conn,
		section:    "rules: [" + strings.Join(quoted, ", ") + "]",
		env:        envs,
	})
	raw := &rawRedis{c: admin, prefix: svcRawPrefix(), rules: rules}

	rep.svcInfo(scn, fmt.Sprintf("Redis %s at %s, %s; role rules %s", version, opt.Addr, save, strings.Join(rules, " ")))
	count := func(tb testing.TB) int {
		tb.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), svcTimeout)
		defer cancel()
		users, err := redisUsers(ctx, admin)
		if err != nil {
			tb.Fatalf("redis: ACL USERS: %v", plugins.Sanitize(err))
		}
		return len(users)
	}
	benchService(b, rep, scn, *flagRedisOps, broker, raw.side(), count)
}
