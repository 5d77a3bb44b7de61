package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/client"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

func newConnectCmd() *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "connect ROLE [-- TOOL-ARGS…]",
		Short: "Open the backend's own client (psql, mysql, redis-cli …) with a temporary login, revoked when you quit",
		Long: `Issue a credential for ROLE and open the backend's own command-line client
with it (the first one found on PATH of those the role's plugin declares, such
as psql or redis-cli), renewing the lease while the client runs and revoking it
when you quit. TOOL-ARGS after -- are passed to the client. The password is
never put on the client's command line, where every user of the machine sees
it: it travels in the environment or in a private option file.

For a backend without a command-line client that logs in from the
credential's variables (RabbitMQ: rabbitmqadmin speaks the management API,
not AMQP), connect opens your shell ($SHELL, else /bin/sh) with the
credential's variables set (AMQP_URL, RABBITMQ_USERNAME, RABBITMQ_PASSWORD,
RABBITMQ_VHOST), and prints on stderr the URI with its password masked and
which variables hold the credential; TOOL-ARGS go to the shell (-c '…').
Leave the shell to revoke the login.

A login lasts at most the role's max_ttl; connect does not replace it (use
credbroker exec for a program that must outlive it).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || (cmd.ArgsLenAtDash() != -1 && cmd.ArgsLenAtDash() != 1) {
				return usageError{errors.New("usage: credbroker connect ROLE [-- TOOL-ARGS…]")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := execOptions{ttl: ttl, onRotate: rotateNone}
			return runWithCredential(cmd, args[0], opts, func(cred *credbrokerv1.Credential, plugin string) (launch, error) {
				l, err := clientLaunch(plugin, cred.GetEnv(), exec.LookPath)
				if err != nil {
					return launch{}, fmt.Errorf("%w: use credbroker exec %s -- COMMAND", err, args[0])
				}
				if l.shell {
					l.note = shellNote(cred, plugin)
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
	shell bool   // argv is the user's shell (plugins.Metadata.Shell)
	note  string // printed on stderr before the program starts
}

// clientLaunch returns the command line and option files of the first
// client plugin declares (plugins.Metadata.Clients) that lookPath finds, for
// the credential's env; or, when none is found and the plugin declares
// Shell, the user's shell ($SHELL, else /bin/sh).
func clientLaunch(plugin string, env map[string]string, lookPath func(string) (string, error)) (launch, error) {
	md, ok := metadata(plugin)
	if !ok || len(md.Clients) == 0 && !md.Shell {
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
	if md.Shell {
		return launch{argv: []string{cmp.Or(os.Getenv("SHELL"), "/bin/sh")}, shell: true}, nil
	}
	return launch{}, fmt.Errorf("no client of plugin %q is on PATH (looked for %s)", plugin, strings.Join(tried, ", "))
}

// shellNote tells the person in a shell opened by connect where the
// credential is: its URI with the password masked, and the variables that
// hold it (in the order the plugin declares them).
func shellNote(cred *credbrokerv1.Credential, plugin string) string {
	md, _ := metadata(plugin)
	names := slices.DeleteFunc(slices.Clone(md.Env), func(k string) bool { _, ok := cred.GetEnv()[k]; return !ok })
	for _, k := range slices.Sorted(maps.Keys(cred.GetEnv())) {
		if !slices.Contains(names, k) {
			names = append(names, k)
		}
	}
	var b strings.Builder
	if u, err := url.Parse(cred.GetUri()); err == nil && cred.GetUri() != "" {
		fmt.Fprintf(&b, "credbroker: %s (password masked)\n", u.Redacted())
	}
	fmt.Fprintf(&b, "credbroker: a shell with the credential of user %s in %s; exit it to revoke the login",
		cred.GetUsername(), strings.Join(names, ", "))
	return b.String()
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
