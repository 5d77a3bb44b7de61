package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	"github.com/credbroker/credbroker/plugins"
	pluginv1 "github.com/credbroker/credbroker/proto/credbroker/plugin/v1"
	"github.com/credbroker/credbroker/proto/credbroker/plugin/v1/pluginv1connect"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// counting is a driver that counts its ParseRole calls and fails Check as
// unavailable.
type counting struct {
	parses atomic.Int32
	closed atomic.Bool
}

type spec struct {
	Grant string `yaml:"grant"`
}

func (*counting) Name() string       { return "counting" }
func (*counting) UsernameLimit() int { return 32 }
func (*counting) ParseConnection(decode plugins.Decoder) (*struct{}, error) {
	if decode == nil {
		return nil, errors.New("connection: required")
	}
	var c struct{}
	return &c, decode(&c)
}
func (c *counting) ParseRole(decode plugins.Decoder) (*spec, []string, error) {
	c.parses.Add(1)
	var s spec
	if err := decode(&s); err != nil {
		return nil, nil, err
	}
	return &s, nil, nil
}
func (c *counting) Open(context.Context, *struct{}) (plugins.TypedPlugin[*spec], error) {
	return &countingPlugin{c}, nil
}

type countingPlugin struct{ c *counting }

func (p *countingPlugin) Create(_ context.Context, req plugins.CreateOf[*spec]) (plugins.CreateResponse, error) {
	return plugins.CreateResponse{State: []byte(req.Spec.Grant)}, nil
}
func (p *countingPlugin) Renew(context.Context, plugins.RenewOf[*spec]) (plugins.RenewResponse, error) {
	return plugins.RenewResponse{}, nil
}
func (p *countingPlugin) Revoke(_ context.Context, req plugins.RevokeOf[*spec]) (plugins.RevokeResponse, error) {
	if req.Spec != nil {
		return plugins.RevokeResponse{}, errors.New("revoke got a spec")
	}
	return plugins.RevokeResponse{}, nil
}
func (p *countingPlugin) ListManaged(context.Context) ([]plugins.ManagedUser, error) { return nil, nil }
func (p *countingPlugin) CheckRole(context.Context, *spec) error                     { return nil }
func (p *countingPlugin) Check(context.Context) error {
	return fmt.Errorf("counting: %w", plugins.ErrUnavailable)
}
func (p *countingPlugin) Close() error { p.c.closed.Store(true); return nil }

// serveTest serves d on a unix socket until the test ends and returns a
// gRPC client, as the broker makes one.
func serveTest(t *testing.T, d plugins.Driver) pluginv1connect.PluginServiceClient {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, l, d) }()
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protocols, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return pluginv1connect.NewPluginServiceClient(&http.Client{Transport: tr}, "http://plugin", connect.WithGRPC())
}

