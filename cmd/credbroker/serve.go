package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/broker"
)

func newServeCmd() *cobra.Command {
	var configPath, logLevel, debugListen string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the broker (JSON logs on stderr)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return usageError{fmt.Errorf("--config is required")}
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usageError{fmt.Errorf("--log-level: %w", err)}
			}
			log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			cfg, err := broker.LoadConfig(configPath, drivers)
			if err != nil {
				return err
			}
			for _, w := range cfg.Warnings {
				log.Warn("config", slog.String("warning", w))
			}
			_, stopDebug, err := startDebug(debugListen, log)
			if err != nil {
				return usageError{err}
			}
			defer stopDebug()
			return serve(cmd.Context(), cfg, log, configPath, serveHooks{})
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "path to the config file")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&debugListen, "debug-listen", "", "loopback host:port to serve Go's profiler on (/debug/pprof/); default: off")
	return cmd
}

// serveHooks are what `credbroker dev` adds to the serve loop; both may be
// nil.
type serveHooks struct {
	// ready is called with the addresses the server listens on (metrics nil
	// without a metrics listener).
	ready func(api, metrics net.Addr)
	// stopped is called once the server stopped serving, before it closes
	// its store and backends, with a context of its own (ctx is cancelled
	// by then). With it, the server remembers the leases it issues, for
	// broker.Server.RevokeIssued.
	stopped func(ctx context.Context, srv *broker.Server)
}

// serve is the one serve loop, of `credbroker serve` and `credbroker dev`:
// it opens the server for cfg, listens on cfg.Listen (and on
// cfg.MetricsListen, when set), calls hooks.ready, and serves until ctx is
// cancelled (SIGINT, SIGTERM), then calls hooks.stopped. With a configPath, SIGHUP
// re-reads the file and its secrets and reloads; a bad file is logged and the
// running config kept. A SIGHUP while the server opens (the store, the
// backends) is kept for when it runs, rather than ending the process.
func serve(ctx context.Context, cfg *broker.Config, log *slog.Logger, configPath string, hooks serveHooks) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var hup chan os.Signal
	if configPath != "" {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	srv, err := broker.New(ctx, cfg, broker.Options{Logger: log, TrackIssued: hooks.stopped != nil})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := listenTCP(cfg.Listen)
	if err != nil {
		return err
	}
	var metricsLn net.Listener
	var metricsAddr net.Addr
	if cfg.MetricsListen != "" {
		// Metrics name every role and backend: they get a port of their
		// own, never the API's.
		if metricsLn, err = listenTCP(cfg.MetricsListen); err != nil {
			ln.Close()
			return fmt.Errorf("metrics_listen: %w", err)
		}
		metricsAddr = metricsLn.Addr()
	}
	reloader := make(chan struct{})
	go func() {
		defer close(reloader)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup: // nil without a configPath: never
				reload(ctx, srv, configPath, log)
			}
		}
	}()
	if hooks.ready != nil {
		hooks.ready(ln.Addr(), metricsAddr)
	}
	err = srv.ServeWithMetrics(ctx, ln, metricsLn)
	cancel()
	<-reloader // no reload runs while the server closes
	if hooks.stopped != nil {
		hooks.stopped(context.WithoutCancel(ctx), srv)
	}
	return err
}

func reload(ctx context.Context, srv *broker.Server, path string, log *slog.Logger) {
	cfg, err := broker.LoadConfig(path, drivers)
	if err == nil {
		err = srv.Reload(ctx, cfg)
	}
	if err != nil {
		log.Error("SIGHUP: config not reloaded; the running config stays in force", slog.String("path", path), slog.String("error", err.Error()))
		return
	}
	for _, w := range cfg.Warnings {
		log.Warn("config", slog.String("warning", w))
	}
}
