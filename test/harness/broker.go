package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/credbroker/credbroker/client"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
	"github.com/credbroker/credbroker/proto/credbroker/v1/credbrokerv1connect"
)

// ListenPlaceholder is replaced, in a config given to [StartBroker], by the
// loopback address the broker is to listen on.
const ListenPlaceholder = "{{LISTEN}}"

// MetricsListenPlaceholder is replaced, in a config given to [StartBroker],
// by a free loopback address for metrics_listen; [Broker.MetricsAddr] is
// its base URL.
const MetricsListenPlaceholder = "{{METRICS_LISTEN}}"

// Timeouts of the broker's life cycle.
const (
	// readyTimeout bounds start-up: migrations, backends, issuers, listening.
	readyTimeout = time.Minute
	// stopTimeout is how long a SIGTERM-ed broker may take to shut down
	// before it is killed.
	stopTimeout = 20 * time.Second
	// callTimeout bounds one raw HTTP call.
	callTimeout = time.Minute
)

// LogsEnv set to "1" prints every broker's logs when its test ends, even when
// the test passed.
const LogsEnv = "CREDBROKER_TEST_BROKER_LOGS"

// startAttempts is how often StartBroker tries again with another port when
// the one it picked was taken in the meantime.
const startAttempts = 3

// Options are what [StartBrokerWith] starts a broker with.
type Options struct {
	// Config is the YAML config; {{LISTEN}} is replaced by the address.
	Config string
	// Env is added to the test process's environment, e.g. the variables
	// the config's env: references name.
	Env []string
	// LogLevel is passed as --log-level; default "debug", so the secret
	// check covers the chattiest logs.
	LogLevel string
	// HTTPClient, when set, is the client of the health checks and of
	// [Broker.Call], and Addr is https://: for a config with tls.
	HTTPClient *http.Client
	// Binary is the credbroker binary to run; default [Binary]'s. An
	// upgrade test runs a [ReleaseBinary] first, then this module's with
	// [Broker.Upgrade].
	Binary string
}

// Broker is a `credbroker serve` process started for a test.
type Broker struct {
	// Addr is the base URL, http://127.0.0.1:PORT (https:// with
	// Options.HTTPClient).
	Addr string
	// MetricsAddr is the base URL of metrics_listen when the config has
	// {{METRICS_LISTEN}}, else "".
	MetricsAddr string
	// ConfigPath is the config file the broker runs with.
	ConfigPath string

	listen   string
	env      []string
	logLevel string
	bin      string
	logs     *syncBuffer
	http     *http.Client

	mu      sync.Mutex
	proc    *process
	secrets []string
	starts  int
}

// process is one run of the binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait returned
	err  error         // what cmd.Wait returned; read after done
}

// StartBroker writes configYAML (with {{LISTEN}} replaced by a free loopback
// port) to a file, runs `credbroker serve --config FILE` with env added to
// the environment, and waits until its gRPC health check reports SERVING.
// The broker is stopped (SIGTERM, then SIGKILL after a grace period) when the
// test ends, and its logs are then checked for secrets and data races.
func StartBroker(t testing.TB, configYAML string, env ...string) *Broker {
	t.Helper()
	return StartBrokerWith(t, Options{Config: configYAML, Env: env})
}

// StartBrokerWith is [StartBroker] with every option.
func StartBrokerWith(t testing.TB, opts Options) *Broker {
	t.Helper()
	b := &Broker{
		ConfigPath: filepath.Join(t.TempDir(), "credbroker.yaml"),
		env:        opts.Env,
		logLevel:   opts.LogLevel,
		bin:        opts.Binary,
		logs:       &syncBuffer{},
		http:       &http.Client{Timeout: callTimeout},
	}
	scheme := "http://"
	if opts.HTTPClient != nil {
		b.http, scheme = opts.HTTPClient, "https://"
	}
	if b.logLevel == "" {
		b.logLevel = "debug"
	}
	if b.bin == "" {
		b.bin = Binary(t)
	}
	t.Cleanup(func() { b.finish(t) })
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		b.listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		b.Addr = scheme + b.listen
		cfg := strings.ReplaceAll(opts.Config, ListenPlaceholder, b.listen)
		if strings.Contains(cfg, MetricsListenPlaceholder) {
			metrics := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
			b.MetricsAddr = scheme + metrics
			cfg = strings.ReplaceAll(cfg, MetricsListenPlaceholder, metrics)
		}
		if err := os.WriteFile(b.ConfigPath, []byte(cfg), 0o600); err != nil {
			t.Fatalf("harness: write config: %v", err)
		}
		offset := b.logs.Len()
		err := b.start()
		if err == nil {
			return b
		}
		if attempt < startAttempts && strings.Contains(b.logs.From(offset), "address already in use") {
			t.Logf("harness: port %d was taken, trying another", port)
			continue
		}
		t.Fatalf("harness: broker did not start: %v (its logs follow)", err)
	}
}

