package main

import (
	"errors"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

func newAdminCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "Operator commands (need an admin identity)"}
	var role, backend, subject, reason string
	var revokeOut, inventoryOut *output
	revoke := &cobra.Command{
		Use:   "revoke --role R | --backend B | --subject S [--reason TEXT]",
		Short: "Revoke every active lease matching the filter now",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stdout := cmd.OutOrStdout()
			format, err := revokeOut.resolve(cmd, stdout)
			if err != nil {
				return err
			}
			if role == "" && backend == "" && subject == "" {
				return usageError{errors.New("give at least one of --role, --backend, --subject")}
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			resp, err := c.Admin.RevokeLeases(cmd.Context(), connect.NewRequest(&credbrokerv1.RevokeLeasesRequest{
				Role: role, Backend: backend, Subject: subject, Reason: reason,
			}))
			if err != nil {
				return err
			}
			return printMessage(stdout, format, resp.Msg, func() error { return revokedSummary(stdout, resp.Msg) })
		},
	}
	revokeOut = addOutputFlag(revoke, tableFormats...)
	f := revoke.Flags()
	f.StringVar(&role, "role", "", "leases of this role")
	f.StringVar(&backend, "backend", "", "leases on this backend")
	f.StringVar(&subject, "subject", "", "leases held by this subject")
	f.StringVar(&reason, "reason", "", "why, for the record")
	inventory := &cobra.Command{
		Use:   "inventory",
		Short: "Every backend and role: owner, environment, TTLs, policies, live leases",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stdout := cmd.OutOrStdout()
			format, err := inventoryOut.resolve(cmd, stdout)
			if err != nil {
				return err
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			resp, err := c.Admin.GetInventory(cmd.Context(), connect.NewRequest(&credbrokerv1.GetInventoryRequest{}))
			if err != nil {
				return err
			}
			return printMessage(stdout, format, resp.Msg, func() error {
				return writeInventory(stdout, resp.Msg, format == outWide, colorFor(stdout))
			})
		},
	}
	inventoryOut = addOutputFlag(inventory, tableFormats...)
	cmd.AddCommand(revoke, inventory)
	return cmd
}
