package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/client"
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
			if role == "" && backend == "" && subject == "" {
				return usageError{errors.New("give at least one of --role, --backend, --subject")}
			}
			return callAndPrint(cmd, revokeOut, func(ctx context.Context, c *client.Client) (*credbrokerv1.RevokeLeasesResponse, error) {
				return answer(c.Admin.RevokeLeases(ctx, connect.NewRequest(&credbrokerv1.RevokeLeasesRequest{
					Role: role, Backend: backend, Subject: subject, Reason: reason,
				})))
			}, func(w io.Writer, _ string, m *credbrokerv1.RevokeLeasesResponse) error { return revokedSummary(w, m) })
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
			return callAndPrint(cmd, inventoryOut, func(ctx context.Context, c *client.Client) (*credbrokerv1.GetInventoryResponse, error) {
				return answer(c.Admin.GetInventory(ctx, connect.NewRequest(&credbrokerv1.GetInventoryRequest{})))
			}, func(w io.Writer, format string, m *credbrokerv1.GetInventoryResponse) error {
				return writeInventory(w, m, format == outWide, colorFor(w))
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
			return callAndPrint(cmd, out, func(ctx context.Context, c *client.Client) (*credbrokerv1.RotateRootResponse, error) {
				return answer(c.Admin.RotateRoot(ctx, connect.NewRequest(&credbrokerv1.RotateRootRequest{Backend: args[0]})))
			}, func(w io.Writer, _ string, m *credbrokerv1.RotateRootResponse) error {
				_, err := fmt.Fprintf(w, "rotated the admin password of %s at %s (version %d)\n", m.GetBackend(),
					m.GetRotatedAt().AsTime().Local().Format(time.RFC3339), m.GetVersion())
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
			return callAndPrint(cmd, out, func(ctx context.Context, c *client.Client) (*credbrokerv1.RewrapSecretsResponse, error) {
				return answer(c.Admin.RewrapSecrets(ctx, connect.NewRequest(&credbrokerv1.RewrapSecretsRequest{})))
			}, func(w io.Writer, _ string, m *credbrokerv1.RewrapSecretsResponse) error {
				_, err := fmt.Fprintf(w, "rewrapped %d data keys under key %s (%d were already)\n",
					m.GetRewrapped(), m.GetKekId(), m.GetUnchanged())
				return err
			})
		},
	}
	out = addOutputFlag(cmd, tableFormats...)
	return cmd
}
