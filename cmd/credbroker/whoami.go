package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

func newWhoAmICmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show how the broker sees your token: issuer, subject, claims, policies and roles",
		Long: `Send the token the other commands would send and print how the broker sees it:
the issuer that verified it, its subject, the claims the policies look at, the
policies that match, and the roles (and break-glass roles) you may request.
The token itself is never printed.

  --format text   for people (the default on a terminal)
  --format json   the WhoAmIResponse (the default otherwise)`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format == "" {
				format = "json"
				if isTerminal(cmd.OutOrStdout()) {
					format = "text"
				}
			}
			if !slices.Contains([]string{"json", "text"}, format) {
				return usageError{fmt.Errorf("--format must be text or json, not %q", format)}
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			resp, err := c.WhoAmI(cmd.Context(), connect.NewRequest(&credbrokerv1.WhoAmIRequest{}))
			if err != nil {
				return err
			}
			if format == "json" {
				return printJSON(cmd.OutOrStdout(), resp.Msg)
			}
			writeWhoAmI(cmd.OutOrStdout(), resp.Msg)
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "text or json (default text on a terminal, json otherwise)")
	return cmd
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func writeWhoAmI(w io.Writer, m *credbrokerv1.WhoAmIResponse) {
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
		fmt.Fprintf(w, "token expires:      %s\n", m.GetExpiresAt().AsTime().Local().Format(time.RFC3339))
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
