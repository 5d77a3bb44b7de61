package sdk

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/credbroker/credbroker/plugins"
	pluginv1 "github.com/credbroker/credbroker/proto/credbroker/plugin/v1"
	"github.com/credbroker/credbroker/proto/credbroker/plugin/v1/pluginv1connect"
	"github.com/credbroker/credbroker/secret"
)

// maxCachedRoles bounds the cache of parsed role specs. A config holds far
// fewer roles; reloads that change them add more, and the cache starts over
// when it is full.
const maxCachedRoles = 1024

// server maps PluginService calls 1:1 onto a driver and the plugin it opened.
type server struct {
	d plugins.Driver

	mu    sync.Mutex
	p     plugins.Plugin   // nil before Open
	roles map[[32]byte]any // parsed role specs by the SHA-256 of their YAML
}

var _ pluginv1connect.PluginServiceHandler = (*server)(nil)

func newServer(d plugins.Driver) *server {
	return &server{d: d, roles: map[[32]byte]any{}}
}

// close closes the plugin, if Open opened one.
func (s *server) close() error {
	s.mu.Lock()
	p := s.p
	s.p = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Close()
}

func (s *server) plugin() (plugins.Plugin, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return nil, errNotOpen
	}
	return s.p, nil
}

// role returns the parsed spec of a role section, parsing it the first time.
func (s *server) role(src []byte) (any, error) {
	sum := sha256.Sum256(src)
	s.mu.Lock()
	spec, ok := s.roles[sum]
	s.mu.Unlock()
	if ok {
		return spec, nil
	}
	spec, _, err := s.d.ParseRole(decoder(src))
	if err != nil {
		return nil, invalid(fmt.Errorf("role spec: %w", err))
	}
	s.remember(sum, spec)
	return spec, nil
}

func (s *server) remember(sum [32]byte, spec any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.roles) >= maxCachedRoles {
		clear(s.roles)
	}
	s.roles[sum] = spec
}

// optionalRole is role for a spec that may be absent (nil: the role is gone).
func (s *server) optionalRole(src []byte) (any, error) {
	if src == nil {
		return nil, nil
	}
	return s.role(src)
}

func (s *server) Handshake(_ context.Context, req *connect.Request[pluginv1.HandshakeRequest]) (*connect.Response[pluginv1.HandshakeResponse], error) {
	if !slices.Contains(req.Msg.GetProtocolVersions(), ProtocolVersion) {
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("this program speaks plugin protocol %d; the broker offers %v", ProtocolVersion, req.Msg.GetProtocolVersions()))
	}
	resp := &pluginv1.HandshakeResponse{
		ProtocolVersion: ProtocolVersion,
		Name:            s.d.Name(),
		UsernameLimit:   uint32(max(0, s.d.UsernameLimit())),
		// connect-go serves Connect over HTTP/1.1 too, which the broker
		// calls with less overhead than gRPC over HTTP/2.
		ConnectHttp1: true,
	}
	if d, ok := s.d.(plugins.Describer); ok {
		resp.Env = d.Describe().Env
	}
	return connect.NewResponse(resp), nil
}

func (s *server) ParseConnection(_ context.Context, req *connect.Request[pluginv1.ParseConnectionRequest]) (*connect.Response[pluginv1.ParseConnectionResponse], error) {
	resp := &pluginv1.ParseConnectionResponse{}
	if _, err := s.d.ParseConnection(decoder(req.Msg.GetYaml())); err != nil {
		resp.Errors = problems(err)
	}
	return connect.NewResponse(resp), nil
}

func (s *server) ParseRole(_ context.Context, req *connect.Request[pluginv1.ParseRoleRequest]) (*connect.Response[pluginv1.ParseRoleResponse], error) {
	src := req.Msg.GetYaml()
	spec, warnings, err := s.d.ParseRole(decoder(src))
	resp := &pluginv1.ParseRoleResponse{Warnings: warnings}
	if err != nil {
		resp.Errors = problems(err)
	} else {
		s.remember(sha256.Sum256(src), spec)
	}
	return connect.NewResponse(resp), nil
}

func (s *server) Open(ctx context.Context, req *connect.Request[pluginv1.OpenRequest]) (*connect.Response[pluginv1.OpenResponse], error) {
	conn, err := s.d.ParseConnection(decoder(req.Msg.GetConnection()))
	if err != nil {
		return nil, invalid(fmt.Errorf("connection: %w", err))
	}
	p, err := plugins.Open(ctx, s.d, conn)
	if err != nil {
		return nil, toConnect(err)
	}
	s.mu.Lock()
	old := s.p
	s.p = p
	s.mu.Unlock()
	if old != nil {
		_ = old.Close() // a second Open replaces the first
	}
	return connect.NewResponse(&pluginv1.OpenResponse{}), nil
}

