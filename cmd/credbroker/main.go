// Command credbroker is the credbroker server and its client in one binary,
// like vault or tsh: `credbroker serve` runs the broker, `credbroker creds`
// asks it for a credential. `credbroker --help` lists every command.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/client"
)

// Exit codes scripts can rely on.
const (
	exitError = 1 // the command failed; the message says why
	exitUsage = 2 // the command line was wrong
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

// usageError marks a wrong command line.
type usageError struct{ error }

func run(ctx context.Context, args []string) int {
	root := newRoot()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var ce *connect.Error
	var ue usageError
	var xe exitCodeError
	var opErr *net.OpError
	var te *client.TokenError
	switch {
	case errors.As(err, &xe):
		return xe.code // the command run by exec/connect said why
	case errors.As(err, &opErr) && opErr.Op == "dial":
		fmt.Fprintf(os.Stderr, "credbroker: cannot reach the broker at %s: %v\nIs it running? Set CREDBROKER_ADDR or --addr to where it listens.\n", clientAddr(), opErr.Err)
	case errors.As(err, &te):
		// A local error: the token was never sent.
		fmt.Fprintf(os.Stderr, "credbroker: %v\n", te)
	case errors.As(err, &ce):
		// The server's message is written for the person reading it.
		fmt.Fprintf(os.Stderr, "credbroker: %s: %s\n", ce.Code(), ce.Message())
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "credbroker: %v\nRun '%s --help' for usage.\n", ue.error, cmd.CommandPath())
		return exitUsage
	default:
		fmt.Fprintf(os.Stderr, "credbroker: %v\n", err)
	}
	return exitError
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "credbroker",
		Short:         "Short-lived database and queue credentials for verified workloads",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	clientFlags(root)
	root.AddCommand(
		newServeCmd(),
		newDevCmd(),
		newCredsCmd(),
		newRolesCmd(),
		newWhoAmICmd(),
		newLeaseCmd(),
		newConfigCmd(),
		newExportCmd(),
		newConnectCmd(),
		newExecCmd(),
		newAgentCmd(),
		newLoginCmd(),
		newLogoutCmd(),
		newAdminCmd(),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  noArgs,
			Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "credbroker", version) },
		},
	)
	addCompletions(root)
	return root
}

// noArgs and exactArgs are cobra argument checks that report usage errors.
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError{err}
	}
	return nil
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
