package redis_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/goleak"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/plugins/redis"
	"github.com/credbroker/credbroker/secret"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// decoder decodes a YAML section strictly, as the broker does.
var decoder = plugintest.Decoder

// sharedRedis returns the test server's URL and a connection section for
// it, with the admin password (if the URL has one) in a file.
func sharedRedis(t *testing.T) (string, *redis.Connection) {
	t.Helper()
	u := plugintest.RedisURL(t)
	opt, err := goredis.ParseURL(u)
	if err != nil {
		t.Fatalf("parse %s: %v", plugintest.RedisURLEnv, plugins.Sanitize(err))
	}
	var extra []string
	if opt.Username != "" {
		extra = append(extra, "username: "+opt.Username)
	}
	if opt.Password != "" {
		extra = append(extra, "password: "+secretFile(t, opt.Password))
	}
	if opt.TLSConfig != nil {
		extra = append(extra, "tls: {enabled: true}")
	}
	return u, connection(t, "addr: "+opt.Addr+"\n"+strings.Join(extra, "\n"))
}

// secretFile writes v to a file and returns a reference to it.
func secretFile(t *testing.T, v string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
		t.Fatal(err)
	}
	return "file:" + path
}

func connection(t *testing.T, src string) *redis.Connection {
	t.Helper()
	c, err := redis.Driver{}.ParseConnection(decoder(src))
	if err != nil {
		t.Fatalf("ParseConnection: %v", err)
	}
	return c
}

func parseRole(t *testing.T, src string) *redis.Role {
	t.Helper()
	r, _, err := redis.Driver{}.ParseRole(decoder(src))
	if err != nil {
		t.Fatalf("ParseRole: %v", err)
	}
	return r
}