func (s *server) Create(ctx context.Context, req *connect.Request[pluginv1.CreateRequest]) (*connect.Response[pluginv1.CreateResponse], error) {
	p, err := s.plugin()
	if err != nil {
		return nil, err
	}
	spec, err := s.role(req.Msg.GetSpec())
	if err != nil {
		return nil, err
	}
	resp, err := p.Create(ctx, plugins.CreateRequest{
		Username:  req.Msg.GetUsername(),
		Password:  secret.New(req.Msg.GetPassword()),
		ExpiresAt: timeOf(req.Msg.GetExpiresAt()),
		Role:      req.Msg.GetRole(),
		Spec:      spec,
	})
	if err != nil {
		return nil, toConnect(err)
	}
	c := resp.Credential
	cred := &pluginv1.Credential{
		Username: c.Username,
		Password: c.Password.Reveal(),
		Uri:      c.URI.Reveal(),
		Fields:   c.Fields,
	}
	if c.Env != nil {
		cred.Env = make(map[string]string, len(c.Env))
		for k, v := range c.Env {
			cred.Env[k] = v.Reveal()
		}
	}
	return connect.NewResponse(&pluginv1.CreateResponse{Credential: cred, State: resp.State}), nil
}

func (s *server) Renew(ctx context.Context, req *connect.Request[pluginv1.RenewRequest]) (*connect.Response[pluginv1.RenewResponse], error) {
	p, err := s.plugin()
	if err != nil {
		return nil, err
	}
	spec, err := s.optionalRole(req.Msg.Spec)
	if err != nil {
		return nil, err
	}
	resp, err := p.Renew(ctx, plugins.RenewRequest{
		Username:  req.Msg.GetUsername(),
		Role:      req.Msg.GetRole(),
		Spec:      spec,
		State:     req.Msg.GetState(),
		ExpiresAt: timeOf(req.Msg.GetExpiresAt()),
	})
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pluginv1.RenewResponse{State: resp.State}), nil
}

func (s *server) Revoke(ctx context.Context, req *connect.Request[pluginv1.RevokeRequest]) (*connect.Response[pluginv1.RevokeResponse], error) {
	p, err := s.plugin()
	if err != nil {
		return nil, err
	}
	spec, err := s.optionalRole(req.Msg.Spec)
	if err != nil {
		return nil, err
	}
	if _, err := p.Revoke(ctx, plugins.RevokeRequest{
		Username: req.Msg.GetUsername(),
		Role:     req.Msg.GetRole(),
		Spec:     spec,
		State:    req.Msg.GetState(),
	}); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pluginv1.RevokeResponse{}), nil
}

func (s *server) ListManaged(ctx context.Context, _ *connect.Request[pluginv1.ListManagedRequest]) (*connect.Response[pluginv1.ListManagedResponse], error) {
	p, err := s.plugin()
	if err != nil {
		return nil, err
	}
	users, err := p.ListManaged(ctx)
	if err != nil {
		return nil, toConnect(err)
	}
	resp := &pluginv1.ListManagedResponse{Users: make([]*pluginv1.ManagedUser, len(users))}
	for i, u := range users {
		resp.Users[i] = &pluginv1.ManagedUser{Username: u.Username}
		if !u.CreatedAt.IsZero() {
			resp.Users[i].CreatedAt = timestamppb.New(u.CreatedAt)
		}
	}
	return connect.NewResponse(resp), nil
}

func (s *server) CheckRole(ctx context.Context, req *connect.Request[pluginv1.CheckRoleRequest]) (*connect.Response[pluginv1.CheckRoleResponse], error) {
	p, err := s.plugin()
	if err != nil {
		return nil, err
	}
	spec, err := s.role(req.Msg.GetSpec())
	if err != nil {
		return nil, err
	}
	if err := p.CheckRole(ctx, spec); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pluginv1.CheckRoleResponse{}), nil
}

func (s *server) Check(ctx context.Context, _ *connect.Request[pluginv1.CheckRequest]) (*connect.Response[pluginv1.CheckResponse], error) {
	p, err := s.plugin()
	if err != nil {
		return nil, err
	}
	if err := p.Check(ctx); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pluginv1.CheckResponse{}), nil
}

func (s *server) Warnings(ctx context.Context, _ *connect.Request[pluginv1.WarningsRequest]) (*connect.Response[pluginv1.WarningsResponse], error) {
	p, err := s.plugin()
	if err != nil {
		return nil, err
	}
	resp := &pluginv1.WarningsResponse{}
	if w, ok := p.(plugins.Warner); ok {
		resp.Warnings = w.Warnings(ctx)
	}
	return connect.NewResponse(resp), nil
}

func (s *server) UpgradeState(ctx context.Context, req *connect.Request[pluginv1.UpgradeStateRequest]) (*connect.Response[pluginv1.UpgradeStateResponse], error) {
	p, err := s.plugin()
	if err != nil {
		return nil, err
	}
	spec, err := s.optionalRole(req.Msg.Spec)
	if err != nil {
		return nil, err
	}
	resp := &pluginv1.UpgradeStateResponse{}
	if u, ok := p.(plugins.StateUpgrader); ok {
		resp.State, err = u.UpgradeState(ctx, plugins.UpgradeStateRequest{
			Username: req.Msg.GetUsername(),
			Role:     req.Msg.GetRole(),
			Spec:     spec,
		})
		if err != nil {
			return nil, toConnect(err)
		}
	}
	return connect.NewResponse(resp), nil
}

// timeOf is the time of a timestamp; zero when it is unset.
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
