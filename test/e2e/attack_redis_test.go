package e2e_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/credbroker/credbroker/test/harness"
)

// redisAttackRoles is a config's roles and policy: one Redis role called
// "cache" with rules, granted to appSubject.
func redisAttackRoles(rules string) string {
	return fmt.Sprintf(`roles:
  - name: cache
    backend: %s
    default_ttl: 10m
    max_ttl: 1h
    redis:
      rules: %s
`, redisBackend, rules) + singlePolicy("cache")
}

// TestAttackRedisACLSelfService is a config author's role that would let a
// holder make an ACL user of its own, one that no lease accounts for and that
// never expires: by name, by subcommand, through a category that holds ACL
// SETUSER (@slow), in a selector, or with every command. `config check`
// refuses each, naming the role's path and rule, and so does `serve`, before
// it touches anything. A holder of a permitted role cannot run ACL SETUSER,
// read the admin's password with CONFIG GET, or read other users' password
// hashes.
func TestAttackRedisACLSelfService(t *testing.T) {
	t.Parallel()
	rd := harness.NewRedis(t)
	iss := harness.NewIssuer(t, "test")
	dir := t.TempDir()

	for name, tt := range map[string]struct {
		rules string
		want  string // what the error names after the role's path
	}{
		"ACLSetUser":    {`["~a:*", "+@read", "+acl|setuser"]`, `rules\[2\]: "\+acl\|setuser": grants ACL SETUSER`},
		"ACL":           {`["~a:*", "+acl"]`, `rules\[1\]: "\+acl": grants ACL SETUSER`},
		"SlowCategory":  {`["~a:*", "+@read", "+@slow"]`, `rules: "\+@slow" grants ACL SETUSER, CONFIG GET`},
		"InSelector":    {`["~a:*", "+get", "(~b:* +acl|setuser)"]`, `rules\[2\]: "\(~b:\* \+acl\|setuser\)": in the selector, "\+acl\|setuser"`},
		"SlowSelector":  {`["~a:*", "(~b:* +@slow)"]`, `rules\[1\]: in the selector, "\+@slow" grants`},
		"AllCommands":   {`["allkeys", "allcommands"]`, `rules\[1\]: "allcommands": grants every command`},
		"AllTakenBack":  {`["allkeys", "+@all", "-@dangerous"]`, `rules\[1\]: "\+@all": grants every command`},
		"Admin":         {`["~a:*", "+@admin"]`, `rules\[1\]: "\+@admin"`},
		"ConfigGet":     {`["~a:*", "+config|get"]`, `rules\[1\]: "\+config\|get": grants CONFIG GET`},
		"WriteMigrates": {`["~a:*", "+@read", "+@write"]`, `rules: "\+@write" grants MIGRATE`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, name+".yaml")
			cfg := harness.ServicesConfig(iss, rd.BackendYAML(redisBackend), redisAttackRoles(tt.rules))
			cfg = strings.ReplaceAll(cfg, harness.ListenPlaceholder, "127.0.0.1:8420")
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			want := regexp.MustCompile(`roles\[0\]\.redis(\.|: )` + tt.want)
			stdout, stderr, code := harness.RunCLI(t, nil, "config", "check", path)
			if code != 1 || !want.MatchString(stdout+stderr) {
				t.Errorf("config check: exit %d, want 1 and an error matching %s:\n%s%s", code, want, stdout, stderr)
			}
			_, stderr, code = harness.RunCLI(t, nil, "serve", "--config", path)
			if code != 1 || !want.MatchString(stderr) {
				t.Errorf("serve: exit %d, want 1 and an error matching %s:\n%s", code, want, stderr)
			}
		})
	}

	t.Run("PermittedHolder", func(t *testing.T) {
		t.Parallel()
		store := harness.NewStore(t)
		rd.DeleteUsersAtEnd(t, store.IssuedUsernames(t, redisBackend))
		prefix := harness.RandomName("e2eatk")
		escape := "cb_escape_" + strings.ToLower(prefix)
		rd.DeleteUsersAtEnd(t, func() []string { return []string{escape} })
		b := harness.StartBroker(t, harness.ServicesConfig(iss, rd.BackendYAML(redisBackend),
			redisAttackRoles(fmt.Sprintf(`["~%s:*", "+@read", "+@write", "-@dangerous", "+acl|whoami"]`, prefix))),
			store.StoreEnv()...)
		cred := issue(t, b, iss.Token(t, appSubject, nil, time.Hour), map[string]any{"role": "cache"})
		b.Track(cred.Password, cred.URI)

		ctx := t.Context()
		holder := goredis.NewClient(harness.UserOptions(t, cred.URI, cred.Password))
		defer holder.Close()
		if who, err := holder.ACLWhoAmI(ctx).Result(); err != nil || who != cred.Username {
			t.Fatalf("ACL WHOAMI as the holder = %q, %v; want %s", who, err, cred.Username)
		}
		for what, args := range map[string][]any{
			"ACL SETUSER":            {"acl", "setuser", escape, "on", ">escaped-password", "allkeys", "+@all"},
			"ACL GETUSER default":    {"acl", "getuser", "default"},
			"ACL LIST":               {"acl", "list"},
			"CONFIG GET requirepass": {"config", "get", "requirepass"},
			"CONFIG SET":             {"config", "set", "aclfile", "/tmp/x.acl"},
			"CLIENT LIST":            {"client", "list"},
			"MIGRATE":                {"migrate", "127.0.0.1", "1", prefix + ":k", "0", "1000"},
			"MODULE LIST":            {"module", "list"},
			"ACL USERS":              {"acl", "users"},
		} {
			err := holder.Do(ctx, args...).Err()
			if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
				t.Errorf("%s as the holder: %v, want NOPERM", what, err)
			}
		}
		if rd.UserExists(t, escape) {
			t.Errorf("the holder made user %s", escape)
		}
	})
}

