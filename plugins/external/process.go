package external

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/plugins/sdk"
	pluginv1 "github.com/credbroker/credbroker/proto/credbroker/plugin/v1"
	"github.com/credbroker/credbroker/proto/credbroker/plugin/v1/pluginv1connect"
	"github.com/credbroker/credbroker/secret"
)

// Output of a program.
const (
	// maxLine cuts a line of output the program never ends.
	maxLine = 4 << 10
	// tailLines is how many of its last lines go into the error of a start
	// that failed.
	tailLines = 8
	// outputDrain is how long the output of a program that exited is still
	// read, when a process it started holds its stdout.
	outputDrain = time.Second
)

// namePattern is what a program's declared name may be: a role section's
// key in the broker's config.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// handshake is what a program said about itself.
type handshake struct {
	version uint32
	name    string
	limit   int
	env     []string
	// connectHTTP1 says the program serves Connect over HTTP/1.1 too.
	connectHTTP1 bool
}

// instance is one running process of a program, from its start to its
// exit.
type instance struct {
	path    string
	cmd     *exec.Cmd
	dir     string // the private directory of the socket
	sock    string // the socket's path
	stdin   io.Closer
	tr      *http.Transport
	client  pluginv1connect.PluginServiceClient
	out     *output
	started time.Time
	hs      handshake

	done    chan struct{} // closed when the process has exited
	waitErr error         // how it exited; set before done is closed

	stopOnce sync.Once
}

// openProgram opens the program's file once, refuses it unless it is safe
// (see checkOwner) and its SHA-256 is want, and returns it open: spawn runs
// that open file, not the path again, so what runs is what was hashed even
// if the path is replaced in between.
func openProgram(path, want string) (_ *os.File, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open the program: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
		}
	}()
	if err := checkOwner(path, f); err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("hash the program %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(want) {
		return nil, &ChecksumError{Path: path, Want: strings.ToLower(want), Got: got}
	}
	return f, nil
}

// spawn starts the program exe (what openProgram returned) with env
// (NAME=value) and nothing else of the broker's environment, serving on a
// fresh socket in a fresh private directory.
func spawn(cfg *Config, exe *os.File, env []string, out *output) (_ *instance, err error) {
	protectBroker()
	dir, err := os.MkdirTemp(cfg.SocketDir, "credbroker-plugin-")
	if err != nil {
		return nil, fmt.Errorf("make the socket's directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	sock := filepath.Join(dir, "plugin.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on the plugin's socket: %w", err)
	}
	l.SetUnlinkOnClose(false) // the program holds it from now on
	defer l.Close()
	if err := os.Chmod(sock, 0o600); err != nil {
		return nil, fmt.Errorf("make the plugin's socket private: %w", err)
	}
	f, err := l.File()
	if err != nil {
		return nil, fmt.Errorf("hand the socket to the program: %w", err)
	}
	defer f.Close()

	path := cfg.Command[0]
	cmd := exec.Command(path, cfg.Command[1:]...)
	// Never nil: a nil Env would be the broker's own environment.
	cmd.Env = append(slices.Clip(env), sdk.ProtocolEnv+"="+sdk.ProtocolCookie, sdk.SocketEnv+"="+sock)
	cmd.ExtraFiles = []*os.File{f} // fd 3 == sdk.ListenerFD
	execOpenFile(cmd, exe)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	stdout, stderr := out.stream("stdout"), out.stream("stderr")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = outputDrain
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		_ = stdin.Close()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}

	inst := &instance{
		path:    path,
		cmd:     cmd,
		dir:     dir,
		stdin:   stdin,
		out:     out,
		started: time.Now(),
		done:    make(chan struct{}),
	}
	go func() {
		inst.waitErr = cmd.Wait()
		stdout.flush()
		stderr.flush()
		out.finish()
		close(inst.done)
	}()

	inst.sock = sock
	// The handshake is gRPC over HTTP/2, which every language's gRPC server
	// answers; see useConnectHTTP1 for the calls after it.
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	inst.tr = inst.transport(&protocols)
	inst.client = pluginv1connect.NewPluginServiceClient(&http.Client{Transport: inst.tr}, "http://plugin", connect.WithGRPC())
	return inst, nil
}

