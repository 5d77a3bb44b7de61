package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/client"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

func newWhoAmICmd() *cobra.Command {
	var out *output
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show how the broker sees your token: issuer, subject, claims, policies and roles",
		Long: `Send the token the other commands would send and print how the broker sees it:
the issuer that verified it, its subject, the claims the policies look at, the
policies that match, and the roles (and break-glass roles) you may request.
The token itself is never printed.

  -o table   for people (the default on a terminal)
  -o wide    the same with the token's expiry in RFC 3339
  -o json    the WhoAmIResponse (the default otherwise)
  -o yaml    the json document as YAML

--format text|json still works and is deprecated (text is -o table).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return callAndPrint(cmd, out, func(ctx context.Context, c *client.Client) (*credbrokerv1.WhoAmIResponse, error) {
				return answer(c.WhoAmI(ctx, connect.NewRequest(&credbrokerv1.WhoAmIRequest{})))
			}, func(w io.Writer, format string, m *credbrokerv1.WhoAmIResponse) error {
				writeWhoAmI(w, m, format == outWide, time.Now())
				return nil
			})
		},
	}
	out = addOutputFlag(cmd, tableFormats...)
	out.deprecatedAlias(cmd, "format", "text or json (deprecated: use -o)", map[string]string{"text": outTable})
	return cmd
}

// writeWhoAmI is the table form of whoami; the token's expiry is relative
// to now, or RFC 3339 when wide.
func writeWhoAmI(w io.Writer, m *credbrokerv1.WhoAmIResponse, wide bool, now time.Time) {
	list := func(s []string) string {
		if len(s) == 0 {
			return "(none)"
		}
		return strings.Join(s, ", ")
	}
	issuer := m.GetIssuer()
	if m.GetIssuerUrl() != "" {
		issuer += " (" + m.GetIssuerUrl() + ")"
	}
	fmt.Fprintf(w, "issuer:             %s\n", issuer)
	fmt.Fprintf(w, "subject:            %s\n", m.GetSubject())
	if m.ExpiresAt != nil {
		fmt.Fprintf(w, "token expires:      %s\n", timestamp(m.GetExpiresAt(), wide, now))
	}
	if len(m.GetClaims()) == 0 {
		fmt.Fprintf(w, "claims looked at:   (none the policies of %s look at are in the token)\n", m.GetIssuer())
	} else {
		fmt.Fprintln(w, "claims looked at:")
		for _, k := range slices.Sorted(maps.Keys(m.GetClaims())) {
			fmt.Fprintf(w, "  %s: %s\n", k, m.GetClaims()[k])
		}
	}
	fmt.Fprintf(w, "policies matched:   %s\n", list(m.GetPolicies()))
	fmt.Fprintf(w, "roles:              %s\n", list(m.GetRoles()))
	fmt.Fprintf(w, "break-glass roles:  %s\n", list(m.GetBreakGlassRoles()))
	if m.GetAdmin() {
		fmt.Fprintln(w, "admin:              yes")
	}
	if len(m.GetPolicies()) == 0 {
		fmt.Fprintln(w, "\nNo policy matches this identity: compare the subject and claims above with the subject: and claims: of the policies for this issuer.")
	}
}
