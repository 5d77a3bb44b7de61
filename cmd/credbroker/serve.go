package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/broker"
)

func newServeCmd() *cobra.Command {
	var configPath, logLevel string
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
			return serve(cmd, cfg, log, configPath)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "path to the config file")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// serve opens the server for cfg and runs it until the command's context is
// cancelled (SIGINT, SIGTERM). With a configPath, SIGHUP re-reads the file
// and its secrets; a bad file is logged and the running config kept.
func serve(cmd *cobra.Command, cfg *broker.Config, log *slog.Logger, configPath string) error {
	ctx := cmd.Context()
	srv, err := broker.New(ctx, cfg, broker.Options{Logger: log})
	if err != nil {
		return err
	}
	defer srv.Close()
	if configPath != "" {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
					reload(ctx, srv, configPath, log)
				}
			}
		}()
	}
	ln, err := listenTCP(cfg.Listen)
	if err != nil {
		return err
	}
	return srv.Serve(ctx, ln)
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