func TestServe(t *testing.T) {
	d := &counting{}
	c := serveTest(t, plugins.Typed(d))
	ctx := t.Context()

	hs, err := c.Handshake(ctx, connect.NewRequest(&pluginv1.HandshakeRequest{ProtocolVersions: []uint32{7, 1}}))
	if err != nil || hs.Msg.GetProtocolVersion() != 1 || hs.Msg.GetName() != "counting" || hs.Msg.GetUsernameLimit() != 32 {
		t.Fatalf("Handshake = %v, %v", hs, err)
	}
	_, err = c.Handshake(ctx, connect.NewRequest(&pluginv1.HandshakeRequest{ProtocolVersions: []uint32{2}}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("Handshake offering only 2 = %v, want failed_precondition", err)
	}

	if _, err := c.Check(ctx, connect.NewRequest(&pluginv1.CheckRequest{})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("Check before Open = %v, want failed_precondition", err)
	}
	if _, err := c.Open(ctx, connect.NewRequest(&pluginv1.OpenRequest{Connection: []byte("{}\n")})); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := c.Check(ctx, connect.NewRequest(&pluginv1.CheckRequest{})); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("Check = %v, want unavailable", err)
	}

	role := []byte("grant: read\n")
	pr, err := c.ParseRole(ctx, connect.NewRequest(&pluginv1.ParseRoleRequest{Yaml: role}))
	if err != nil || len(pr.Msg.GetErrors()) > 0 {
		t.Fatalf("ParseRole = %v, %v", pr, err)
	}
	for range 3 {
		resp, err := c.Create(ctx, connect.NewRequest(&pluginv1.CreateRequest{Username: "cb_x", Password: "p", Spec: role}))
		if err != nil || string(resp.Msg.GetState()) != "read" {
			t.Fatalf("Create = %v, %v", resp, err)
		}
	}
	if n := d.parses.Load(); n != 1 {
		t.Errorf("ParseRole ran %d times for one spec, want once (cached by its SHA-256)", n)
	}
	if _, err := c.Create(ctx, connect.NewRequest(&pluginv1.CreateRequest{Spec: []byte("grant: [x]\n")})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("Create with a spec that does not parse = %v, want invalid_argument", err)
	}
	if _, err := c.Revoke(ctx, connect.NewRequest(&pluginv1.RevokeRequest{Username: "cb_x"})); err != nil {
		t.Errorf("Revoke without a spec: %v", err)
	}

	perr, err := c.ParseRole(ctx, connect.NewRequest(&pluginv1.ParseRoleRequest{Yaml: []byte("grant: read\nx: 1\ny: 2\n")}))
	if err != nil {
		t.Fatal(err)
	}
	if got := perr.Msg.GetErrors(); len(got) != 2 || strings.Contains(got[0], "line") {
		t.Errorf("ParseRole with two unknown keys = %q, want two problems without line numbers", got)
	}
	conn, err := c.ParseConnection(ctx, connect.NewRequest(&pluginv1.ParseConnectionRequest{}))
	if err != nil || len(conn.Msg.GetErrors()) != 1 || conn.Msg.GetErrors()[0] != "connection: required" {
		t.Errorf("ParseConnection of a missing section = %v, %v; want the driver's nil-decoder error", conn, err)
	}
}

func TestServeClosesPlugin(t *testing.T) {
	d := &counting{}
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	s := newServer(plugins.Typed(d))
	if _, err := s.Open(ctx, connect.NewRequest(&pluginv1.OpenRequest{Connection: []byte("{}")})); err != nil {
		t.Fatal(err)
	}
	_ = s.close()
	if !d.closed.Load() {
		t.Error("close did not close the plugin")
	}
	cancel()
	if err := serve(ctx, l, plugins.Typed(d)); err != nil {
		t.Errorf("serve with a canceled context = %v, want nil", err)
	}
}

// TestRefusesWithoutCookie runs a program by hand: it says what it is on
// one line and exits 1.
func TestRefusesWithoutCookie(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "probe")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/credbroker/credbroker/test/plugins/probe").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the program run by hand = %v, want exit status 1", err)
	}
	msg := stderr.String()
	if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "plugin: external") || !strings.Contains(msg, `"probe"`) {
		t.Errorf("stderr = %q, want one line saying the broker starts it", msg)
	}
}

func TestToConnect(t *testing.T) {
	tests := map[string]struct {
		err  error
		want connect.Code
	}{
		"Unavailable": {fmt.Errorf("x: %w", plugins.ErrUnavailable), connect.CodeUnavailable},
		"Deadline":    {fmt.Errorf("x: %w", context.DeadlineExceeded), connect.CodeDeadlineExceeded},
		"Canceled":    {context.Canceled, connect.CodeCanceled},
		"Other":       {errors.New("boom"), connect.CodeUnknown},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := toConnect(tc.err)
			if connect.CodeOf(err) != tc.want {
				t.Errorf("code %v, want %v", connect.CodeOf(err), tc.want)
			}
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Message() != tc.err.Error() {
				t.Errorf("message %q, want %q", ce.Message(), tc.err.Error())
			}
		})
	}
}

func TestDecoder(t *testing.T) {
	if decoder(nil) != nil || decoder([]byte(" \n")) != nil {
		t.Error("an empty section gives a decoder; want nil, as the broker gives for a missing one")
	}
	var s spec
	err := decoder([]byte("grant: read\nextra: 1\n"))(&s)
	if err == nil || !strings.Contains(err.Error(), "field extra not found") || strings.Contains(err.Error(), "line 2") {
		t.Errorf("strict decoding = %v, want the unknown key without its line", err)
	}
}