// TestAttackRedisPlainTextAdmin: a backend whose admin connection is plain
// text to a server off loopback starts, with a warning naming the backend
// and the address, so the network cannot read the admin's password unseen.
func TestAttackRedisPlainTextAdmin(t *testing.T) {
	t.Parallel()
	ip := nonLoopbackIP(t)
	password := rand.Text()
	addr := startRedisOn(t, ip, password)
	iss := harness.NewIssuer(t, "test")
	store := harness.NewStore(t)
	backend := fmt.Sprintf(`  - name: %s
    plugin: redis
    environment: test
    owner: team-test
    connection: {addr: %q, password: env:CB_ATTACK_REDIS_PASSWORD}
`, redisBackend, addr)
	b := harness.StartBroker(t, harness.ServicesConfig(iss, backend, redisAttackRoles(`["~a:*", "+@read"]`)),
		append(store.StoreEnv(), "CB_ATTACK_REDIS_PASSWORD="+password)...)
	b.Track(password)
	logs := b.Logs()
	want := regexp.MustCompile(`"backend warning".*"backend":"` + redisBackend + `".*the admin connection to ` + regexp.QuoteMeta(addr) + ` is plain text`)
	if !want.MatchString(logs) {
		t.Errorf("the broker's start logs hold no warning matching %s:\n%s", want, logs)
	}
}

// nonLoopbackIP returns an IPv4 address of this machine that is not a
// loopback one; the test is skipped on a machine without one.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatalf("interface addresses: %v", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Skip("this machine has no IPv4 address off loopback")
	return ""
}

// startRedisOn runs a redis-server of the test's own bound to ip only, whose
// default user has password, killed when the test ends, and returns its
// address.
func startRedisOn(t *testing.T, ip, password string) string {
	t.Helper()
	needTool(t, "redis-server")
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("find a free port on %s: %v", ip, err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	_ = l.Close()
	addr := net.JoinHostPort(ip, port)
	cmd := exec.Command("redis-server", "--port", port, "--bind", ip, "--dir", t.TempDir(), "--save", "",
		"--appendonly", "no", "--daemonize", "no", "--requirepass", password)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	c := goredis.NewClient(&goredis.Options{Addr: addr, Password: password, MaxRetries: -1, DisableIdentity: true})
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		err := c.Ping(ctx).Err()
		if err == nil {
			return addr
		}
		select {
		case <-exited:
			t.Fatalf("redis-server on %s exited during start-up", addr)
		case <-ctx.Done():
			t.Fatalf("redis-server on %s did not answer: %v", addr, errors.Join(err, ctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}
