package external

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/credbroker/credbroker/plugins"
	pluginv1 "github.com/credbroker/credbroker/proto/credbroker/plugin/v1"
	"github.com/credbroker/credbroker/proto/credbroker/plugin/v1/pluginv1connect"
	"github.com/credbroker/credbroker/secret"
)

// Plugin is an open backend run as a separate program: a [plugins.Plugin]
// whose every call goes to the supervised instance of the program. It
// fails closed: while the program is down (it died, or a restart failed)
// every call returns an error matching [plugins.ErrUnavailable] at once,
// and a supervisor starts it again, with backoff, re-doing the handshake and
// Open.
type Plugin struct {
	d    *Driver
	conn []byte

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the supervisor

	mu      sync.Mutex
	cur     *instance // nil while down
	down    string    // why it is down
	secrets []secret.Value
	closed  bool
}

var (
	_ plugins.Plugin        = (*Plugin)(nil)
	_ plugins.Warner        = (*Plugin)(nil)
	_ plugins.SecretHolder  = (*Plugin)(nil)
	_ plugins.StateUpgrader = (*Plugin)(nil)
	_ plugins.Availability  = (*Plugin)(nil)
)

func open(ctx context.Context, d *Driver, conn []byte) (*Plugin, error) {
	p := &Plugin{d: d, conn: conn}
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	inst, secrets, err := p.start(ctx)
	if err != nil {
		p.cancel()
		return nil, plugins.Sanitize(err, secrets...)
	}
	p.cur, p.secrets = inst, secrets
	p.wg.Add(1)
	go p.supervise(inst)
	return p, nil
}

// start resolves the env, starts an instance and opens the backend in it.
// The secrets are returned on error too, to redact the error with.
func (p *Plugin) start(ctx context.Context) (*instance, []secret.Value, error) {
	env, secrets, err := p.d.resolveEnv()
	if err != nil {
		return nil, secrets, err
	}
	inst, err := p.d.launch(ctx, env, secrets)
	if err != nil {
		return nil, secrets, err
	}
	if _, err := inst.client.Open(ctx, connect.NewRequest(&pluginv1.OpenRequest{Connection: p.conn})); err != nil {
		err = callError(ctx, p.d.cfg.Name, "Open", err, inst)
		inst.stop(p.d.cfg.StopTimeout)
		return nil, secrets, fmt.Errorf("backend %s: open: %w", p.d.cfg.Name, err)
	}
	return inst, secrets, nil
}

// resolveEnv resolves the backend's env: NAME=value lines and the values.
func (d *Driver) resolveEnv() ([]string, []secret.Value, error) {
	env := make([]string, 0, len(d.cfg.Env))
	secrets := make([]secret.Value, 0, len(d.cfg.Env))
	var errs []error
	for name, ref := range d.cfg.Env {
		v, err := ref.Resolve()
		if err != nil {
			errs = append(errs, fmt.Errorf("env.%s: %w", name, err))
			continue
		}
		env = append(env, name+"="+v.Reveal())
		secrets = append(secrets, v)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, secrets, fmt.Errorf("backend %s: %w", d.cfg.Name, err)
	}
	return env, secrets, nil
}

