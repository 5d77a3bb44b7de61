package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/credbroker/credbroker/client"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

func newExecCmd() *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "exec ROLE -- COMMAND [ARGS…]",
		Short: "Run a command with a fresh credential in its environment; revoke it when the command ends",
		Long: `Issue a credential for ROLE, run COMMAND with the credential's variables
(PGHOST … PGPASSWORD, REDISCLI_AUTH, MYSQL_PWD …) and CREDBROKER_LEASE_ID added to
its environment, renew the lease while it runs, and revoke it when the command
exits. The exit status is the command's. The command does not get your identity
token: CREDBROKER_TOKEN, CREDBROKER_TOKEN_FILE and the like are removed from its
environment.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || cmd.ArgsLenAtDash() != 1 {
				return usageError{errors.New("usage: credbroker exec ROLE -- COMMAND [ARGS…]")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWithCredential(cmd, args[0], ttl, func(map[string]string, string) (launch, error) { return launch{argv: args[1:]}, nil })
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "lease lifetime between renewals (default: the role's default_ttl)")
	return cmd
}

func newConnectCmd() *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "connect ROLE [-- TOOL-ARGS…]",
		Short: "Open the backend's own client (psql, mysql, redis-cli …) with a temporary login, revoked when you quit",
		Long: `Issue a credential for ROLE and open the backend's own command-line client
with it (the first one found on PATH of those the role's plugin declares, such
as psql or redis-cli), renewing the lease while the client runs and revoking it
when you quit. TOOL-ARGS after -- are passed to the client.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || (cmd.ArgsLenAtDash() != -1 && cmd.ArgsLenAtDash() != 1) {
				return usageError{errors.New("usage: credbroker connect ROLE [-- TOOL-ARGS…]")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWithCredential(cmd, args[0], ttl, func(env map[string]string, plugin string) (launch, error) {
				l, err := clientLaunch(plugin, env, exec.LookPath)
				if err != nil {
					return launch{}, fmt.Errorf("%w: use credbroker exec %s -- COMMAND", err, args[0])
				}
				l.argv = append(l.argv, args[1:]...)
				return l, nil
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "lease lifetime between renewals (default: the role's default_ttl)")
	return cmd
}

// launch is what runWithCredential starts: a command line, and the option
// files the program reads from its XDG_CONFIG_HOME (plugins.Client.Files).
type launch struct {
	argv  []string
	files map[string]string
}

// clientLaunch returns the command line and option files of the first
// client plugin declares (plugins.Metadata.Clients) that lookPath finds, for
// the credential's env.
func clientLaunch(plugin string, env map[string]string, lookPath func(string) (string, error)) (launch, error) {
	md, ok := metadata(plugin)
	if !ok || len(md.Clients) == 0 {
		return launch{}, fmt.Errorf("no client to open for plugin %q", plugin)
	}
	var tried []string
	for _, c := range md.Clients {
		if _, err := lookPath(c.Command); err != nil {
			tried = append(tried, c.Command)
			continue
		}
		l := launch{argv: []string{c.Command}}
		if c.Args != nil {
			l.argv = append(l.argv, c.Args(env)...)
		}
		if c.Files != nil {
			l.files = c.Files(env)
		}
		return l, nil
	}
	return launch{}, fmt.Errorf("no client of plugin %q is on PATH (looked for %s)", plugin, strings.Join(tried, ", "))
}

// writeOptionFiles writes files into a new private directory (0700, files
// 0600) for a client's XDG_CONFIG_HOME and returns it; the caller removes it.
func writeOptionFiles(files map[string]string) (string, error) {
	dir, err := os.MkdirTemp("", "credbroker-connect-")
	if err != nil {
		return "", fmt.Errorf("make the client's option directory: %w", err)
	}
	for name, content := range files {
		if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
			os.RemoveAll(dir)
			return "", fmt.Errorf("the client declares an option file %q that is not a plain file name", name)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("write the client's option file %s: %w", name, err)
		}
	}
	return dir, nil
}

// exitCodeError carries a child's exit status out of a command.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// runWithCredential issues a credential for role, runs the command argv
// returns with the credential in its environment, keeps the lease renewed
// while it runs and revokes the lease when it ends, however it ends.
func runWithCredential(cmd *cobra.Command, role string, ttl time.Duration, prepare func(env map[string]string, plugin string) (launch, error)) error {
	ctx := cmd.Context()
	c, err := newClient()
	if err != nil {
		return err
	}
	req := &credbrokerv1.IssueCredentialRequest{Role: role}
	if ttl != 0 {
		req.Ttl = durationpb.New(ttl)
	}
	resp, err := c.IssueCredential(ctx, connect.NewRequest(req))
	if err != nil {
		return err
	}
	lease := resp.Msg.GetLease()
	// From here on the lease is revoked whatever happens, even on Ctrl-C.
	defer revokeQuietly(context.WithoutCancel(ctx), c, lease.GetId(), cmd.ErrOrStderr())

	env := resp.Msg.GetCredential().GetEnv()
	l, err := prepare(env, pluginOf(ctx, c, role))
	if err != nil {
		return err
	}
	args := l.argv
	child := exec.Command(args[0], args[1:]...)
	child.Stdin, child.Stdout, child.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	child.Env = childEnviron(os.Environ())
	for k, v := range env {
		child.Env = append(child.Env, k+"="+v)
	}
	child.Env = append(child.Env, "CREDBROKER_LEASE_ID="+lease.GetId())
	if len(l.files) > 0 {
		dir, err := writeOptionFiles(l.files)
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir) // before the revoke: defers run last-in first-out
		child.Env = slices.DeleteFunc(child.Env, func(kv string) bool { return strings.HasPrefix(kv, "XDG_CONFIG_HOME=") })
		child.Env = append(child.Env, "XDG_CONFIG_HOME="+dir)
	}

	// Ctrl-C reaches the child from the terminal (psql cancels its query);
	// here it only cancels ctx (main's signal.NotifyContext), so this process
	// keeps waiting for the child and then revokes.
	if err := child.Start(); err != nil {
		return fmt.Errorf("start %s: %w", args[0], err)
	}
	renewCtx, stopRenew := context.WithCancel(context.WithoutCancel(ctx))
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		if last, err := c.KeepRenewed(renewCtx, lease); err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "credbroker: renewing the lease failed: %v (the login ends at %s)\n",
				err, last.GetExpiresAt().AsTime().Local().Format(time.Kitchen))
		}
	}()
	err = child.Wait()
	stopRenew()
	<-renewed
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitCodeError{exitErr.ExitCode()}
	}
	return err
}