// open opens a plugin as the broker does, through plugins.Open and its
// sanitizing decorator, closed when the test ends.
func open(t *testing.T, conn *redis.Connection) plugins.Plugin {
	t.Helper()
	p, err := plugins.Open(t.Context(), redis.New(), conn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// adminClient connects to url as the admin, closed when the test ends.
func adminClient(t *testing.T, url string) *goredis.Client {
	t.Helper()
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(plugins.Sanitize(err))
	}
	opt.DisableIdentity = true
	c := goredis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// create issues a user of role, revoked when the test ends. Its State is
// nil: the plugin needs nothing but the username to revoke.
func create(t *testing.T, p plugins.Plugin, roleName string, role *redis.Role) plugins.Credential {
	t.Helper()
	username := plugins.NewUsername(roleName, redis.Driver{}.UsernameLimit())
	resp, err := p.Create(t.Context(), plugins.CreateRequest{
		Username: username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Role: roleName, Spec: role,
	})
	t.Cleanup(func() { _ = revoke(context.Background(), p, username) })
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if resp.State != nil {
		t.Errorf("Create returned the state %q, want none", resp.State)
	}
	return resp.Credential
}

// revoke revokes username as the broker does for a lease whose role left
// the config, or for an orphan: with neither spec nor state.
func revoke(ctx context.Context, p plugins.Plugin, username string) error {
	_, err := p.Revoke(ctx, plugins.RevokeRequest{Username: username})
	return err
}

// renew renews username for an hour, without spec or state.
func renew(ctx context.Context, p plugins.Plugin, username string) error {
	_, err := p.Renew(ctx, plugins.RenewRequest{Username: username, ExpiresAt: time.Now().Add(time.Hour)})
	return err
}

// ordersRole may read and write orders:* keys and nothing dangerous.
const ordersRole = `rules: ["~orders:*", "+@read", "+@write", "-@dangerous", "+ping"]`

// userOptions are client options that log in as the credential on one
// connection that is never replaced: once the server closes it, every
// command fails.
func userOptions(c plugins.Credential) (*goredis.Options, error) {
	opt, err := goredis.ParseURL(c.URI.Reveal())
	if err != nil {
		return nil, plugins.Sanitize(err, c.Password)
	}
	opt.MaxRetries = -1
	opt.PoolSize = 1
	opt.DialerRetries = 1
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return opt, nil
}

// session is a login as an issued credential: one held connection.
type session struct {
	client *goredis.Client
	conn   *goredis.Conn
}

func login(ctx context.Context, c plugins.Credential) (plugintest.Session, error) {
	opt, err := userOptions(c)
	if err != nil {
		return nil, err
	}
	return loginWith(ctx, opt, c.Password)
}

func loginWith(ctx context.Context, opt *goredis.Options, password secret.Value) (*session, error) {
	client := goredis.NewClient(opt)
	conn := client.Conn()
	if err := conn.Ping(ctx).Err(); err != nil {
		_ = conn.Close()
		_ = client.Close()
		return nil, plugins.Sanitize(err, password)
	}
	return &session{client: client, conn: conn}, nil
}

func (s *session) Ping(ctx context.Context) error { return s.conn.Ping(ctx).Err() }

// CheckGrants proves the user of ordersRole can write and read orders:*
// keys, and neither read other keys nor run FLUSHALL or CONFIG.
func (s *session) CheckGrants(ctx context.Context) error {
	return checkOrdersGrants(ctx, s.conn)
}

// cmdable is what a held connection and a cluster client both are.
type cmdable interface {
	goredis.Cmdable
	Process(ctx context.Context, cmd goredis.Cmder) error
}

// do runs any command on c.
func do(ctx context.Context, c cmdable, args ...any) *goredis.Cmd {
	cmd := goredis.NewCmd(ctx, args...)
	_ = c.Process(ctx, cmd)
	return cmd
}

func checkOrdersGrants(ctx context.Context, c cmdable) error {
	key := "orders:" + strings.ToLower(plugins.NewPassword().Reveal()[:12])
	if err := c.Set(ctx, key, "v", time.Minute).Err(); err != nil {
		return fmt.Errorf("SET %s: %w", key, err)
	}
	defer c.Del(context.WithoutCancel(ctx), key)
	if got, err := c.Get(ctx, key).Result(); err != nil || got != "v" {
		return fmt.Errorf("GET %s = %q, %v; want the value set", key, got, err)
	}
	return checkDenied(ctx, c)
}

// checkDenied proves c may neither touch keys outside orders:* nor run
// FLUSHALL, CONFIG or ACL SETUSER. Redis checks ACLs before it redirects a
// command in a cluster, so this holds on any node.
func checkDenied(ctx context.Context, c cmdable) error {
	denied := map[string]*goredis.Cmd{
		"GET other:x":        do(ctx, c, "get", "other:x"),
		"SET other:x":        do(ctx, c, "set", "other:x", "v"),
		"FLUSHALL":           do(ctx, c, "flushall"),
		"CONFIG GET maxmem…": do(ctx, c, "config", "get", "maxmemory"),
		"ACL SETUSER":        do(ctx, c, "acl", "setuser", "cb_escape", "on", "nopass", "allkeys", "+@all"),
	}
	for what, cmd := range denied {
		if !goredis.IsPermissionError(cmd.Err()) {
			return fmt.Errorf("%s = %v, want NOPERM", what, cmd.Err())
		}
	}
	return nil
}

func (s *session) Close() error {
	return errors.Join(s.conn.Close(), s.client.Close())
}

func TestConformance(t *testing.T) {
	t.Parallel()
	_, conn := sharedRedis(t)
	plugintest.Run(t, plugintest.Harness{
		Driver:     redis.New(),
		Connection: conn,
		Role:       parseRole(t, ordersRole),
		Login:      login,
	})
}

// clientsOf returns how many connections CLIENT LIST shows for username.
func clientsOf(t *testing.T, admin *goredis.Client, username string) int {
	t.Helper()
	list, err := admin.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	n := 0
	for line := range strings.Lines(list) {
		if strings.Contains(" "+line+" ", " user="+username+" ") {
			n++
		}
	}
	return n
}

// TestRevokeClosesConnections holds three connections as a user and shows
// that after Revoke the server lists none and each fails its next command.
func TestRevokeClosesConnections(t *testing.T) {
	t.Parallel()
	u, conn := sharedRedis(t)
	admin := adminClient(t, u)
	p := open(t, conn)
	cred := create(t, p, "held", parseRole(t, ordersRole))
	var sessions []*session
	for range 3 {
		opt, err := userOptions(cred)
		if err != nil {
			t.Fatal(err)
		}
		s, err := loginWith(t.Context(), opt, cred.Password)
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		sessions = append(sessions, s)
	}
	if n := clientsOf(t, admin, cred.Username); n != 3 {
		t.Fatalf("CLIENT LIST shows %d connections of %s before Revoke, want 3", n, cred.Username)
	}
	if err := revoke(t.Context(), p, cred.Username); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if n := clientsOf(t, admin, cred.Username); n != 0 {
		t.Errorf("CLIENT LIST shows %d connections of %s after Revoke, want none", n, cred.Username)
	}
	for i, s := range sessions {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := s.Ping(ctx)
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil || timedOut {
			t.Errorf("held connection %d: PING after Revoke = %v, want the connection closed", i, err)
		}
	}
	if _, err := login(t.Context(), cred); err == nil {
		t.Error("a new login as the revoked user succeeded")
	}
}

func TestCredential(t *testing.T) {
	t.Parallel()
	_, conn := sharedRedis(t)
	p := open(t, conn)
	cred := create(t, p, "cred", parseRole(t, `rules: ["~cred:*", "+@read", "+acl|whoami"]`))
	host, port, err := net.SplitHostPort(conn.Addr)
	if err != nil {
		t.Fatal(err)
	}
	wantURI := "redis://" + cred.Username + ":" + cred.Password.Reveal() + "@" + host + ":" + port
	if cred.URI.Reveal() != wantURI {
		t.Errorf("URI = %s, want %s", plugins.SanitizeString(cred.URI.Reveal()), plugins.SanitizeString(wantURI))
	}
	wantEnv := map[string]string{
		"REDISCLI_AUTH": cred.Password.Reveal(), "REDIS_URL": wantURI,
		"REDIS_HOST": host, "REDIS_PORT": port, "REDIS_USERNAME": cred.Username,
	}
	if len(cred.Env) != len(wantEnv) {
		t.Errorf("Env has %d variables, want %d", len(cred.Env), len(wantEnv))
	}
	meta := redis.Driver{}.Describe()
	if len(meta.Env) != len(wantEnv) {
		t.Errorf("Describe().Env = %q, want the %d variables of Env", meta.Env, len(wantEnv))
	}
	for _, k := range meta.Env {
		if _, ok := wantEnv[k]; !ok {
			t.Errorf("Describe().Env names %s, which Env does not hold", k)
		}
	}
	for k, want := range wantEnv {
		if got := cred.Env[k].Reveal(); got != want {
			t.Errorf("Env[%s] = %s, want %s", k, plugins.SanitizeString(got, cred.Password), plugins.SanitizeString(want, cred.Password))
		}
	}
	wantFields := map[string]string{"host": host, "port": port, "username": cred.Username}
	if len(cred.Fields) != len(wantFields) {
		t.Errorf("Fields = %v, want %v", cred.Fields, wantFields)
	}
	for k, want := range wantFields {
		if cred.Fields[k] != want {
			t.Errorf("Fields[%s] = %q, want %q", k, cred.Fields[k], want)
		}
	}

	// redis-cli logs in with the environment alone, as the doc says, and
	// with the arguments Describe gives `credbroker connect`.
	if len(meta.Clients) != 1 || meta.Clients[0].Command != "redis-cli" {
		t.Fatalf("Describe().Clients = %+v, want redis-cli", meta.Clients)
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli is not installed")
	}
	withEnv := os.Environ()
	env := make(map[string]string, len(cred.Env))
	for k, v := range cred.Env {
		withEnv = append(withEnv, k+"="+v.Reveal())
		env[k] = v.Reveal()
	}
	connectArgs := meta.Clients[0].Args(env)
	if strings.Contains(strings.Join(connectArgs, " "), cred.Password.Reveal()) {
		t.Fatal("the arguments of redis-cli hold the password: it belongs in REDISCLI_AUTH")
	}
	for name, run := range map[string]struct {
		args []string
		env  []string
	}{
		// REDISCLI_AUTH has the password; the name comes from REDIS_USERNAME.
		"User": {[]string{"-h", host, "-p", port, "--user", cred.Username}, withEnv},
		// What `credbroker connect` runs.
		"Connect": {connectArgs, withEnv},
		// The URL alone is enough.
		"URL": {[]string{"-u", cred.Env["REDIS_URL"].Reveal()}, os.Environ()},
	} {
		cmd := exec.CommandContext(t.Context(), "redis-cli", append(run.args, "--no-auth-warning", "ACL", "WHOAMI")...)
		cmd.Env = run.env
		out, err := cmd.CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != cred.Username {
			t.Errorf("redis-cli (%s): ACL WHOAMI = %q, %v; want %s", name, plugins.SanitizeString(got, cred.Password), err, cred.Username)
		}
	}
}

func TestCreateNeverChangesAnExistingUser(t *testing.T) {
	t.Parallel()
	_, conn := sharedRedis(t)
	p := open(t, conn)
	role := parseRole(t, ordersRole)
	cred := create(t, p, "exists", role)
	_, err := p.Create(t.Context(), plugins.CreateRequest{
		Username: cred.Username, Password: plugins.NewPassword(), ExpiresAt: time.Now().Add(time.Hour), Spec: role,
	})
	if !errors.Is(err, redis.ErrUserExists) {
		t.Fatalf("Create of an existing user = %v, want ErrUserExists", err)
	}
	s, err := login(t.Context(), cred)
	if err != nil {
		t.Fatalf("the first password no longer logs in: %v", err)
	}
	_ = s.Close()
}

func TestRenew(t *testing.T) {
	t.Parallel()
	_, conn := sharedRedis(t)
	p := open(t, conn)
	cred := create(t, p, "renew", parseRole(t, ordersRole))
	if err := renew(t.Context(), p, cred.Username); err != nil {
		t.Fatalf("Renew of a live user: %v", err)
	}
	if err := revoke(t.Context(), p, cred.Username); err != nil {
		t.Fatal(err)
	}
	err := renew(t.Context(), p, cred.Username)
	if !errors.Is(err, redis.ErrNoUser) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Renew of a revoked user = %v, want ErrNoUser", err)
	}
}

// TestRefusesUnmanagedUsers: no call touches a user without the cb_ prefix,
// such as the default user or the admin.
func TestRefusesUnmanagedUsers(t *testing.T) {
	t.Parallel()
	u, conn := sharedRedis(t)
	admin := adminClient(t, u)
	p := open(t, conn)
	role := parseRole(t, ordersRole)
	for _, name := range []string{"default", "admin", "CB_upper", ""} {
		if err := revoke(t.Context(), p, name); !errors.Is(err, redis.ErrNotManaged) {
			t.Errorf("Revoke(%q) = %v, want ErrNotManaged", name, err)
		}
		if err := renew(t.Context(), p, name); !errors.Is(err, redis.ErrNotManaged) {
			t.Errorf("Renew(%q) = %v, want ErrNotManaged", name, err)
		}
		_, err := p.Create(t.Context(), plugins.CreateRequest{Username: name, Password: plugins.NewPassword(), Spec: role})
		if !errors.Is(err, redis.ErrNotManaged) {
			t.Errorf("Create(%q) = %v, want ErrNotManaged", name, err)
		}
	}
	if !hasUser(t, admin, "default") {
		t.Error("the default user is gone")
	}
	for _, name := range []string{"cb_has space", "cb_new\nline", "cb_" + strings.Repeat("x", 62)} {
		_, err := p.Create(t.Context(), plugins.CreateRequest{Username: name, Password: plugins.NewPassword(), Spec: role})
		if err == nil {
			_ = revoke(t.Context(), p, name)
			t.Errorf("Create(%q) succeeded", name)
		}
	}
}

// TestCreateRechecksRules: a Role built by hand, not by ParseRole, is
// checked again, so a forbidden rule never reaches the server.
func TestCreateRechecksRules(t *testing.T) {
	t.Parallel()
	_, conn := sharedRedis(t)
	p := open(t, conn)
	username := plugins.NewUsername("byhand", redis.Driver{}.UsernameLimit())
	t.Cleanup(func() { _ = revoke(context.Background(), p, username) })
	_, err := p.Create(t.Context(), plugins.CreateRequest{
		Username: username, Password: plugins.NewPassword(), Spec: &redis.Role{Rules: []string{"allkeys", "nopass"}},
	})
	if err == nil || !strings.Contains(err.Error(), "rules[1]") {
		t.Errorf("Create with a nopass rule = %v, want an error naming rules[1]", err)
	}
}

func TestListManaged(t *testing.T) {
	t.Parallel()
	u, conn := sharedRedis(t)
	admin := adminClient(t, u)
	p := open(t, conn)
	cred := create(t, p, "list", parseRole(t, ordersRole))
	other := "notcb_" + strings.ToLower(plugins.NewPassword().Reveal()[:10])
	if err := admin.ACLSetUser(t.Context(), other, "reset").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.ACLDelUser(context.Background(), other) })
	users, err := p.ListManaged(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, m := range users {
		if !strings.HasPrefix(m.Username, plugins.ManagedPrefix) || m.Username == other {
			t.Errorf("ListManaged lists %q, which credbroker did not make", m.Username)
		}
		found = found || m.Username == cred.Username
		if !m.CreatedAt.IsZero() {
			t.Errorf("CreatedAt of %s = %v, want zero: Redis does not record it", m.Username, m.CreatedAt)
		}
	}
	if !found {
		t.Errorf("ListManaged does not list %s", cred.Username)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	u, conn := sharedRedis(t)
	admin := adminClient(t, u)
	if err := open(t, conn).Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}

	// adminUser makes an ACL user with rules and returns a connection as it.
	addr := conn.Addr
	adminUser := func(t *testing.T, rules ...string) *redis.Connection {
		name := "cbtest_admin_" + strings.ToLower(plugins.NewPassword().Reveal()[:10])
		pw := plugins.NewPassword()
		err := admin.ACLSetUser(t.Context(), name, append([]string{"reset", "on", ">" + pw.Reveal()}, rules...)...).Err()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.ACLDelUser(context.Background(), name) })
		return connection(t, "addr: "+addr+"\nusername: "+name+"\npassword: "+secretFile(t, pw.Reveal()))
	}

	t.Run("MinimalAdmin", func(t *testing.T) {
		// The admin permissions the package documentation lists are enough.
		p := open(t, adminUser(t, "+ping", "+acl|setuser", "+acl|deluser", "+acl|getuser", "+acl|users",
			"+acl|whoami", "+acl|dryrun", "+acl|save", "+config|get", "+cluster|nodes"))
		if err := p.Check(t.Context()); err != nil {
			t.Fatalf("Check: %v", err)
		}
		cred := create(t, p, "minimal", parseRole(t, ordersRole))
		if err := p.CheckRole(t.Context(), parseRole(t, ordersRole)); err != nil {
			t.Errorf("CheckRole: %v", err)
		}
		if err := renew(t.Context(), p, cred.Username); err != nil {
			t.Errorf("Renew: %v", err)
		}
		if _, err := p.ListManaged(t.Context()); err != nil {
			t.Errorf("ListManaged: %v", err)
		}
		if err := revoke(t.Context(), p, cred.Username); err != nil {
			t.Errorf("Revoke: %v", err)
		}
	})
	t.Run("CannotSetUsers", func(t *testing.T) {
		p := open(t, adminUser(t, "+ping", "+acl|whoami", "+acl|users", "+acl|dryrun", "+config|get"))
		err := p.Check(t.Context())
		if err == nil || !strings.Contains(err.Error(), "ACL GETUSER") {
			t.Errorf("Check as an admin without ACL SETUSER = %v, want an error naming what it may not run", err)
		}
	})
	t.Run("CannotListUsers", func(t *testing.T) {
		p := open(t, adminUser(t, "+ping", "+acl|whoami", "+config|get"))
		err := p.Check(t.Context())
		if err == nil || !strings.Contains(err.Error(), "ACL USERS") {
			t.Errorf("Check as an admin without ACL USERS = %v, want an error naming ACL USERS", err)
		}
	})
}