// supervise waits for the running instance to exit and starts it again
// until Close.
func (p *Plugin) supervise(inst *instance) {
	defer p.wg.Done()
	cfg := &p.d.cfg
	log := p.d.logger()
	pause := cfg.RestartMin
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-inst.done:
		}
		// Close cancels, then stops the program: when both are ready, select
		// may pick either, and this exit is Close's, not one to report.
		if p.ctx.Err() != nil {
			return
		}
		up := time.Since(inst.started)
		reason := inst.exitReason() + inst.out.tailText()
		log.Error("the plugin program exited; calls fail as unavailable until it is back", slog.String("exit", reason), slog.Duration("up", up))
		p.mu.Lock()
		p.cur, p.down = nil, "exited: "+inst.exitReason()
		p.mu.Unlock()
		inst.stop(cfg.StopTimeout) // cleans up what it left
		if up >= cfg.RestartMax {
			pause = cfg.RestartMin
		}
		for attempt := 1; ; attempt++ {
			if !p.sleep(pause) {
				return
			}
			pause = min(2*pause, cfg.RestartMax)
			ctx, cancel := context.WithTimeout(p.ctx, cfg.StartTimeout+cfg.CallTimeout)
			next, secrets, err := p.start(ctx)
			cancel()
			if p.ctx.Err() != nil {
				if next != nil {
					next.stop(cfg.StopTimeout)
				}
				return
			}
			if err != nil {
				msg := plugins.SanitizeString(err.Error(), secrets...)
				log.Error("the plugin program did not start again", slog.Int("attempt", attempt), slog.Duration("next_attempt_in", pause), slog.String("error", msg))
				p.mu.Lock()
				p.down = "restart failed: " + msg
				p.mu.Unlock()
				continue
			}
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				next.stop(cfg.StopTimeout)
				return
			}
			p.cur, p.secrets, p.down = next, secrets, ""
			p.mu.Unlock()
			log.Info("the plugin program is back", slog.Int("attempt", attempt))
			inst = next
			break
		}
	}
}

// sleep waits d; false when Close came first.
func (p *Plugin) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// current returns the running instance, or the error that says it is down.
func (p *Plugin) current() (*instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return nil, fmt.Errorf("backend %s: the plugin is closed", p.d.cfg.Name)
	case p.cur == nil:
		return nil, unavailable(p.d.cfg.Name, "is down (%s); the broker is starting it again", p.down)
	case p.cur.exited():
		return nil, unavailable(p.d.cfg.Name, "exited (%s); the broker is starting it again", p.cur.exitReason())
	}
	return p.cur, nil
}

// Available says, without a call to the program, whether it runs: an error
// matching [plugins.ErrUnavailable] while it is down.
func (p *Plugin) Available() error {
	_, err := p.current()
	return err
}

// Secrets returns the resolved env values, which the sanitizing decorator
// redacts from everything the program returns.
func (p *Plugin) Secrets() []secret.Value {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.secrets
}

// Close stops the supervisor and the program (SIGTERM, then SIGKILL after
// StopTimeout) and removes its socket's directory.
func (p *Plugin) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	inst := p.cur
	p.cur = nil
	p.mu.Unlock()
	p.cancel()
	if inst != nil {
		inst.stop(p.d.cfg.StopTimeout)
	}
	p.wg.Wait()
	return nil
}

// spec returns the YAML of a role spec; optional allows nil (the role is
// gone).
func (p *Plugin) spec(v any, optional bool) ([]byte, error) {
	if v == nil && optional {
		return nil, nil
	}
	r, ok := v.(*Role)
	if !ok || r == nil {
		return nil, fmt.Errorf("backend %s: role spec is %T, want *external.Role from ParseRole", p.d.cfg.Name, v)
	}
	return r.yaml, nil
}

// client is the generated client; its method expressions name the calls.
type client = pluginv1connect.PluginServiceClient

// call runs one call on the running instance and turns its error into the
// plugin's.
func call[Req, Resp any](ctx context.Context, p *Plugin, op string, req *Req, rpc func(client, context.Context, *connect.Request[Req]) (*connect.Response[Resp], error)) (*Resp, error) {
	inst, err := p.current()
	if err != nil {
		return nil, err
	}
	resp, err := rpc(inst.client, ctx, connect.NewRequest(req))
	if err != nil {
		return nil, callError(ctx, p.d.cfg.Name, op, err, inst)
	}
	return resp.Msg, nil
}

// Create asks the program to create the user; the credential comes back
// with the state the program returned.
func (p *Plugin) Create(ctx context.Context, req plugins.CreateRequest) (plugins.CreateResponse, error) {
	spec, err := p.spec(req.Spec, false)
	if err != nil {
		return plugins.CreateResponse{}, err
	}
	resp, err := call(ctx, p, "Create", &pluginv1.CreateRequest{
		Username:  req.Username,
		Password:  req.Password.Reveal(),
		ExpiresAt: timestamp(req.ExpiresAt),
		Role:      req.Role,
		Spec:      spec,
	}, client.Create)
	if err != nil {
		return plugins.CreateResponse{}, err
	}
	c := resp.GetCredential()
	cred := plugins.Credential{
		Username: c.GetUsername(),
		Password: secret.New(c.GetPassword()),
		URI:      secret.New(c.GetUri()),
		Fields:   c.GetFields(),
	}
	if env := c.GetEnv(); env != nil {
		cred.Env = make(map[string]secret.Value, len(env))
		for k, v := range env {
			cred.Env[k] = secret.New(v)
		}
	}
	return plugins.CreateResponse{Credential: cred, State: resp.GetState()}, nil
}

