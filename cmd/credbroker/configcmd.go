package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/broker"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with config files"}
	var strict bool
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a config file as the server would, without starting it (for CI)",
		Long: `Validate a config file as the server would, without starting it: every key,
type, reference and TTL, each plugin's role sections, and the rules that keep
environments apart (owner and environment on every backend, no admin secret or
admin user shared across environments, checks: thresholds; see the README's
Configuration section). All problems, and warnings, are reported at once with
their paths. Secret references are checked for shape,
not resolved, so CI needs no secrets. Exit status 1 when the file is invalid
(or, with --strict, when it has warnings).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := broker.LoadConfig(args[0], drivers)
			if ce, ok := errors.AsType[*broker.ConfigError](err); ok {
				// Everything at once: the warnings of an invalid file too.
				for _, w := range ce.Warnings {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
				}
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, w := range cfg.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			if strict && len(cfg.Warnings) > 0 {
				return fmt.Errorf("%s: %d warnings (--strict)", args[0], len(cfg.Warnings))
			}
			fmt.Fprintf(out, "%s: ok (%d issuers, %d backends, %d roles, %d policies)\n",
				args[0], len(cfg.Issuers), len(cfg.Backends), len(cfg.Roles), len(cfg.Policies))
			if len(cfg.Store.KEK) == 0 {
				fmt.Fprintln(out, "note: store.kek not set: admin secrets are not stored and root rotation is off")
			}
			return nil
		},
	}
	check.Flags().BoolVar(&strict, "strict", false, "treat warnings as errors")
	cmd.AddCommand(check)
	return cmd
}
