package redis

import (
	"cmp"
	"context"
	"fmt"
	"os"

	"github.com/credbroker/credbroker/plugins"
)

// The demo backend `credbroker dev` adds when a Redis answers on this
// machine.
const (
	// demoAddrEnv names the variable that says where the demo Redis is.
	demoAddrEnv = "CREDBROKER_DEV_REDIS_ADDR"
	// defaultDemoAddr is where the demo Redis is when demoAddrEnv is unset:
	// a local server whose default user needs no password and may manage
	// ACL users.
	defaultDemoAddr = "127.0.0.1:6379"
	// demoRole may read and write demo:* keys and run nothing dangerous.
	demoRole = `{rules: ["~demo:*", "+@read", "+@write", "-@dangerous"]}`
	// demoTry shows the demo role working: redis-cli reads the password
	// from REDISCLI_AUTH.
	demoTry = `eval "$(./bin/credbroker creds demo-redis -o env)"; redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --user "$REDIS_USERNAME" SET demo:hello world`
)

// prepareDemo checks that the Redis at $CREDBROKER_DEV_REDIS_ADDR (default
// 127.0.0.1:6379) answers and lets its default user manage ACL users, by
// opening the plugin with the demo's connection and running its Check. It
// makes nothing on the server.
func prepareDemo(ctx context.Context) (plugins.DemoBackend, error) {
	addr := cmp.Or(os.Getenv(demoAddrEnv), defaultDemoAddr)
	c := Connection{Addr: addr}
	if err := c.validate(); err != nil {
		return plugins.DemoBackend{}, fmt.Errorf("%s: %w", demoAddrEnv, err)
	}
	p, err := Driver{}.Open(ctx, &c)
	if err != nil {
		return plugins.DemoBackend{}, fmt.Errorf("no usable Redis at %s (set %s to use another): %w", addr, demoAddrEnv, err)
	}
	defer func() { _ = p.Close() }()
	if err := p.Check(ctx); err != nil {
		return plugins.DemoBackend{}, fmt.Errorf("the Redis at %s cannot serve the demo as its default user: %w", addr, err)
	}
	return plugins.DemoBackend{
		// checkAddr allows no character that %q would escape unlike YAML.
		Connection: fmt.Sprintf("{addr: %q}", addr),
		Role:       demoRole,
		Try:        demoTry,
	}, nil
}