// Renew asks the program to move the user's expiry.
func (p *Plugin) Renew(ctx context.Context, req plugins.RenewRequest) (plugins.RenewResponse, error) {
	spec, err := p.spec(req.Spec, true)
	if err != nil {
		return plugins.RenewResponse{}, err
	}
	resp, err := call(ctx, p, "Renew", &pluginv1.RenewRequest{
		Username:  req.Username,
		Role:      req.Role,
		Spec:      spec,
		State:     req.State,
		ExpiresAt: timestamp(req.ExpiresAt),
	}, client.Renew)
	if err != nil {
		return plugins.RenewResponse{}, err
	}
	return plugins.RenewResponse{State: resp.State}, nil
}

// Revoke asks the program to delete the user, with the lease's state.
func (p *Plugin) Revoke(ctx context.Context, req plugins.RevokeRequest) (plugins.RevokeResponse, error) {
	spec, err := p.spec(req.Spec, true)
	if err != nil {
		return plugins.RevokeResponse{}, err
	}
	_, err = call(ctx, p, "Revoke", &pluginv1.RevokeRequest{
		Username: req.Username,
		Role:     req.Role,
		Spec:     spec,
		State:    req.State,
	}, client.Revoke)
	return plugins.RevokeResponse{}, err
}

// ListManaged asks the program for the users this broker made.
func (p *Plugin) ListManaged(ctx context.Context) ([]plugins.ManagedUser, error) {
	resp, err := call(ctx, p, "ListManaged", &pluginv1.ListManagedRequest{}, client.ListManaged)
	if err != nil {
		return nil, err
	}
	users := make([]plugins.ManagedUser, len(resp.GetUsers()))
	for i, u := range resp.GetUsers() {
		users[i].Username = u.GetUsername()
		if u.CreatedAt != nil {
			users[i].CreatedAt = u.GetCreatedAt().AsTime()
		}
	}
	return users, nil
}

// CheckRole asks the program to check a role (what ParseRole returned)
// against the live backend.
func (p *Plugin) CheckRole(ctx context.Context, role any) error {
	spec, err := p.spec(role, false)
	if err != nil {
		return err
	}
	_, err = call(ctx, p, "CheckRole", &pluginv1.CheckRoleRequest{Spec: spec}, client.CheckRole)
	return err
}

// Check asks the program whether its admin connection can still do its
// job.
func (p *Plugin) Check(ctx context.Context) error {
	_, err := call(ctx, p, "Check", &pluginv1.CheckRequest{}, client.Check)
	return err
}

// Warnings returns the program's warnings; one warning saying so when the
// program cannot answer.
func (p *Plugin) Warnings(ctx context.Context) []string {
	resp, err := call(ctx, p, "Warnings", &pluginv1.WarningsRequest{}, client.Warnings)
	if err != nil {
		return []string{"the plugin program did not say its warnings: " + err.Error()}
	}
	return resp.GetWarnings()
}

// UpgradeState asks the program for the state of a lease written before
// contract v2.
func (p *Plugin) UpgradeState(ctx context.Context, req plugins.UpgradeStateRequest) ([]byte, error) {
	spec, err := p.spec(req.Spec, true)
	if err != nil {
		return nil, err
	}
	resp, err := call(ctx, p, "UpgradeState", &pluginv1.UpgradeStateRequest{Username: req.Username, Role: req.Role, Spec: spec}, client.UpgradeState)
	if err != nil {
		return nil, err
	}
	return resp.GetState(), nil
}

// timestamp is t on the wire; unset for the zero time.
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
