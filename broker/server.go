package broker

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/plugins"
	"github.com/credbroker/credbroker/proto/credbroker/v1/credbrokerv1connect"
)

// maxRequestBytes bounds every request body. Real requests are a few hundred
// bytes; the token rides in a header.
const maxRequestBytes = 64 << 10

// Options are the server's collaborators that do not come from the config file.
type Options struct {
	// Logger receives structured logs; required.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Registerer receives the Prometheus metrics; default a new registry
	// served at /metrics.
	Registry *prometheus.Registry
	// CheckInterval is how often each backend's admin connection is checked;
	// default 30s.
	CheckInterval time.Duration
}

// Server is a running credbroker: the lease store, the plugins, the reaper and
// the HTTP handlers of the Connect services.
type Server struct {
	log      *slog.Logger // the broker component's logger
	baseLog  *slog.Logger // the logger handed to other components
	now      func() time.Time
	store    *leases.Store
	reaper   *leases.Reaper
	rt       atomic.Pointer[runtime]
	svc      *credentialService
	handler  http.Handler
	checkInt time.Duration

	reloadMu  sync.Mutex
	retired   sync.WaitGroup // closing runtimes replaced by Reload
	closing   chan struct{}
	closeOnce sync.Once
}

// New opens everything the config names: it resolves secrets, connects to
// the lease store (applying migrations), opens every backend and loads the
// issuers' keys. Any failure closes what was opened and says what to fix.
func New(ctx context.Context, cfg *Config, opts Options) (_ *Server, err error) {
	log := opts.Logger.With(slog.String("component", "broker"))
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	reg := cmp.Or(opts.Registry, prometheus.NewRegistry())
	s := &Server{log: log, baseLog: opts.Logger, now: now, checkInt: cmp.Or(opts.CheckInterval, 30*time.Second), closing: make(chan struct{})}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	dsn, err := cfg.Store.DSN.Resolve()
	if err != nil {
		return nil, fmt.Errorf("store.dsn: %w", err)
	}
	s.store, err = leases.Open(ctx, leases.Config{DSN: dsn.Reveal(), MaxConns: cfg.Store.MaxConns, ReaperMaxConns: cfg.Store.ReaperMaxConns, Logger: opts.Logger, Now: now})
	if err != nil {
		return nil, fmt.Errorf("lease store: %w", plugins.Sanitize(err, dsn))
	}
	rt, err := openRuntime(ctx, cfg, opts.Logger, now)
	if err != nil {
		return nil, err
	}
	s.rt.Store(rt)
	s.reaper, err = leases.NewReaper(leases.ReaperConfig{
		Store: s.store,
		Plugin: func(backend string) (plugins.Plugin, bool) {
			p, ok := s.rt.Load().plugins[backend]
			return p, ok
		},
		Backends:      func() []string { return s.rt.Load().swept() },
		Interval:      cfg.Reaper.Interval,
		SweepInterval: cfg.Reaper.SweepInterval,
		PendingGrace:  cfg.Reaper.PendingGrace,
		Registerer:    reg,
		Logger:        opts.Logger,
		Now:           now,
	})
	if err != nil {
		return nil, fmt.Errorf("reaper: %w", err)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	s.svc = &credentialService{
		rt:       s.rt.Load,
		store:    s.store,
		reaper:   s.reaper,
		limits:   newLimiter(cfg.Limits.IssueRate, cfg.Limits.IssueBurst),
		requests: newLimiter(cfg.Limits.RequestRate, cfg.Limits.RequestBurst),
		errSlowDown: connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
			"too many requests from this identity (limits.request_rate %g a second, bursts of %d): slow down and retry in a moment",
			cfg.Limits.RequestRate, cfg.Limits.RequestBurst)),
		metrics: newMetrics(reg),
		log:     log,
		now:     now,
	}
	s.handler = s.routes(reg)
	return s, nil
}

func (s *Server) routes(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	opts := []connect.HandlerOption{
		connect.WithInterceptors(&authInterceptor{verifier: func() tokenVerifier { return s.rt.Load().verifier }, svc: s.svc}),
		connect.WithReadMaxBytes(maxRequestBytes),
	}
	mux.Handle(credbrokerv1connect.NewCredentialServiceHandler(s.svc, opts...))
	mux.Handle(credbrokerv1connect.NewAdminServiceHandler(adminService{s.svc}, opts...))
	mux.Handle(grpchealth.NewHandler(&healthChecker{store: s.store}))
	reflector := grpcreflect.NewStaticReflector(credbrokerv1connect.CredentialServiceName,
		credbrokerv1connect.AdminServiceName, grpchealth.HealthV1ServiceName)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return http.MaxBytesHandler(mux, maxRequestBytes)
}

// Handler returns the HTTP handler of every service the server offers.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve runs the reaper, the backend checks and the HTTP server on ln until
// ctx is done, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		Protocols:         new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	cfg := s.rt.Load().cfg
	if cfg.TLS != nil {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		srv.Protocols.SetHTTP2(true)
	} else {
		srv.Protocols.SetUnencryptedHTTP2(true) // h2c, loopback only (checked in config)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{}, 2)
	go func() { _ = s.reaper.Run(ctx); done <- struct{}{} }()
	go func() { s.checkBackends(ctx); done <- struct{}{} }()

	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "") // negotiates h2 by ALPN
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	s.log.Info("serving", slog.String("addr", ln.Addr().String()), slog.Bool("tls", cfg.TLS != nil))

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer stop()
	if serr := srv.Shutdown(shutdownCtx); serr != nil && err == nil {
		err = serr
	}
	<-done
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// checkBackends checks every backend's admin connection periodically and
// exports the result as credbroker_backend_up.
func (s *Server) checkBackends(ctx context.Context) {
	t := time.NewTicker(s.checkInt)
	defer t.Stop()
	for {
		rt := s.rt.Load()
		for _, b := range rt.cfg.Backends {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := rt.plugins[b.Name].Check(cctx)
			cancel()
			up := 1.0
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				up = 0
				s.log.Warn("backend check failed", slog.String("backend", b.Name), slog.String("error", plugins.SanitizeString(err.Error())))
			}
			s.svc.metrics.backendUp.WithLabelValues(b.Name, b.Plugin).Set(up)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close releases the store, the plugins and the key sources, including
// those a reload replaced.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.retired.Wait()
		if rt := s.rt.Load(); rt != nil {
			rt.close(s.log)
		}
		if s.store != nil {
			s.store.Close()
		}
	})
}

// healthChecker reports SERVING while the lease store answers: without it
// nothing can be issued.
type healthChecker struct {
	store *leases.Store
}

func (h *healthChecker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	switch req.Service {
	case "", credbrokerv1connect.CredentialServiceName:
	default:
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q", req.Service))
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := h.store.Ping(ctx); err != nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}
