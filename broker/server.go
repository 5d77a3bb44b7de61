package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
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

// compressMinBytes is the smallest message the server compresses for a
// client that accepts it. Most answers (an issued credential, a lease) are a
// few hundred bytes: gzip saves next to nothing on those, and setting up a
// compressor for each cost more CPU than verifying the caller's token.
const compressMinBytes = 1 << 10

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
	// TrackIssued makes the server remember the id of every lease it
	// issues, so that [Server.RevokeIssued] can end them when it stops:
	// `credbroker dev`. Off by default: leases outlive a broker's process.
	TrackIssued bool
	// SecretsPoll is how often each replica looks for a changed admin
	// password of a backend (rotated by another replica), an abandoned
	// rotation and a rotation that is due; default 2s. Only with store.kek.
	SecretsPoll time.Duration
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
	metrics  http.Handler  // /metrics, served only on metrics_listen
	certs    *certReloader // the TLS material; nil without tls
	checkInt time.Duration
	// secretsPoll is Options.SecretsPoll.
	secretsPoll time.Duration
	// periods are the backends credbroker_root_rotation_period_seconds
	// has a series of.
	periodsMu sync.Mutex
	periods   map[string]bool
	// resyncs are the store checks of failed backend calls
	// (reopenedSince), one at a time per backend.
	resyncs resyncs

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
	s := &Server{log: log, baseLog: opts.Logger, now: now, checkInt: cmp.Or(opts.CheckInterval, 30*time.Second),
		secretsPoll: cmp.Or(opts.SecretsPoll, 2*time.Second), closing: make(chan struct{})}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	dsn, err := cfg.Store.DSN.Resolve()
	if err != nil {
		return nil, fmt.Errorf("store.dsn: %w", err)
	}
	keys, err := openKeyring(cfg.Store.KEK)
	if err != nil {
		return nil, err
	}
	s.store, err = leases.Open(ctx, leases.Config{DSN: dsn.Reveal(), MaxConns: cfg.Store.MaxConns, ReaperMaxConns: cfg.Store.ReaperMaxConns, Logger: opts.Logger, Now: now, Keyring: keys})
	if err != nil {
		return nil, fmt.Errorf("lease store: %w", plugins.Sanitize(err, dsn))
	}
	passwords, err := s.storedPasswords(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rt, err := openRuntime(ctx, cfg, opts.Logger, now, passwords)
	if err != nil {
		return nil, err
	}
	s.rt.Store(rt)
	s.reaper, err = leases.NewReaper(leases.ReaperConfig{
		Store: s.store,
		Plugin: func(backend, role string) (plugins.Plugin, any, bool) {
			p, spec, ok := s.rt.Load().target(backend, role)
			if !ok {
				return nil, nil, false
			}
			return retryRotated{Plugin: p, backend: backend, s: s}, spec, true
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
	// Leases written before contract v2 get their plugin state now, before
	// the first request; what fails is retried at the next start (their
	// revokes derive it themselves meanwhile), so it does not stop the start.
	if _, err := s.reaper.UpgradeStates(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		log.Warn("cannot upgrade the plugin state of leases written before contract v2; the next start tries again",
			slog.String("error", plugins.SanitizeString(err.Error())))
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	s.svc = &credentialService{
		rt:          s.rt.Load,
		store:       s.store,
		reaper:      s.reaper,
		limits:      newLimiter(cfg.Limits.IssueRate, cfg.Limits.IssueBurst),
		requests:    newLimiter(cfg.Limits.RequestRate, cfg.Limits.RequestBurst),
		errSlowDown: errSlowDown(cfg.Limits.RequestRate, cfg.Limits.RequestBurst),
		metrics:     newMetrics(reg),
		log:         log,
		now:         now,
		reopened:    s.reopenedSince,
	}
	if opts.TrackIssued {
		s.svc.issued = &issuedLeases{}
	}
	s.handler = s.routes(reg)
	return s, nil
}

func (s *Server) routes(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	opts := []connect.HandlerOption{
		connect.WithInterceptors(&authInterceptor{verifier: func() tokenVerifier { return s.rt.Load().verifier }, svc: s.svc}),
		connect.WithReadMaxBytes(maxRequestBytes),
		connect.WithCompressMinBytes(compressMinBytes),
	}
	mux.Handle(credbrokerv1connect.NewCredentialServiceHandler(s.svc, opts...))
	mux.Handle(credbrokerv1connect.NewAdminServiceHandler(adminService{s.svc, s}, opts...))
	health := newHealthChecker(s.store, time.Now)
	mux.Handle(grpchealth.NewHandler(health))
	mux.HandleFunc("GET "+ReadyPath, health.serveReady)
	mux.HandleFunc("GET "+LoginConfigPath, s.serveLoginConfig)
	reflector := grpcreflect.NewStaticReflector(credbrokerv1connect.CredentialServiceName,
		credbrokerv1connect.AdminServiceName, grpchealth.HealthV1ServiceName)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	// /metrics names every role and backend: it is served on its own
	// listener (metrics_listen), never on the API port.
	s.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return http.MaxBytesHandler(requireBearer(mux), maxRequestBytes)
}

// requireBearer refuses a call of the credential or admin service that
// carries no bearer token before anything reads its body, so that an
// anonymous caller cannot make the server wait for (or buffer) a body. The
// token itself is verified by the auth interceptor.
func requireBearer(next http.Handler) http.Handler {
	errWriter := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/"+credbrokerv1connect.CredentialServiceName+"/") ||
			strings.HasPrefix(r.URL.Path, "/"+credbrokerv1connect.AdminServiceName+"/") {
			scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
				if r.ProtoMajor == 1 {
					// The body is not read: nor is it waited for.
					w.Header().Set("Connection", "close")
				}
				_ = errWriter.Write(w, r, errMissingToken)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Handler returns the HTTP handler of every service the server offers on
// its API port.
func (s *Server) Handler() http.Handler { return s.handler }

// MetricsHandler returns the Prometheus /metrics handler.
func (s *Server) MetricsHandler() http.Handler { return s.metrics }

// Serve runs the reaper, the backend checks and the HTTP server on ln until
// ctx is done, then shuts down gracefully. When the config sets
// metrics_listen, Serve listens there too and serves /metrics (only).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var metricsLn net.Listener
	if addr := s.rt.Load().cfg.MetricsListen; addr != "" {
		var err error
		if metricsLn, err = net.Listen("tcp", addr); err != nil {
			ln.Close()
			return fmt.Errorf("metrics_listen: %w", err)
		}
	}
	return s.ServeWithMetrics(ctx, ln, metricsLn)
}

// ServeWithMetrics is [Server.Serve] with the metrics listener opened by the
// caller; nil serves no metrics.
func (s *Server) ServeWithMetrics(ctx context.Context, ln, metricsLn net.Listener) (err error) {
	serving := false
	defer func() {
		if !serving { // http.Server closes them once it serves
			ln.Close()
			if metricsLn != nil {
				metricsLn.Close()
			}
		}
	}()
	cfg := s.rt.Load().cfg
	lim := cfg.Limits
	srv := &http.Server{
		// The body's deadline is bodyDeadline's. (http.Server.ReadTimeout
		// would also cancel a long server-streaming response over HTTP/1.1,
		// such as a history export, read_timeout after its request.)
		Handler:           bodyDeadline(s.handler, lim.ReadTimeout),
		ReadHeaderTimeout: min(10*time.Second, lim.ReadTimeout),
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		Protocols:         new(http.Protocols),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: lim.MaxConcurrentStreams,
			// A peer that stops reading its responses is dropped.
			WriteByteTimeout: lim.ReadTimeout,
			// A connection that goes silent is pinged, and closed when the
			// ping is not answered.
			SendPingTimeout: lim.IdleTimeout,
			PingTimeout:     15 * time.Second,
		},
	}
	srv.Protocols.SetHTTP1(true)
	metricsSrv := &http.Server{
		Handler:           metricsMux(s.metrics),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          srv.ErrorLog,
	}
	if cfg.TLS != nil {
		s.reloadMu.Lock() // Reload swaps the material of s.certs
		if s.certs == nil {
			m, err := loadTLS(cfg.TLS)
			if err != nil {
				s.reloadMu.Unlock()
				return err
			}
			s.certs = &certReloader{}
			s.useCerts(m)
		}
		s.reloadMu.Unlock()
		srv.TLSConfig = s.certs.config([]string{"h2", "http/1.1"})
		metricsSrv.TLSConfig = s.certs.config([]string{"http/1.1"})
		srv.Protocols.SetHTTP2(true)
	} else {
		srv.Protocols.SetUnencryptedHTTP2(true) // h2c, loopback only (checked in config)
	}
	ln = limitListener(ln, lim.MaxConnections)
	if metricsLn != nil {
		metricsLn = limitListener(metricsLn, 16) // scrapers, not callers
	}
	serving = true

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{}, 3)
	go func() { _ = s.reaper.Run(ctx); done <- struct{}{} }()
	go func() { s.checkBackends(ctx); done <- struct{}{} }()
	go func() { s.syncAdminSecrets(ctx, s.secretsPoll); done <- struct{}{} }()

	errc := make(chan error, 2)
	serve := func(srv *http.Server, ln net.Listener) {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "") // negotiates h2 by ALPN
		} else {
			errc <- srv.Serve(ln)
		}
	}
	go serve(srv, ln)
	servers := []*http.Server{srv}
	if metricsLn != nil {
		go serve(metricsSrv, metricsLn)
		servers = append(servers, metricsSrv)
		s.log.Info("serving metrics", slog.String("addr", metricsLn.Addr().String()), slog.Bool("tls", cfg.TLS != nil))
	}
	s.log.Info("serving", slog.String("addr", ln.Addr().String()), slog.Bool("tls", cfg.TLS != nil),
		slog.Bool("mtls", cfg.TLS != nil && cfg.TLS.ClientCAFile != ""))

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer stop()
	for _, srv := range servers {
		if serr := srv.Shutdown(shutdownCtx); serr != nil && (err == nil || errors.Is(err, http.ErrServerClosed)) {
			err = serr
		}
	}
	<-done
	<-done
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// bodyDeadline gives every request's body d to arrive, counted from when its
// handler starts (its header has ReadHeaderTimeout), on HTTP/1.1 and per
// stream on HTTP/2: a body trickled a byte at a time cannot hold a goroutine
// for longer. Once the body is read the deadline is lifted, so a long
// response is not cut.
func bodyDeadline(next http.Handler, d time.Duration) http.Handler {
	if d <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			// Nothing to wait for; and on HTTP/1.1 the deadline would end
			// the server's background read, cancelling the request.
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(d)) == nil {
			body := &deadlineBody{ReadCloser: r.Body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
			if r.ProtoMajor == 1 {
				// After a failed body the connection is not reused: the
				// rest of a trickled body is not waited for.
				body.failed = func() { w.Header().Set("Connection", "close") }
			}
			r.Body = body
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline when the body is read to its end.
type deadlineBody struct {
	io.ReadCloser
	once   sync.Once
	lift   func()
	failed func() // nil on HTTP/2
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.once.Do(b.lift)
	case err != nil && b.failed != nil:
		b.failed()
	}
	return n, err
}

// metricsMux serves metrics at /metrics and nothing else.
func metricsMux(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	return mux
}

// useCerts makes m the TLS material of new connections and exports its
// certificate's expiry. The caller holds reloadMu.
func (s *Server) useCerts(m *tlsMaterial) {
	s.certs.cur.Store(m)
	notAfter, err := m.notAfter()
	if err != nil { // loadTLS parsed it already
		s.log.Warn("cannot read the TLS certificate's expiry", slog.String("error", err.Error()))
		return
	}
	s.svc.metrics.tlsNotAfter.WithLabelValues().Set(float64(notAfter.Unix()))
}

// checkStore pings the lease store and exports the answer as
// credbroker_store_up. It reports whether ctx is still live.
func (s *Server) checkStore(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := s.store.Ping(cctx)
	cancel()
	if ctx.Err() != nil {
		return false
	}
	up := 1.0
	if err != nil {
		up = 0
		s.log.Warn("lease store check failed", slog.String("error", plugins.SanitizeString(err.Error())))
	}
	s.svc.metrics.storeUp.Set(up)
	return true
}

// checkBackends checks the lease store and every backend's admin connection
// periodically and exports the results as credbroker_store_up and
// credbroker_backend_up.
func (s *Server) checkBackends(ctx context.Context) {
	t := time.NewTicker(s.checkInt)
	defer t.Stop()
	for {
		if !s.checkStore(ctx) {
			return
		}
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
				s.log.Warn("backend check failed", slog.String("backend", b.Name), slog.String("error", err.Error()))
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
// nothing can be issued. Health needs no token, so the store's answer is
// cached briefly: a flood of anonymous health checks costs one ping per
// healthCacheFor, not one each.
type healthChecker struct {
	store pinger
	now   func() time.Time

	mu      sync.Mutex // held during a ping: callers wait for its answer
	checked time.Time
	serving bool
}

// pinger is the part of leases.Store the health check needs.
type pinger interface {
	Ping(ctx context.Context) error
}

// healthCacheFor is how long a store ping answers health checks.
const healthCacheFor = time.Second

func newHealthChecker(store pinger, now func() time.Time) *healthChecker {
	return &healthChecker{store: store, now: now}
}

func (h *healthChecker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	switch req.Service {
	case "", credbrokerv1connect.CredentialServiceName:
	default:
		return nil, errUnknownService(req.Service)
	}
	if h.storeUp(ctx) {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
}

// ReadyPath answers a plain GET with 200 while the broker can issue (its
// lease store answers) and 503 while it cannot: the gRPC health check's
// answer, for probes that can only GET, such as a Kubernetes httpGet
// readiness probe over TLS (the kubelet's grpc probes speak no TLS). No
// token; cached like the health check.
const ReadyPath = "/readyz"

func (h *healthChecker) serveReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if h.storeUp(r.Context()) {
		fmt.Fprintln(w, "ready")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, "not ready: the lease store does not answer")
}

func (h *healthChecker) storeUp(ctx context.Context) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now := h.now(); !h.checked.IsZero() && now.Sub(h.checked) < healthCacheFor && now.Sub(h.checked) >= 0 {
		return h.serving
	}
	// The ping is not the caller's: one that gives up must not make the
	// store look down to the callers waiting behind it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	h.serving = h.store.Ping(ctx) == nil
	h.checked = h.now()
	return h.serving
}
