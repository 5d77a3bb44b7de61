package external

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/credbroker/credbroker/plugins"
	pluginv1 "github.com/credbroker/credbroker/proto/credbroker/plugin/v1"
	"github.com/credbroker/credbroker/secret"
)

// Driver is a backend run as a separate program, as the broker sees it: a
// [plugins.Driver] whose every method asks the program. Its name and
// username limit are what the program said in the handshake; ParseConnection
// and ParseRole validate through a short-lived instance of the program that
// gets none of the backend's env; Open starts the long-running, supervised
// instance.
type Driver struct {
	cfg Config
	log atomic.Pointer[slog.Logger]

	hsMu sync.Mutex
	hs   *handshake // the first handshake; every later start must agree

	valMu    sync.Mutex
	val      *instance // the validation instance, while it runs
	valBusy  int
	valTimer *time.Timer
	stopping sync.WaitGroup // idle stops under way
}

var (
	_ plugins.Driver    = (*Driver)(nil)
	_ plugins.Describer = (*Driver)(nil)
)

// New returns the driver of the program cfg describes. It validates cfg
// (every problem a [*FieldError]) but starts nothing: the first call that
// needs the program does.
func New(cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	cfg.Command = append([]string(nil), cfg.Command...)
	d := &Driver{cfg: cfg}
	d.SetLogger(cfg.Logger)
	return d, nil
}

// SetLogger sends the program's output and the supervisor's events to log
// from now on; nil discards them.
func (d *Driver) SetLogger(log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d.log.Store(log.With(slog.String("component", "plugin"), slog.String("backend", d.cfg.Name)))
}

func (d *Driver) logger() *slog.Logger { return d.log.Load() }

// Handshake starts the validation instance, unless it runs, so that Name,
// UsernameLimit and Describe answer. Its error says why the program cannot
// run: a [*ChecksumError], a [*ProtocolError], or a start that failed.
func (d *Driver) Handshake(ctx context.Context) error {
	return d.validate(ctx, func(*instance) error { return nil })
}

// handshake returns the first handshake, starting the program if none was
// made yet.
func (d *Driver) handshake() (handshake, error) {
	d.hsMu.Lock()
	hs := d.hs
	d.hsMu.Unlock()
	if hs != nil {
		return *hs, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.StartTimeout)
	defer cancel()
	if err := d.Handshake(ctx); err != nil {
		d.logger().Error("the plugin program cannot start", slog.String("error", err.Error()))
		return handshake{}, err
	}
	d.hsMu.Lock()
	defer d.hsMu.Unlock()
	return *d.hs, nil
}

// Name returns the name the program declared (`mqtt`), the key of the role
// section it parses. The first call starts the program (the validation
// instance) to ask it. [plugins.Driver] has no room for an error here, so
// when the program cannot start Name logs why and returns "": callers that
// need the reason call [Driver.Handshake] first, which returns it (the
// broker's config parser does).
func (d *Driver) Name() string {
	hs, _ := d.handshake()
	return hs.name
}

// UsernameLimit returns the username limit the program declared. Like
// [Driver.Name] it may start the program, and returns 0, with the error
// logged, when the program cannot start: call [Driver.Handshake] first for
// the error.
func (d *Driver) UsernameLimit() int {
	hs, _ := d.handshake()
	return hs.limit
}

// Describe returns the names of the credential's variables the program
// declared. The rest of [plugins.Metadata] (clients, demo) stays with
// in-process drivers. Like [Driver.Name] it may start the program, and
// returns an empty Metadata, with the error logged, when the program cannot
// start: call [Driver.Handshake] first for the error.
func (d *Driver) Describe() plugins.Metadata {
	hs, _ := d.handshake()
	return plugins.Metadata{Env: hs.env}
}

// launch starts an instance of the program and performs the handshake.
func (d *Driver) launch(ctx context.Context, env []string, secrets []secret.Value) (*instance, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.StartTimeout)
	defer cancel()
	exe, err := openProgram(d.cfg.Command[0], d.cfg.SHA256)
	if err != nil {
		return nil, err
	}
	inst, err := spawn(&d.cfg, exe, env, newOutput(d.logger(), secrets))
	_ = exe.Close() // the program holds it from now on
	if err != nil {
		return nil, err
	}
	hs, err := inst.handshake(ctx)
	if err != nil {
		inst.stop(d.cfg.StopTimeout)
		return nil, err
	}
	inst.hs = hs
	if hs.connectHTTP1 {
		inst.useConnectHTTP1()
	}
	d.hsMu.Lock()
	defer d.hsMu.Unlock()
	if d.hs == nil {
		d.hs = &hs
	} else if d.hs.name != hs.name || d.hs.limit != hs.limit {
		inst.stop(d.cfg.StopTimeout)
		return nil, fmt.Errorf("%s now says it is %q with username limit %d; it said %q and %d before", inst.path, hs.name, hs.limit, d.hs.name, d.hs.limit)
	}
	return inst, nil
}

