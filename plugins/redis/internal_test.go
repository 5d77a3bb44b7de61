package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/plugintest"
	"github.com/credbroker/credbroker/secret"
)

// wireRecorder keeps every byte the admin connections send.
type wireRecorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *wireRecorder) dialer(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return recordingConn{Conn: c, r: r}, nil
}

func (r *wireRecorder) sent() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

type recordingConn struct {
	net.Conn
	r *wireRecorder
}

func (c recordingConn) Write(b []byte) (int, error) {
	c.r.mu.Lock()
	c.r.buf.Write(b)
	c.r.mu.Unlock()
	return c.Conn.Write(b)
}

// TestPlaintextNeverSent records what the plugin sends while it creates a
// user: the password's SHA-256 goes to the server, the password does not, and
// the server keeps the hash, which the password logs in with.
func TestPlaintextNeverSent(t *testing.T) {
	t.Parallel()
	u := plugintest.RedisURL(t)
	opt, err := goredis.ParseURL(u)
	if err != nil {
		t.Fatal(plugins.Sanitize(err))
	}
	if opt.TLSConfig != nil {
		t.Skip("the recorder sees TLS records, not commands")
	}
	c := &Connection{Addr: opt.Addr, Username: opt.Username}
	if opt.Password != "" {
		file := filepath.Join(t.TempDir(), "password")
		if err := os.WriteFile(file, []byte(opt.Password), 0o600); err != nil {
			t.Fatal(err)
		}
		if c.Password, err = secret.ParseRef("file:" + file); err != nil {
			t.Fatal(err)
		}
	}
	rec := &wireRecorder{}
	p, err := open(t.Context(), c, func(o *goredis.Options) { o.Dialer = rec.dialer })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })

	pw := plugins.NewPassword()
	username := plugins.NewUsername("wire", usernameLimit)
	t.Cleanup(func() { _, _ = p.Revoke(context.Background(), plugins.RevokeOf[*Role]{Username: username}) })
	resp, err := p.Create(t.Context(), plugins.CreateOf[*Role]{
		Username: username, Password: pw, ExpiresAt: time.Now().Add(time.Hour), Spec: &Role{Rules: []string{"+ping"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := rec.sent()
	if bytes.Contains(sent, []byte(pw.Reveal())) {
		t.Fatal("the plaintext password was sent to the server")
	}
	hash := strings.TrimPrefix(passwordHash(pw), "#")
	if !bytes.Contains(sent, []byte("#"+hash)) {
		t.Error("the password's hash was not sent")
	}

	admin := goredis.NewClient(&goredis.Options{Addr: opt.Addr, Username: opt.Username, Password: opt.Password, DisableIdentity: true})
	defer admin.Close()
	info, err := admin.Do(t.Context(), "acl", "getuser", username).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(info); !strings.Contains(got, hash) || strings.Contains(got, pw.Reveal()) {
		t.Errorf("ACL GETUSER = %v, want the password's hash and not the password", plugins.SanitizeString(got, pw))
	}
	user := goredis.NewClient(&goredis.Options{Addr: opt.Addr, Username: resp.Credential.Username, Password: pw.Reveal(),
		MaxRetries: -1, DisableIdentity: true})
	defer user.Close()
	if err := user.Ping(t.Context()).Err(); err != nil {
		t.Errorf("login with the password: %v", plugins.Sanitize(err, pw))
	}
}

func TestParseClusterNodes(t *testing.T) {
	t.Parallel()
	const reply = `
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,node4.internal slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 1426238317741 1426238316000 3 disconnected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave,fail? 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca :30001@31001 myself,master - 0 0 1 connected 0-5460
aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 127.0.0.1:30009@31009 handshake - 0 0 0 disconnected
bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb [::1]:30006@31006 slave 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 0 6 connected
`
	got, err := parseClusterNodes(reply, "10.1.2.3:30001")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:30004", "127.0.0.1:30002", "127.0.0.1:30003", "127.0.0.1:30005", "10.1.2.3:30001", "[::1]:30006"}
	if !slices.Equal(got, want) {
		t.Errorf("parseClusterNodes = %q, want %q (failing nodes included, handshakes left out)", got, want)
	}

	for name, reply := range map[string]string{
		"NoAddr": "cccccccccccccccccccccccccccccccccccccccc :0@0 master,noaddr - 0 0 7 disconnected\n",
		"Empty":  "",
		"Junk":   "dddddddddddddddddddddddddddddddddddddddd nonsense master - 0 0 1 connected\n",
	} {
		if got, err := parseClusterNodes(reply, "10.1.2.3:30001"); err == nil {
			t.Errorf("%s: parseClusterNodes = %q, want an error", name, got)
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	// Error replies from a real server, as go-redis returns them.
	opt, err := goredis.ParseURL(plugintest.RedisURL(t))
	if err != nil {
		t.Fatal(plugins.Sanitize(err))
	}
	opt.MaxRetries, opt.DisableIdentity = -1, true
	admin := goredis.NewClient(opt)
	defer admin.Close()
	wrong := *opt
	wrong.Username, wrong.Password = "cbtest_nobody", "wrong"
	stranger := goredis.NewClient(&wrong)
	defer stranger.Close()
	wrongPass := stranger.Ping(t.Context()).Err()
	syntax := admin.ACLSetUser(t.Context(), "cb_classify", "+gett").Err()
	noUser := admin.Do(t.Context(), "acl", "dryrun", "cbtest_nobody", "get", "x").Err()

	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for name, tt := range map[string]struct {
		err         error
		unavailable bool
	}{
		"Dial":      {refused, true},
		"EOF":       {io.EOF, true},
		"Wrapped":   {fmt.Errorf("node x: %w", io.ErrUnexpectedEOF), true},
		"PoolTime":  {goredis.ErrPoolTimeout, true},
		"WrongPass": {wrongPass, true},
		"Syntax":    {syntax, false},
		"NoUser":    {noUser, false},
		"Closed":    {goredis.ErrClosed, false},
		"Exists":    {ErrUserExists, false},
		"Canceled":  {context.Canceled, false},
	} {
		if tt.err == nil {
			t.Errorf("%s: the server gave no error", name)
			continue
		}
		got := errors.Is(classify(tt.err), plugins.ErrUnavailable)
		if got != tt.unavailable {
			t.Errorf("%s: classify(%v) is unavailable: %v, want %v", name, tt.err, got, tt.unavailable)
		}
		if !errors.Is(classify(tt.err), tt.err) {
			t.Errorf("%s: classify(%v) no longer matches the error", name, tt.err)
		}
	}
}