// childEnviron is environ without what carries the caller's identity to the
// broker (CREDBROKER_TOKEN, CREDBROKER_TOKEN_FILE, and any other
// CREDBROKER_TOKEN* variable): the child gets a credential for one role, not
// the means to mint credentials for every role its user may have.
func childEnviron(environ []string) []string {
	return slices.DeleteFunc(slices.Clone(environ), func(kv string) bool {
		return strings.HasPrefix(kv, "CREDBROKER_TOKEN")
	})
}

// pluginOf returns the plugin behind role, from the roles the caller may use.
func pluginOf(ctx context.Context, c *client.Client, role string) string {
	roles, err := c.ListRoles(ctx, connect.NewRequest(&credbrokerv1.ListRolesRequest{}))
	if err != nil {
		return ""
	}
	for _, r := range roles.Msg.GetRoles() {
		if r.GetName() == role {
			return r.GetPlugin()
		}
	}
	return ""
}

func revokeQuietly(ctx context.Context, c *client.Client, leaseID string, errOut io.Writer) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := c.RevokeLease(ctx, connect.NewRequest(&credbrokerv1.RevokeLeaseRequest{LeaseId: leaseID})); err != nil {
		fmt.Fprintf(errOut, "credbroker: could not revoke lease %s: %v (the reaper revokes it when it expires)\n", leaseID, err)
	}
}