func TestCheckRole(t *testing.T) {
	t.Parallel()
	_, conn := sharedRedis(t)
	p := open(t, conn)
	before, err := p.ListManaged(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckRole(t.Context(), parseRole(t, `rules: ["~a:*", "%R~b:*", "&c", "+@read", "-@dangerous", "+get", "(~d:* +set)"]`)); err != nil {
		t.Errorf("CheckRole of good rules: %v", err)
	}
	for name, rules := range map[string]string{
		"Command":  `rules: ["~a:*", "+gett"]`,
		"Category": `rules: ["+@raed"]`,
		"Selector": `rules: ["(~a +nosuchcommand)"]`,
	} {
		err := p.CheckRole(t.Context(), parseRole(t, rules))
		if err == nil || !strings.Contains(err.Error(), "refuses the rules") {
			t.Errorf("%s: CheckRole of %s = %v, want the server's refusal", name, rules, err)
		}
	}
	after, err := p.ListManaged(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range after {
		if strings.Contains(u.Username, "rolecheck") {
			t.Errorf("CheckRole left its probe user %s behind (%d managed users before)", u.Username, len(before))
		}
	}
}

func TestOpenUnavailable(t *testing.T) {
	t.Parallel()
	const password = "s3cret-admin-pw"
	conn := connection(t, "addr: 127.0.0.1:1\npassword: "+secretFile(t, password))
	_, err := plugins.Open(t.Context(), redis.New(), conn)
	if !errors.Is(err, plugins.ErrUnavailable) {
		t.Errorf("Open of a server that is not there = %v, want ErrUnavailable", err)
	}
	if err != nil && strings.Contains(fmt.Sprintf("%v %+v", err, err), password) {
		t.Errorf("the error quotes the admin password: %v", err)
	}
}

func TestOpenWrongAdminPassword(t *testing.T) {
	t.Parallel()
	_, conn := sharedRedis(t)
	const password = "wrong-admin-pw-never-printed"
	c := *conn
	wrong := connection(t, "addr: "+c.Addr+"\nusername: cbtest_nobody\npassword: "+secretFile(t, password))
	_, err := plugins.Open(t.Context(), redis.New(), wrong)
	if !errors.Is(err, plugins.ErrUnavailable) {
		t.Errorf("Open with a wrong admin password = %v, want ErrUnavailable", err)
	}
	if err != nil && strings.Contains(fmt.Sprintf("%v %+v", err, err), password) {
		t.Errorf("the error quotes the admin password: %v", err)
	}
}

func TestOpenMissingSecret(t *testing.T) {
	t.Parallel()
	conn := connection(t, "addr: 127.0.0.1:6379\npassword: env:CREDBROKER_TEST_NO_SUCH_VARIABLE")
	_, err := plugins.Open(t.Context(), redis.New(), conn)
	if err == nil || !strings.Contains(err.Error(), "CREDBROKER_TEST_NO_SUCH_VARIABLE") {
		t.Errorf("Open with an unset password variable = %v, want an error naming it", err)
	}
}

// TestErrorsHideAdminPassword provokes errors through an admin with a
// password and checks none quotes it, nor the issued password.
func TestErrorsHideAdminPassword(t *testing.T) {
	t.Parallel()
	u, conn := sharedRedis(t)
	admin := adminClient(t, u)
	name := "cbtest_admin_" + strings.ToLower(plugins.NewPassword().Reveal()[:10])
	adminPW := plugins.NewPassword()
	if err := admin.ACLSetUser(t.Context(), name, "reset", "on", ">"+adminPW.Reveal(), "+@all", "allkeys").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.ACLDelUser(context.Background(), name) })
	p := open(t, connection(t, "addr: "+conn.Addr+"\nusername: "+name+
		"\npassword: "+secretFile(t, adminPW.Reveal())))

	pw := plugins.NewPassword()
	username := plugins.NewUsername("errs", redis.Driver{}.UsernameLimit())
	t.Cleanup(func() { _ = revoke(context.Background(), p, username) })
	_, createErr := p.Create(t.Context(), plugins.CreateRequest{
		Username: username, Password: pw, Spec: &redis.Role{Rules: []string{"+nosuchcommand"}},
	})
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	errs := map[string]error{
		"Create with a rule the server refuses": createErr,
		"Renew of a missing user":               renew(t.Context(), p, username),
		"Revoke with a canceled context":        revoke(canceled, p, username),
		"CheckRole the server refuses":          p.CheckRole(t.Context(), &redis.Role{Rules: []string{"+nosuchcommand"}}),
	}
	for what, err := range errs {
		if err == nil {
			t.Errorf("%s: no error", what)
			continue
		}
		text := fmt.Sprintf("%v %+v", err, err)
		if strings.Contains(text, adminPW.Reveal()) || strings.Contains(text, pw.Reveal()) {
			t.Errorf("%s: the error quotes a password: %s", what, plugins.SanitizeString(text, adminPW, pw))
		}
	}
}

func TestCloseTwice(t *testing.T) {
	t.Parallel()
	_, conn := sharedRedis(t)
	p, err := plugins.Open(t.Context(), redis.New(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := p.Check(t.Context()); !errors.Is(err, redis.ErrClosed) {
		t.Errorf("Check after Close = %v, want ErrClosed", err)
	}
}
