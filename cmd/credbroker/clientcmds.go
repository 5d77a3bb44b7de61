package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/credbroker/credbroker/client"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

var clientOpts struct {
	addr         string
	tokenCommand string
}

func clientFlags(root *cobra.Command) {
	root.PersistentFlags().StringVar(&clientOpts.addr, "addr", "", "broker address (default $CREDBROKER_ADDR or "+client.DefaultAddr+")")
	root.PersistentFlags().StringVar(&clientOpts.tokenCommand, "token-command", "", "command that prints an identity token (default: $CREDBROKER_TOKEN, then $CREDBROKER_TOKEN_FILE, then the login of credbroker login)")
}

func newClient() (*client.Client, error) {
	tokens, err := tokenSource()
	if err != nil {
		return nil, err
	}
	return client.New(clientAddr(), tokens), nil
}

// tokenSource is where the client commands get their token: --token-command,
// else $CREDBROKER_TOKEN, else $CREDBROKER_TOKEN_FILE, else the login cached
// by `credbroker login` for this broker.
func tokenSource() (client.TokenSource, error) {
	if clientOpts.tokenCommand != "" {
		return client.TokenCommand(clientOpts.tokenCommand), nil
	}
	tokens, err := client.TokenFromEnv()
	if err == nil {
		return tokens, nil
	}
	// A cached login, or a damaged one (its error says so); without a
	// config directory ($HOME unset, as for some services) there is none.
	if _, path, lerr := client.LoadSession(clientAddr()); lerr == nil || path != "" && !errors.Is(lerr, fs.ErrNotExist) {
		return client.SessionToken{Addr: clientAddr()}, nil
	}
	return nil, err
}

// clientAddr is the broker the client commands talk to.
func clientAddr() string {
	if clientOpts.addr != "" {
		return clientOpts.addr
	}
	return client.AddrFromEnv()
}

func newCredsCmd() *cobra.Command {
	var ttl time.Duration
	var format, breakGlass string
	cmd := &cobra.Command{
		Use:   "creds ROLE",
		Short: "Issue a credential for ROLE and print it",
		Long: `Issue a credential for ROLE and print it.

  --format json   the lease and the credential (default)
  --format env    shell exports: eval "$(credbroker creds ROLE --format env)"
  --format uri    just the connection URI`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains([]string{"json", "env", "uri"}, format) {
				return usageError{fmt.Errorf("--format must be json, env or uri, not %q", format)}
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			req := &credbrokerv1.IssueCredentialRequest{Role: args[0], BreakGlassReason: breakGlass}
			if ttl != 0 {
				req.Ttl = durationpb.New(ttl)
			}
			resp, err := c.IssueCredential(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			if resp.Msg.GetTtlClamped() {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: the requested ttl is above the role's max_ttl; the lease expires at %s\n",
					resp.Msg.GetLease().GetExpiresAt().AsTime().Local().Format(time.RFC3339))
			}
			out := cmd.OutOrStdout()
			switch format {
			case "env":
				writeEnv(out, resp.Msg, "export ")
			case "uri":
				fmt.Fprintln(out, resp.Msg.GetCredential().GetUri())
			default:
				return printJSON(out, resp.Msg)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "lease lifetime (default: the role's default_ttl; capped at its max_ttl)")
	cmd.Flags().StringVar(&format, "format", "json", "json, env or uri")
	cmd.Flags().StringVar(&breakGlass, "break-glass", "", "emergency access: the reason, recorded and audited")
	return cmd
}

// writeEnv prints the credential's environment and the lease id as shell
// assignments, one a line, each starting with prefix ("export " for eval,
// "" for a file sourced with set -a); values are single-quoted so any is safe.
func writeEnv(w io.Writer, resp *credbrokerv1.IssueCredentialResponse, prefix string) {
	env := maps.Clone(resp.GetCredential().GetEnv())
	if env == nil {
		env = map[string]string{}
	}
	env["CREDBROKER_LEASE_ID"] = resp.GetLease().GetId()
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(w, "%s%s=%s\n", prefix, k, shellQuote(env[k]))
	}
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func newRolesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "roles",
		Short: "List the roles you may request",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			resp, err := c.ListRoles(cmd.Context(), connect.NewRequest(&credbrokerv1.ListRolesRequest{}))
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), resp.Msg)
		},
	}
}

func newLeaseCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "lease", Short: "Get, renew, revoke or list your leases"}
	var increment time.Duration
	renew := &cobra.Command{
		Use:   "renew LEASE_ID",
		Short: "Extend a lease (never past its max expiry)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			req := &credbrokerv1.RenewLeaseRequest{LeaseId: args[0]}
			if increment != 0 {
				req.Increment = durationpb.New(increment)
			}
			resp, err := c.RenewLease(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			if resp.Msg.GetTtlClamped() {
				fmt.Fprintln(cmd.ErrOrStderr(), "note: the lease reached its max expiry and was extended less than asked")
			}
			return printJSON(cmd.OutOrStdout(), resp.Msg)
		},
	}
	renew.Flags().DurationVar(&increment, "increment", 0, "how far from now to extend (default: the role's default_ttl)")

	var state string
	list := &cobra.Command{
		Use:   "list",
		Short: "List your leases, oldest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			req := &credbrokerv1.ListLeasesRequest{PageSize: 500}
			if state != "" {
				v, ok := credbrokerv1.LeaseState_value["LEASE_STATE_"+strings.ToUpper(state)]
				if !ok {
					return usageError{fmt.Errorf("--state must be pending, active, revoking or revoked, not %q", state)}
				}
				req.State = credbrokerv1.LeaseState(v)
			}
			var all []*credbrokerv1.Lease
			for {
				resp, err := c.ListLeases(cmd.Context(), connect.NewRequest(req))
				if err != nil {
					return err
				}
				all = append(all, resp.Msg.GetLeases()...)
				if req.PageToken = resp.Msg.GetNextPageToken(); req.PageToken == "" {
					break
				}
			}
			return printJSON(cmd.OutOrStdout(), &credbrokerv1.ListLeasesResponse{Leases: all})
		},
	}
	list.Flags().StringVar(&state, "state", "", "only leases in this state: pending, active, revoking, revoked")

	cmd.AddCommand(
		&cobra.Command{
			Use:   "get LEASE_ID",
			Short: "Show a lease",
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := newClient()
				if err != nil {
					return err
				}
				resp, err := c.GetLease(cmd.Context(), connect.NewRequest(&credbrokerv1.GetLeaseRequest{LeaseId: args[0]}))
				if err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), resp.Msg)
			},
		},
		renew,
		&cobra.Command{
			Use:   "revoke LEASE_ID",
			Short: "Revoke a lease now: the user is deleted and its sessions ended",
			Args:  exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := newClient()
				if err != nil {
					return err
				}
				resp, err := c.RevokeLease(cmd.Context(), connect.NewRequest(&credbrokerv1.RevokeLeaseRequest{LeaseId: args[0]}))
				if err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), resp.Msg)
			},
		},
		list,
	)
	return cmd
}
