package redis_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/plugins/redis"
)

// TestDemo prepares the demo backend against the test server, as
// `credbroker dev` does, parses its connection and role with the driver, and
// issues the demo role: it may write demo:* keys, as the banner's line does,
// and nothing else.
func TestDemo(t *testing.T) {
	_, conn := sharedRedis(t)
	if !conn.Password.IsZero() || conn.Username != "" || conn.TLS.Enabled {
		t.Skip("the demo logs in as the default user without a password or TLS; the test server wants more")
	}
	d, ok := redis.New().(plugins.Describer)
	if !ok {
		t.Fatal("redis.New() does not describe itself")
	}
	if n := redis.New(); n.Name() != "redis" || n.UsernameLimit() != 64 {
		t.Errorf("New() is %q with a username limit of %d", n.Name(), n.UsernameLimit())
	}
	demo := d.Describe().Demo
	if demo == nil {
		t.Fatal("Describe() declares no demo")
	}
	t.Setenv("CREDBROKER_DEV_REDIS_ADDR", conn.Addr)
	backend, err := demo.Prepare(t.Context())
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	c, err := redis.Driver{}.ParseConnection(plugintest.Decoder(backend.Connection))
	if err != nil {
		t.Fatalf("ParseConnection(%s): %v", backend.Connection, err)
	}
	if c.Addr != conn.Addr {
		t.Errorf("the demo's connection is %s, want addr %s", backend.Connection, conn.Addr)
	}
	role, _, err := redis.Driver{}.ParseRole(plugintest.Decoder(backend.Role))
	if err != nil {
		t.Fatalf("ParseRole(%s): %v", backend.Role, err)
	}
	if len(backend.Env) != 0 {
		t.Errorf("Env = %v, want none: the demo has no secret", backend.Env)
	}
	if !strings.Contains(backend.Try, "creds demo-redis") || !strings.Contains(backend.Try, "SET demo:hello world") {
		t.Errorf("Try = %q, want the line that issues demo-redis and sets demo:hello", backend.Try)
	}

	p := open(t, c)
	if err := p.CheckRole(t.Context(), role); err != nil {
		t.Fatalf("CheckRole of the demo role: %v", err)
	}
	cred := create(t, p, "demo", role)
	opt, err := userOptions(cred)
	if err != nil {
		t.Fatal(err)
	}
	user := goredis.NewClient(opt) // the demo role may not PING, so no loginWith
	defer user.Close()
	key := "demo:" + strings.ToLower(plugins.NewPassword().Reveal()[:12])
	if err := user.Set(t.Context(), key, "world", time.Minute).Err(); err != nil {
		t.Errorf("SET %s as the demo role: %v", key, plugins.Sanitize(err, cred.Password))
	}
	user.Del(t.Context(), key)
	if err := user.Set(t.Context(), "other:x", "v", time.Minute).Err(); !goredis.IsPermissionError(err) {
		t.Errorf("SET other:x as the demo role = %v, want NOPERM", plugins.Sanitize(err, cred.Password))
	}
}

// TestDemoUnavailable: with nothing at the demo's address, or an address
// that is not one, Prepare fails saying which variable to set.
func TestDemoUnavailable(t *testing.T) {
	demo := redis.Driver{}.Describe().Demo
	for addr, unavailable := range map[string]bool{"127.0.0.1:1": true, "no-port": false} {
		t.Setenv("CREDBROKER_DEV_REDIS_ADDR", addr)
		_, err := demo.Prepare(t.Context())
		switch {
		case err == nil:
			t.Errorf("Prepare with %s succeeded", addr)
		case !strings.Contains(err.Error(), "CREDBROKER_DEV_REDIS_ADDR"):
			t.Errorf("Prepare with %s = %v, want an error naming CREDBROKER_DEV_REDIS_ADDR", addr, err)
		case errors.Is(err, plugins.ErrUnavailable) != unavailable:
			t.Errorf("Prepare with %s = %v: unavailable is %v, want %v", addr, err, !unavailable, unavailable)
		}
	}
}