// validate runs fn with the validation instance, starting it if needed.
// The instance stops after IdleTimeout unused, or at Close.
func (d *Driver) validate(ctx context.Context, fn func(*instance) error) error {
	inst, err := d.acquire(ctx)
	if err != nil {
		return err
	}
	defer d.release()
	return fn(inst)
}

func (d *Driver) acquire(ctx context.Context) (*instance, error) {
	d.valMu.Lock()
	defer d.valMu.Unlock()
	if d.valTimer != nil {
		d.valTimer.Stop()
		d.valTimer = nil
	}
	if d.val != nil && d.val.exited() {
		d.logger().Warn("the plugin program that validates the config exited", slog.String("exit", d.val.exitReason()))
		d.val.stop(d.cfg.StopTimeout) // it exited: this only cleans up
		d.val = nil
	}
	if d.val == nil {
		// No env: validation needs no secret, and `config check` resolves
		// none.
		inst, err := d.launch(ctx, nil, nil)
		if err != nil {
			return nil, err
		}
		d.val = inst
	}
	d.valBusy++
	return d.val, nil
}

func (d *Driver) release() {
	d.valMu.Lock()
	defer d.valMu.Unlock()
	d.valBusy--
	if d.valBusy == 0 && d.val != nil {
		inst := d.val
		d.valTimer = time.AfterFunc(d.cfg.IdleTimeout, func() { d.stopIdle(inst) })
	}
}

func (d *Driver) stopIdle(inst *instance) {
	d.valMu.Lock()
	if d.val != inst || d.valBusy > 0 {
		d.valMu.Unlock()
		return
	}
	d.val, d.valTimer = nil, nil
	d.stopping.Add(1)
	d.valMu.Unlock()
	defer d.stopping.Done()
	inst.stop(d.cfg.StopTimeout)
}

// Close stops the instance that validates configuration, if it runs. It
// does not touch the plugins Open returned, and the driver stays usable.
func (d *Driver) Close() error {
	d.valMu.Lock()
	inst := d.val
	d.val = nil
	if d.valTimer != nil {
		d.valTimer.Stop()
		d.valTimer = nil
	}
	d.valMu.Unlock()
	if inst != nil {
		inst.stop(d.cfg.StopTimeout)
	}
	d.stopping.Wait()
	return nil
}

// Connection is what ParseConnection returns: the `connection:` section as
// YAML, as the program accepted it.
type Connection struct{ yaml []byte }

// Role is what ParseRole returns: the role's section as YAML, as the
// program accepted it.
type Role struct{ yaml []byte }

// ParseConnection sends the `connection:` section to the program, which
// decodes and validates it strictly. A program that cannot start is an
// error too.
func (d *Driver) ParseConnection(decode plugins.Decoder) (any, error) {
	src, err := section(decode)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.CallTimeout)
	defer cancel()
	var problems []string
	err = d.validate(ctx, func(inst *instance) error {
		resp, err := inst.client.ParseConnection(ctx, connect.NewRequest(&pluginv1.ParseConnectionRequest{Yaml: src}))
		if err != nil {
			return callError(ctx, d.cfg.Name, "ParseConnection", err, inst)
		}
		problems = resp.Msg.GetErrors()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return &Connection{yaml: src}, nil
}

// ParseRole sends a role's section to the program, which decodes and
// validates it strictly.
func (d *Driver) ParseRole(decode plugins.Decoder) (any, []string, error) {
	src, err := section(decode)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.CallTimeout)
	defer cancel()
	var resp *pluginv1.ParseRoleResponse
	err = d.validate(ctx, func(inst *instance) error {
		r, err := inst.client.ParseRole(ctx, connect.NewRequest(&pluginv1.ParseRoleRequest{Yaml: src}))
		if err != nil {
			return callError(ctx, d.cfg.Name, "ParseRole", err, inst)
		}
		resp = r.Msg
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(resp.GetErrors()) > 0 {
		return nil, resp.GetWarnings(), errors.New(strings.Join(resp.GetErrors(), "\n"))
	}
	return &Role{yaml: src}, resp.GetWarnings(), nil
}

// Open starts the long-running instance of the program with the backend's
// env, asks it to open the backend with connection (what ParseConnection
// returned) and supervises it: while it is down, every call fails with an
// error matching [plugins.ErrUnavailable], and it is started again with
// backoff. Callers use [plugins.Open].
func (d *Driver) Open(ctx context.Context, connection any) (plugins.Plugin, error) {
	c, ok := connection.(*Connection)
	if !ok || c == nil {
		return nil, fmt.Errorf("backend %s: open: connection is %T, want *external.Connection from ParseConnection", d.cfg.Name, connection)
	}
	return open(ctx, d, c.yaml)
}