// maxIdleConns is how many idle connections to a program are kept: over
// HTTP/1.1, one for each call in flight.
const maxIdleConns = 64

// transport is an HTTP transport that dials the program's socket.
func (inst *instance) transport(protocols *http.Protocols) *http.Transport {
	return &http.Transport{
		Protocols:           protocols,
		MaxIdleConnsPerHost: maxIdleConns,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", inst.sock)
		},
	}
}

// useConnectHTTP1 makes every later call with the Connect protocol over
// HTTP/1.1, for a program that said it serves it: Go's HTTP/2 hands each
// call between more goroutines on both sides, and on a busy machine every
// hand-off costs a wake-up (about 40% of the transport's time per call
// here). Called once, right after the handshake, before the instance is
// shared.
func (inst *instance) useConnectHTTP1() {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	old := inst.tr
	inst.tr = inst.transport(&protocols)
	// No gzip: over a unix socket it only costs time on both sides.
	inst.client = pluginv1connect.NewPluginServiceClient(&http.Client{Transport: inst.tr}, "http://plugin",
		connect.WithAcceptCompression("gzip", nil, nil))
	old.CloseIdleConnections()
}

// handshake performs the version handshake and checks what the program
// says about itself.
func (inst *instance) handshake(ctx context.Context) (handshake, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // a program that exits does not make the handshake wait for its deadline
		select {
		case <-inst.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	resp, err := inst.client.Handshake(ctx, connect.NewRequest(&pluginv1.HandshakeRequest{ProtocolVersions: supported}))
	if err != nil {
		var ce *connect.Error
		wire := errors.As(err, &ce) && connect.IsWireError(err)
		if !wire {
			// The socket closes as the program exits, a moment before the
			// exit is seen: give it that moment, to say why.
			t := time.NewTimer(outputDrain + time.Second)
			select {
			case <-inst.done:
			case <-t.C:
			}
			t.Stop()
		}
		switch {
		case inst.exited():
			return handshake{}, fmt.Errorf("%s exited before the handshake (%s)%s", inst.path, inst.exitReason(), inst.out.tailText())
		case wire && ce.Code() == connect.CodeFailedPrecondition:
			return handshake{}, &ProtocolError{Path: inst.path, Want: supported, Msg: ce.Message()}
		case ctx.Err() != nil:
			return handshake{}, fmt.Errorf("%s did not answer the handshake in time (is it a credbroker plugin program?)%s", inst.path, inst.out.tailText())
		default:
			return handshake{}, fmt.Errorf("handshake with %s: %w%s", inst.path, err, inst.out.tailText())
		}
	}
	m := resp.Msg
	if !slices.Contains(supported, m.GetProtocolVersion()) {
		return handshake{}, &ProtocolError{Path: inst.path, Got: m.GetProtocolVersion(), Want: supported}
	}
	hs := handshake{version: m.GetProtocolVersion(), name: m.GetName(), limit: int(m.GetUsernameLimit()), env: m.GetEnv(), connectHTTP1: m.GetConnectHttp1()}
	if !namePattern.MatchString(hs.name) {
		return handshake{}, fmt.Errorf("%s says its name is %q: a name is lower-case letters, digits, '-' and '_' (it keys the roles' sections)", inst.path, hs.name)
	}
	if hs.limit < sdk.MinUsernameLimit {
		return handshake{}, fmt.Errorf("%s says its username limit is %d: at least %d is needed", inst.path, hs.limit, sdk.MinUsernameLimit)
	}
	return hs, nil
}

// exited reports whether the process has exited.
func (inst *instance) exited() bool {
	select {
	case <-inst.done:
		return true
	default:
		return false
	}
}

// exitReason says how the process exited; call it after done.
func (inst *instance) exitReason() string {
	if inst.waitErr == nil {
		return "exit status 0"
	}
	return inst.waitErr.Error()
}

// stop ends the process: stdin closed and SIGTERM, then SIGKILL after
// timeout. It removes the socket's directory and returns once the process
// is gone. Concurrent and repeated calls wait for the first.
func (inst *instance) stop(timeout time.Duration) {
	inst.stopOnce.Do(func() {
		// Idle connections first: a server shutting down gracefully would
		// otherwise wait for the client to hang up.
		inst.tr.CloseIdleConnections()
		_ = inst.stdin.Close() // the SDK exits on end of file
		if !inst.exited() {
			signalGroup(inst.cmd, terminate)
		}
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-inst.done:
		case <-t.C:
			signalGroup(inst.cmd, kill)
			<-inst.done
		}
		// What the program started and left behind goes with it. The
		// group's id is not reused while a member lives, so this reaches
		// only those, if any.
		signalGroup(inst.cmd, kill)
		inst.tr.CloseIdleConnections()
		_ = os.RemoveAll(inst.dir)
	})
}

