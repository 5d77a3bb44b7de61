package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/credbroker/credbroker/plugins/plugintest"
)

// RedisServer is a redis-server of the test's own: a [Redis] whose default
// user is the admin, on a free loopback port, with a directory of its own.
type RedisServer struct {
	*Redis
	// ACLFile is the path of its ACL file (see [WithACLFile]); "" when it
	// keeps its users in memory only.
	ACLFile string

	bin, log string
	args     []string
	kill     func() // kills the running process and waits for it; idempotent
}

// RedisServerOption changes how [StartRedisServer] starts a server.
type RedisServerOption func(*redisServerOptions)

type redisServerOptions struct{ aclFile bool }

// WithACLFile gives the server an ACL file, empty at start, in its
// directory: what ACL SAVE writes and a restart reads back (a backend whose
// admin password the broker rotates needs one).
func WithACLFile() RedisServerOption { return func(o *redisServerOptions) { o.aclFile = true } }

// StartRedisServer runs a redis-server of the test's own on a free loopback
// port, with no persistence but its ACL file if any, killed when the test
// ends, for tests that must not share a server: a broker's sweep revokes
// every cb_ user on its server that its own store has no lease for, other
// tests' users included; a root rotation changes the admin's password. The
// test is skipped (or fails under CREDBROKER_REQUIRE_SERVICES=1) when
// redis-server is not installed.
func StartRedisServer(t testing.TB, opts ...RedisServerOption) *RedisServer {
	t.Helper()
	var o redisServerOptions
	for _, opt := range opts {
		opt(&o)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(plugintest.RequireServicesEnv) == "1" {
			t.Fatalf("harness: redis-server is not installed: %v", err)
		}
		t.Skipf("harness: redis-server is not installed: %v", err)
	}
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		port := strconv.Itoa(freePort(t))
		addr := net.JoinHostPort("127.0.0.1", port)
		s := &RedisServer{bin: bin, log: filepath.Join(dir, "redis.log"),
			Redis: &Redis{URL: "redis://" + addr, Addr: addr, opt: &goredis.Options{Addr: addr}}}
		s.args = []string{"--port", port, "--bind", "127.0.0.1", "--dir", dir, "--save", "",
			"--appendonly", "no", "--daemonize", "no", "--logfile", s.log}
		if o.aclFile {
			s.ACLFile = filepath.Join(dir, "users.acl")
			if err := os.WriteFile(s.ACLFile, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			s.args = append(s.args, "--aclfile", s.ACLFile)
		}
		s.admin = s.newAdmin()
		err := s.start()
		if err == nil {
			t.Cleanup(func() { s.kill() })
			t.Cleanup(func() { _ = s.admin.Close() }) // runs first
			return s
		}
		_ = s.admin.Close()
		if attempt == startAttempts {
			logged, _ := os.ReadFile(s.log)
			t.Fatalf("harness: redis-server on %s: %v\n%s", addr, err, logged)
		}
	}
}

// start runs the process and waits until it answers PING.
func (s *RedisServer) start() error {
	cmd := exec.Command(s.bin, s.args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.kill = func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	if err := waitRedis(s.admin, exited); err != nil {
		s.kill()
		return err
	}
	return nil
}

// Restart kills the server, as a crash would, and starts it again on the
// same port, directory and arguments: it comes back with the users its ACL
// file holds and nothing else.
func (s *RedisServer) Restart(t testing.TB) {
	t.Helper()
	s.kill()
	if err := s.start(); err != nil {
		logged, _ := os.ReadFile(s.log)
		t.Fatalf("harness: restart redis-server on %s: %v\n%s", s.Addr, err, logged)
	}
}

// waitRedis polls PING until it answers, the process exits (its port was
// taken, say) or readyTimeout passes.
func waitRedis(c *goredis.Client, exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PING answer after %s: %w", readyTimeout, err)
		}
		select {
		case <-exited:
			return errors.New("redis-server exited during start-up")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
