package plugintest

import (
	"context"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

// RedisURLEnv overrides where tests find Redis.
const RedisURLEnv = "CREDBROKER_TEST_REDIS_URL"

// DefaultRedisURL is where tests look for Redis when CREDBROKER_TEST_REDIS_URL
// is not set: a local server whose default user may do everything.
const DefaultRedisURL = "redis://127.0.0.1:6379"

// RedisURL returns the URL of a standalone Redis 7 server for tests, whose
// user may manage ACL users: $CREDBROKER_TEST_REDIS_URL, else
// [DefaultRedisURL]; see [ServiceURL] for what happens when it does not
// answer (Docker runs redis:7). The server is shared: tests keep to keys and
// users of their own.
func RedisURL(t testing.TB) string {
	t.Helper()
	return ServiceURL(t, "redis", RedisURLEnv, DefaultRedisURL, pingRedis)
}

func pingRedis(ctx context.Context, url string) error {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return err
	}
	opt.MaxRetries = -1
	c := goredis.NewClient(opt)
	defer c.Close()
	return c.Ping(ctx).Err()
}