// The rate of a program's output in the broker's log: a token bucket per
// instance. A program that writes more (a loop, a hostile program) has the
// excess dropped, counted, and said in one record when lines are logged
// again or the program exits.
const (
	outputRate  = 20  // lines a second, sustained
	outputBurst = 200 // lines at once
)

// output logs a program's output, a record a line, sanitized and rate
// limited, and keeps its last lines (dropped ones too) for the error of a
// failed start.
type output struct {
	log     *slog.Logger
	secrets []secret.Value
	now     func() time.Time

	mu      sync.Mutex
	tail    []string
	tokens  float64
	last    time.Time // when tokens was last refilled
	dropped int       // lines not logged since the last record
}

func newOutput(log *slog.Logger, secrets []secret.Value) *output {
	return &output{log: log, secrets: secrets, now: time.Now, tokens: outputBurst}
}

func (o *output) line(stream string, b []byte) {
	line := plugins.SanitizeString(strings.TrimRight(string(b), "\r"), o.secrets...)
	if line == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tail) == tailLines {
		o.tail = slices.Delete(o.tail, 0, 1)
	}
	o.tail = append(o.tail, line)
	now := o.now()
	if !o.last.IsZero() {
		o.tokens = min(outputBurst, o.tokens+now.Sub(o.last).Seconds()*outputRate)
	}
	o.last = now
	if o.tokens < 1 {
		o.dropped++
		return
	}
	o.tokens--
	o.reportDropped()
	o.log.Info("plugin program output", slog.String("stream", stream), slog.String("line", line))
}

// reportDropped logs how many lines were dropped since the last record, if
// any; o.mu is held.
func (o *output) reportDropped() {
	if o.dropped == 0 {
		return
	}
	o.log.Warn(fmt.Sprintf("%d lines of plugin program output dropped: more than %d a second", o.dropped, outputRate), slog.Int("dropped", o.dropped))
	o.dropped = 0
}

// finish says the lines dropped at the end; called once the program has
// exited and its streams are flushed.
func (o *output) finish() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reportDropped()
}

// tailText is the last lines of output, for an error message.
func (o *output) tailText() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tail) == 0 {
		return ""
	}
	return "; its last output: " + strings.Join(o.tail, " | ")
}

func (o *output) stream(name string) *stream { return &stream{o: o, name: name} }

// stream splits one of a program's output streams into lines. exec writes
// each stream from one goroutine.
type stream struct {
	o    *output
	name string
	buf  []byte
}

func (s *stream) Write(b []byte) (int, error) {
	s.buf = append(s.buf, b...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			break
		}
		s.o.line(s.name, s.buf[:i])
		s.buf = s.buf[i+1:]
	}
	if len(s.buf) > maxLine {
		s.o.line(s.name, s.buf[:maxLine])
		s.buf = s.buf[maxLine:]
	}
	s.buf = slices.Clip(s.buf)
	return len(b), nil
}

// flush logs what is left after the last newline.
func (s *stream) flush() {
	if len(s.buf) > 0 {
		s.o.line(s.name, s.buf)
		s.buf = nil
	}
}
