package main

import (
	"errors"
	"fmt"
	"time"

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
	cmd.AddCommand(revoke, inventory, newRotateRootCmd(), newRewrapCmd())
	return cmd
}

func newRotateRootCmd() *cobra.Command {
	var out *output
	cmd := &cobra.Command{
		Use:   "rotate-root BACKEND",
		Short: "Set a new random admin password on a backend; only the broker knows it afterwards",
		Long: `Set a new random admin password on a backend now. The broker records the
new password, encrypted with store.kek, before it touches the backend, sets it
(PostgreSQL: ALTER ROLE … PASSWORD with a SCRAM verifier), and from then on
opens the backend with the stored password instead of the config's reference;
every replica picks it up within seconds. Recorded as a root_rotated event.
Needs store.kek on the broker.`,
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
			resp, err := c.Admin.RotateRoot(cmd.Context(), connect.NewRequest(&credbrokerv1.RotateRootRequest{Backend: args[0]}))
			if err != nil {
				return err
			}
			return printMessage(stdout, format, resp.Msg, func() error {
				_, err := fmt.Fprintf(stdout, "rotated the admin password of %s at %s (version %d)\n", resp.Msg.GetBackend(),
					resp.Msg.GetRotatedAt().AsTime().Local().Format(time.RFC3339), resp.Msg.GetVersion())
				return err
			})
		},
	}
	out = addOutputFlag(cmd, tableFormats...)
	return cmd
}

func newRewrapCmd() *cobra.Command {
	var out *output
	cmd := &cobra.Command{
		Use:   "rewrap",
		Short: "Wrap every stored admin secret's data key under the newest key-encryption key",
		Long: `Wrap the data key of every admin secret in the store under the newest
key-encryption key (the first of store.kek). To rotate the KEK: put the new key
first in store.kek (keeping the old one after it), restart the brokers, run
this, then remove the old key. Safe to run again: it rewraps only what an older
key wraps.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stdout := cmd.OutOrStdout()
			format, err := out.resolve(cmd, stdout)
			if err != nil {
				return err
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			resp, err := c.Admin.RewrapSecrets(cmd.Context(), connect.NewRequest(&credbrokerv1.RewrapSecretsRequest{}))
			if err != nil {
				return err
			}
			return printMessage(stdout, format, resp.Msg, func() error {
				_, err := fmt.Fprintf(stdout, "rewrapped %d data keys under key %s (%d were already)\n",
					resp.Msg.GetRewrapped(), resp.Msg.GetKekId(), resp.Msg.GetUnchanged())
				return err
			})
		},
	}
	out = addOutputFlag(cmd, tableFormats...)
	return cmd
}
