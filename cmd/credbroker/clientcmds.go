package main

import (
	"context"
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
	var breakGlass string
	var out *output
	cmd := &cobra.Command{
		Use:   "creds ROLE",
		Short: "Issue a credential for ROLE and print it",
		Long: `Issue a credential for ROLE and print it.

  -o table   how to connect (the password among it) and the lease, for a
             person (the default on a terminal; a warning goes to stderr)
  -o wide    the same with RFC 3339 times
  -o json    the lease and the credential (the default when stdout is not
             a terminal, as before -o existed)
  -o yaml    the json document as YAML
  -o env     shell exports: eval "$(credbroker creds ROLE -o env)"
  -o uri     just the connection URI

--format json|env|uri still works and is deprecated.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			stdout := cmd.OutOrStdout()
			format, err := out.resolve(cmd, stdout)
			if err != nil {
				return err
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
			switch format {
			case outEnv:
				writeEnv(stdout, resp.Msg, "export ")
			case outURI:
				fmt.Fprintln(stdout, resp.Msg.GetCredential().GetUri())
			case outJSON:
				return printJSON(stdout, resp.Msg)
			case outYAML:
				return printYAML(stdout, resp.Msg)
			default:
				if err := writeCreds(stdout, resp.Msg, format == outWide, time.Now(), colorFor(stdout)); err != nil {
					return err
				}
				fmt.Fprintln(cmd.ErrOrStderr(), passwordShown)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "lease lifetime (default: the role's default_ttl; capped at its max_ttl)")
	out = addOutputFlag(cmd, outTable, outWide, outJSON, outYAML, outEnv, outURI)
	out.deprecatedAlias(cmd, "format", "json, env or uri (deprecated: use -o)", nil)
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

func newRolesCmd() *cobra.Command {
	var out *output
	cmd := &cobra.Command{
		Use:   "roles",
		Short: "List the roles you may request",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return callAndPrint(cmd, out, func(ctx context.Context, c *client.Client) (*credbrokerv1.ListRolesResponse, error) {
				return answer(c.ListRoles(ctx, connect.NewRequest(&credbrokerv1.ListRolesRequest{})))
			}, func(w io.Writer, format string, m *credbrokerv1.ListRolesResponse) error {
				if len(m.GetRoles()) == 0 {
					fmt.Fprintln(cmd.ErrOrStderr(), "No role is granted to your identity: credbroker whoami shows how the broker sees it.")
					return nil
				}
				return writeRoles(w, m.GetRoles(), format == outWide, colorFor(w))
			})
		},
	}
	out = addOutputFlag(cmd, tableFormats...)
	return cmd
}

// leaseCmd is a `lease get|renew|revoke LEASE_ID` command: call sends the
// request and returns the response to print and its lease.
func leaseCmd(use, short string, call func(cmd *cobra.Command, c *client.Client, id string) (proto.Message, *credbrokerv1.Lease, error)) *cobra.Command {
	var out *output
	cmd := &cobra.Command{
		Use:   use + " LEASE_ID",
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var lease *credbrokerv1.Lease
			return callAndPrint(cmd, out, func(_ context.Context, c *client.Client) (msg proto.Message, err error) {
				msg, lease, err = call(cmd, c, args[0])
				return msg, err
			}, func(w io.Writer, format string, _ proto.Message) error {
				return writeLease(w, lease, format == outWide, time.Now(), colorFor(w))
			})
		},
	}
	out = addOutputFlag(cmd, tableFormats...)
	return cmd
}

func newLeaseCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "lease", Short: "Get, renew, revoke or list your leases"}
	var increment time.Duration
	renew := leaseCmd("renew", "Extend a lease (never past its max expiry)", func(cmd *cobra.Command, c *client.Client, id string) (proto.Message, *credbrokerv1.Lease, error) {
		req := &credbrokerv1.RenewLeaseRequest{LeaseId: id}
		if increment != 0 {
			req.Increment = durationpb.New(increment)
		}
		resp, err := c.RenewLease(cmd.Context(), connect.NewRequest(req))
		if err != nil {
			return nil, nil, err
		}
		if resp.Msg.GetTtlClamped() {
			fmt.Fprintln(cmd.ErrOrStderr(), "note: the lease reached its max expiry and was extended less than asked")
		}
		return resp.Msg, resp.Msg.GetLease(), nil
	})
	renew.Flags().DurationVar(&increment, "increment", 0, "how far from now to extend (default: the role's default_ttl)")
	get := leaseCmd("get", "Show a lease", func(cmd *cobra.Command, c *client.Client, id string) (proto.Message, *credbrokerv1.Lease, error) {
		resp, err := c.GetLease(cmd.Context(), connect.NewRequest(&credbrokerv1.GetLeaseRequest{LeaseId: id}))
		if err != nil {
			return nil, nil, err
		}
		return resp.Msg, resp.Msg.GetLease(), nil
	})
	revoke := leaseCmd("revoke", "Revoke a lease now: the user is deleted and its sessions ended", func(cmd *cobra.Command, c *client.Client, id string) (proto.Message, *credbrokerv1.Lease, error) {
		resp, err := c.RevokeLease(cmd.Context(), connect.NewRequest(&credbrokerv1.RevokeLeaseRequest{LeaseId: id}))
		if err != nil {
			return nil, nil, err
		}
		return resp.Msg, resp.Msg.GetLease(), nil
	})
	cmd.AddCommand(get, renew, revoke, newLeaseListCmd())
	return cmd
}

// maxPageSize is the most leases ListLeases returns in one page.
const maxPageSize = 500

func newLeaseListCmd() *cobra.Command {
	var state, pageToken string
	var limit int
	var out *output
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List your leases, oldest first",
		Long: `List your leases, oldest first: every page, or with --limit N one page of
at most N. When more leases follow that page, the token of the next page is
printed (on stderr for table and wide, as nextPageToken in json and yaml);
pass it to --page-token to continue.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stdout := cmd.OutOrStdout()
			format, err := out.resolve(cmd, stdout)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("limit") && (limit < 1 || limit > maxPageSize) {
				return usageError{fmt.Errorf("--limit must be between 1 and %d (the largest page the broker returns), not %d", maxPageSize, limit)}
			}
			req := &credbrokerv1.ListLeasesRequest{PageSize: maxPageSize, PageToken: pageToken}
			if limit > 0 {
				req.PageSize = int32(limit)
			}
			if state != "" {
				v, ok := credbrokerv1.LeaseState_value["LEASE_STATE_"+strings.ToUpper(state)]
				if !ok || v == 0 {
					return usageError{fmt.Errorf("--state must be pending, active, revoking or revoked, not %q", state)}
				}
				req.State = credbrokerv1.LeaseState(v)
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			page := &credbrokerv1.ListLeasesResponse{}
			for {
				resp, err := c.ListLeases(cmd.Context(), connect.NewRequest(req))
				if err != nil {
					return err
				}
				page.Leases = append(page.Leases, resp.Msg.GetLeases()...)
				page.NextPageToken = resp.Msg.GetNextPageToken()
				if limit > 0 || page.NextPageToken == "" {
					break
				}
				req.PageToken = page.NextPageToken
			}
			return printMessage(stdout, format, page, func() error {
				if len(page.GetLeases()) == 0 {
					fmt.Fprintln(cmd.ErrOrStderr(), "No leases.")
				} else if err := writeLeases(stdout, page.GetLeases(), format == outWide, time.Now(), colorFor(stdout)); err != nil {
					return err
				}
				if page.GetNextPageToken() != "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "More leases follow: --page-token %s\n", page.GetNextPageToken())
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only leases in this state: pending, active, revoking, revoked")
	cmd.Flags().IntVar(&limit, "limit", 0, fmt.Sprintf("one page of at most this many leases (1–%d; default: every lease)", maxPageSize))
	cmd.Flags().StringVar(&pageToken, "page-token", "", "start at this page (the token a --limit listing printed)")
	out = addOutputFlag(cmd, tableFormats...)
	return cmd
}