// freePort returns a loopback TCP port nobody was listening on a moment ago.
// (The binary does not accept port 0, so the harness picks one.)
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("harness: find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs the binary and waits until it serves, or exits, or readyTimeout
// passes.
func (b *Broker) start() error {
	b.mu.Lock()
	if b.proc != nil {
		b.mu.Unlock()
		return errors.New("the broker is already running")
	}
	b.starts++
	fmt.Fprintf(b.logs, "==== harness: start #%d of credbroker serve on %s ====\n", b.starts, b.listen)
	mark := b.logs.Len() // what the process prints comes after
	cmd := exec.Command(b.bin, "serve", "--config", b.ConfigPath, "--log-level", b.logLevel)
	cmd.Env = append(os.Environ(), b.env...)
	cmd.Stdout, cmd.Stderr = b.logs, b.logs
	if err := cmd.Start(); err != nil {
		b.mu.Unlock()
		return fmt.Errorf("start %s: %w", b.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	b.proc = p
	b.mu.Unlock()

	// Ready is SERVING from this process: health answers and the process
	// logged its listen address. (Another test's broker could have taken
	// the port and be the one answering.) Should the log line ever change,
	// a process that stays up while health answers for a while counts too.
	health := grpchealth.NewClient(b.http, b.Addr)
	deadline := time.Now().Add(readyTimeout)
	var servingSince time.Time
	for {
		select {
		case <-p.done:
			b.mu.Lock()
			b.proc = nil
			b.mu.Unlock()
			return fmt.Errorf("credbroker serve exited during start-up: %v", p.err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := health.Check(ctx, &grpchealth.CheckRequest{})
		cancel()
		if err == nil && resp.Status == grpchealth.StatusServing {
			if servingSince.IsZero() {
				servingSince = time.Now()
			}
			if strings.Contains(b.logs.From(mark), b.listen) || time.Since(servingSince) > 10*time.Second {
				return nil
			}
		} else {
			servingSince = time.Time{}
		}
		if time.Now().After(deadline) {
			b.Kill()
			return fmt.Errorf("not serving after %s (last health check: %v)", readyTimeout, err)
		}
		select {
		case <-p.done:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Logs returns everything the broker has printed so far, over all its runs.
func (b *Broker) Logs() string { return b.logs.String() }

// Signal sends sig to the running broker (SIGHUP reloads its config).
func (b *Broker) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	b.mu.Lock()
	p := b.proc
	b.mu.Unlock()
	if p == nil {
		t.Fatal("harness: Signal: the broker is not running")
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("harness: signal %v: %v", sig, err)
	}
}

// Kill sends SIGKILL to the broker and waits for it to exit. It does
// nothing when the broker is not running.
func (b *Broker) Kill() {
	b.mu.Lock()
	p := b.proc
	b.proc = nil
	b.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	fmt.Fprintf(b.logs, "==== harness: killed with SIGKILL ====\n")
}

// Stop sends SIGTERM and waits for the broker to exit, killing it after a
// grace period. It returns the exit error (nil for a clean exit); it does
// nothing and returns nil when the broker is not running.
func (b *Broker) Stop() error {
	b.mu.Lock()
	p := b.proc
	b.proc = nil
	b.mu.Unlock()
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		fmt.Fprintf(b.logs, "==== harness: stopped with SIGTERM: %v ====\n", p.err)
		return p.err
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("did not exit within %s of SIGTERM; killed", stopTimeout)
	}
}

// Restart starts the broker again on the same port with the same config and
// environment, stopping it first if it is running, and waits until it serves.
func (b *Broker) Restart(t testing.TB) {
	t.Helper()
	if err := b.Stop(); err != nil {
		t.Errorf("harness: stop before restart: %v", err)
	}
	if err := b.start(); err != nil {
		t.Fatalf("harness: broker did not restart: %v (its logs follow)", err)
	}
}

// Upgrade stops the broker (SIGTERM) and starts binary in its place, on the
// same port with the same config and environment, and waits until it
// serves: a deployment moving to a new release. The logs of both runs are
// checked when the test ends.
func (b *Broker) Upgrade(t testing.TB, binary string) {
	t.Helper()
	if err := b.Stop(); err != nil {
		t.Errorf("harness: stop before upgrade: %v", err)
	}
	b.mu.Lock()
	b.bin = binary
	b.mu.Unlock()
	fmt.Fprintf(b.logs, "==== harness: upgrade to %s ====\n", binary)
	if err := b.start(); err != nil {
		t.Fatalf("harness: the broker did not start after the upgrade: %v (its logs follow)", err)
	}
}

// finish stops the broker at the end of the test and checks its logs.
func (b *Broker) finish(t testing.TB) {
	if err := b.Stop(); err != nil {
		t.Errorf("harness: the broker did not shut down cleanly on SIGTERM: %v", err)
	}
	logs := b.Logs()
	b.checkSecrets(t, logs)
	if strings.Contains(logs, "WARNING: DATA RACE") {
		t.Errorf("harness: the broker reported a data race")
	}
	if strings.Contains(logs, "panic:") {
		t.Errorf("harness: the broker panicked")
	}
	if t.Failed() || os.Getenv(LogsEnv) == "1" {
		t.Logf("harness: broker logs:\n%s", tail(logs, 256<<10))
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…(" + strconv.Itoa(len(s)-n) + " bytes cut)…\n" + s[len(s)-n:]
}

// Client returns a Go client of the broker that sends token with every call.
// Credentials it receives are remembered for the end-of-test secret check.
func (b *Broker) Client(token string) *client.Client {
	return client.New(b.Addr, client.StaticToken(token), connect.WithInterceptors(recorder{b}))
}

// ConnectClient returns a CredentialService client over httpClient with opts
// (connect.WithGRPC() for gRPC, say) that sends token with every call. Like
// [Broker.Client], it remembers the credentials it receives.
func (b *Broker) ConnectClient(token string, httpClient connect.HTTPClient, opts ...connect.ClientOption) credbrokerv1connect.CredentialServiceClient {
	opts = append([]connect.ClientOption{connect.WithInterceptors(bearer(token), recorder{b})}, opts...)
	return credbrokerv1connect.NewCredentialServiceClient(httpClient, b.Addr, opts...)
}

// bearer sets "Authorization: Bearer <token>" on unary calls.
func bearer(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}
}

// recorder notes the secrets of every IssueCredential response.
type recorder struct{ b *Broker }

func (r recorder) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		resp, err := next(ctx, req)
		if err == nil {
			if m, ok := resp.Any().(*credbrokerv1.IssueCredentialResponse); ok {
				c := m.GetCredential()
				r.b.Track(c.GetPassword(), c.GetUri())
				for _, v := range c.GetEnv() {
					if v == c.GetPassword() {
						continue
					}
					if strings.Contains(v, c.GetPassword()) {
						r.b.Track(v)
					}
				}
			}
		}
		return resp, err
	}
}

func (r recorder) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (r recorder) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// CredentialService is the Connect path prefix of credbroker.v1.CredentialService.
const CredentialService = "/credbroker.v1.CredentialService/"

// Call POSTs body as Connect JSON to CredentialService/<method>, as curl
// would, with "Authorization: Bearer token" unless token is empty. body is
// marshalled to JSON, except a string or []byte, which is sent as is (nil
// sends {}). It returns the HTTP status and the decoded JSON response (for an
// error, {"code": …, "message": …}). Credentials in the response are
// remembered for the end-of-test secret check.
func (b *Broker) Call(t testing.TB, token, method string, body any) (status int, resp map[string]any) {
	t.Helper()
	return b.CallPath(t, token, CredentialService+method, body)
}

// CallPath is [Broker.Call] for any path, e.g. another service's.
func (b *Broker) CallPath(t testing.TB, token, path string, body any) (status int, resp map[string]any) {
	t.Helper()
	var payload []byte
	switch v := body.(type) {
	case nil:
		payload = []byte("{}")
	case string:
		payload = []byte(v)
	case []byte:
		payload = v
	default:
		var err error
		if payload, err = json.Marshal(v); err != nil {
			t.Fatalf("harness: marshal request: %v", err)
		}
	}
	req, err := http.NewRequest(http.MethodPost, b.Addr+path, bytes.NewReader(payload))
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := b.http.Do(req)
	if err != nil {
		t.Fatalf("harness: POST %s: %v", path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("harness: read the response of %s: %v", path, err)
	}
	resp = map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &resp); err != nil {
			t.Fatalf("harness: POST %s: HTTP %d with a body that is not JSON: %v\n%s", path, res.StatusCode, err, raw)
		}
	}
	if cred, ok := resp["credential"].(map[string]any); ok {
		for _, k := range []string{"password", "uri"} {
			if s, ok := cred[k].(string); ok {
				b.Track(s)
			}
		}
	}
	return res.StatusCode, resp
}

// CLI runs the credbroker binary as a client of this broker: CREDBROKER_ADDR
// points at it and CREDBROKER_TOKEN is token (unless empty). Passwords and
// URIs in its output are remembered for the end-of-test secret check.
func (b *Broker) CLI(t testing.TB, token string, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	env := []string{"CREDBROKER_ADDR=" + b.Addr, "CREDBROKER_TOKEN_FILE=", "CREDBROKER_TOKEN=" + token}
	stdout, stderr, exitCode = RunCLI(t, env, args...)
	for _, re := range cliSecrets {
		for _, m := range re.FindAllStringSubmatch(stdout, -1) {
			b.Track(m[1])
		}
	}
	return stdout, stderr, exitCode
}

// cliSecrets find the secrets in the output of `credbroker creds`, in each of
// its formats.
var cliSecrets = []*regexp.Regexp{
	regexp.MustCompile(`"password":\s*"([^"]+)"`),
	regexp.MustCompile(`(?m)^\s*password:\s+(\S+)$`),  // the table block and yaml
	regexp.MustCompile(`(?m)^\s*uri:\s+(\S+://\S+)$`), // the table block and yaml
	regexp.MustCompile(`"uri":\s*"([^"]+)"`),
	regexp.MustCompile(`(?:PGPASSWORD|REDISCLI_AUTH|MYSQL_PWD|RABBITMQ_PASSWORD)='([^']+)'`),
	regexp.MustCompile(`(?:REDIS_URL|AMQP_URL)='([^']+)'`),
	regexp.MustCompile(`(?m)^((?:postgres(?:ql)?|rediss?|mysql|amqps?)://\S+)$`),
}

// Track adds secrets to those the broker's logs must never contain; they are
// checked when the test ends. Empty strings are ignored.
func (b *Broker) Track(secrets ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range secrets {
		if s != "" {
			b.secrets = append(b.secrets, s)
		}
	}
}

// Secrets returns how many secrets are tracked.
func (b *Broker) Secrets() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.secrets)
}

// AssertNoSecrets fails the test if the logs so far contain any of secrets,
// or any secret tracked already, and tracks secrets for the end-of-test
// check.
func (b *Broker) AssertNoSecrets(t testing.TB, secrets ...string) {
	t.Helper()
	b.Track(secrets...)
	b.checkSecrets(t, b.Logs())
}

func (b *Broker) checkSecrets(t testing.TB, logs string) {
	t.Helper()
	b.mu.Lock()
	secrets := append([]string(nil), b.secrets...)
	b.mu.Unlock()
	leaked := 0
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			leaked++
			t.Errorf("harness: the broker's logs contain an issued secret (%s…, %d bytes)", s[:min(len(s), 4)], len(s))
		}
	}
	if leaked == 0 && len(secrets) > 0 {
		t.Logf("harness: none of %d issued secrets is in %d bytes of broker logs", len(secrets), len(logs))
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use: the broker's stdout
// and stderr are copied into it while tests read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// Len returns how many bytes were written.
func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Len()
}

// From returns what was written from byte offset on.
func (s *syncBuffer) From(offset int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.buf.Bytes()[offset:])
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
