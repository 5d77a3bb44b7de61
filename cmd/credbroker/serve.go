package main

import (
	"fmt"
	"log/slog"
	"os"

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
			return serve(cmd, cfg, log)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "path to the config file")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// serve opens the server for cfg and runs it until the command's context is
// cancelled (SIGINT, SIGTERM).
func serve(cmd *cobra.Command, cfg *broker.Config, log *slog.Logger) error {
	ctx := cmd.Context()
	srv, err := broker.New(ctx, cfg, broker.Options{Logger: log})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := listenTCP(cfg.Listen)
	if err != nil {
		return err
	}
	return srv.Serve(ctx, ln)
}
