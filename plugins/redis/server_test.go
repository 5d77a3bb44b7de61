package redis_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/credbroker/credbroker/plugins/plugintest"
)

// serverStartTimeout bounds waiting for a started redis-server to answer.
const serverStartTimeout = 20 * time.Second

// server is a redis-server process a test started on a free loopback port,
// with a directory of its own. It is killed when the test ends.
type server struct {
	t    *testing.T
	port int
	dir  string
	args []string
	cmd  *exec.Cmd
	exit chan struct{} // closed when cmd has been waited for
	log  string
	acl  string // the ACL file's path, if any
	tls  *tls.Config

	adminOnce sync.Once
	adminC    *goredis.Client
}

// needBinary returns the path of a Redis binary, skipping the test when it is
// missing (failing it when CREDBROKER_REQUIRE_SERVICES=1).
func needBinary(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv(plugintest.RequireServicesEnv) == "1" {
			t.Fatalf("%s is not installed: %v", name, err)
		}
		t.Skipf("%s is not installed: %v", name, err)
	}
	return path
}

// freePort returns a loopback TCP port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer starts redis-server on a free port with the given extra
// arguments, in a fresh directory; aclFile, if set, is the path of an ACL
// file in that directory, created empty. It returns once PING answers.
func startServer(t *testing.T, aclFile string, extra ...string) *server {
	t.Helper()
	return startServerWith(t, nil, aclFile, extra...)
}

// startServerWith is startServer for a server that only speaks TLS, when
// clientTLS is not nil: what the tests' own clients use to reach it.
func startServerWith(t *testing.T, clientTLS *tls.Config, aclFile string, extra ...string) *server {
	t.Helper()
	bin := needBinary(t, "redis-server")
	s := &server{t: t, port: freePort(t), dir: t.TempDir(), tls: clientTLS}
	s.log = filepath.Join(s.dir, "redis.log")
	port := []string{"--port", strconv.Itoa(s.port)}
	if clientTLS != nil {
		port = []string{"--port", "0", "--tls-port", strconv.Itoa(s.port)}
	}
	s.args = append(port, "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", s.log)
	if aclFile != "" {
		s.acl = filepath.Join(s.dir, aclFile)
		if err := os.MkdirAll(filepath.Dir(s.acl), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.acl, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		s.args = append(s.args, "--aclfile", s.acl)
	}
	s.args = append(s.args, extra...)
	s.start(bin)
	t.Cleanup(s.stop)
	return s
}

func (s *server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func (s *server) start(bin string) {
	s.t.Helper()
	s.cmd = exec.Command(bin, s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	exit := make(chan struct{})
	s.exit = exit
	cmd := s.cmd
	go func() {
		_ = cmd.Wait()
		close(exit)
	}()
	if err := s.waitReady(); err != nil {
		s.stop()
		logged, _ := os.ReadFile(s.log)
		s.t.Fatalf("redis-server on port %d: %v\n%s", s.port, err, logged)
	}
}

// waitReady polls PING until it answers or the process exits.
func (s *server) waitReady() error {
	c := goredis.NewClient(&goredis.Options{Addr: s.addr(), MaxRetries: -1, DialTimeout: time.Second,
		DisableIdentity: true, TLSConfig: s.tls})
	defer c.Close()
	deadline := time.Now().Add(serverStartTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer after %v: %w", serverStartTimeout, err)
		}
		select {
		case <-s.exit:
			return fmt.Errorf("exited: %w", err)
		case <-tick.C:
		}
	}
}

// stop kills the server, as a crash would, and waits for it to exit. It
// does nothing when the server is not running.
func (s *server) stop() {
	select {
	case <-s.exit:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.exit
}

// restart starts the stopped server again with the same arguments, port and
// directory.
func (s *server) restart() {
	s.t.Helper()
	s.start(needBinary(s.t, "redis-server"))
}

// admin returns a client as the default user, closed when the test ends.
func (s *server) admin() *goredis.Client {
	s.adminOnce.Do(func() {
		s.adminC = goredis.NewClient(&goredis.Options{Addr: s.addr(), DisableIdentity: true, TLSConfig: s.tls})
		s.t.Cleanup(func() { _ = s.adminC.Close() })
	})
	return s.adminC
}

// hasUser reports whether the server has the ACL user.
func hasUser(t *testing.T, c *goredis.Client, username string) bool {
	t.Helper()
	users, err := c.ACLUsers(t.Context()).Result()
	if err != nil {
		t.Fatalf("ACL USERS on %s: %v", c.Options().Addr, err)
	}
	for _, u := range users {
		if u == username {
			return true
		}
	}
	return false
}

// fileHasUser reports whether the ACL file at path holds the user.
func fileHasUser(t *testing.T, path, username string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), "user "+username+" ")
}
