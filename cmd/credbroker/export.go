package main

import (
	"bufio"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/credbroker/credbroker/broker"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

func newExportCmd() *cobra.Command {
	var from, to string
	var since time.Duration
	var leaseID, kind string
	var verify bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export lease history (who, what, when, why) as JSON lines, and verify its hash chains",
		Long: `Export the lease history as JSON lines, oldest first: every issue, renewal,
revocation, denial, break-glass use, orphan sweep and export, with the hashes
that chain them. Needs an admin identity. The export is itself recorded.

With --verify the hashes are recomputed as the lines are written; a broken
chain (an event altered or removed) makes the command exit 1 naming the first
bad event. Keep the last line's hash somewhere else to detect later removal of
the newest events.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &credbrokerv1.ExportLeaseHistoryRequest{LeaseId: leaseID, Kind: kind}
			if since != 0 && from != "" {
				return usageError{errors.New("give --since or --from, not both")}
			}
			if since != 0 {
				req.StartTime = timestamppb.New(time.Now().Add(-since))
			}
			for flag, v := range map[string]string{"--from": from, "--to": to} {
				if v == "" {
					continue
				}
				t, err := time.Parse(time.RFC3339, v)
				if err != nil {
					return usageError{fmt.Errorf("%s: want a time like 2026-11-25T10:00:00Z: %v", flag, err)}
				}
				if flag == "--from" {
					req.StartTime = timestamppb.New(t)
				} else {
					req.EndTime = timestamppb.New(t)
				}
			}
			if verify && (leaseID != "" || kind != "") {
				return usageError{errors.New("--verify needs every event of the range: drop --lease and --kind")}
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			stream, err := c.Admin.ExportLeaseHistory(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			defer stream.Close()
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			// Verified as it streams: nothing but the chains' heads is kept,
			// however long the export.
			// The whole export is written even past a broken event, which is
			// named at the end.
			verifier := broker.NewExportVerifier(req.StartTime != nil)
			var broken error
			for stream.Receive() {
				ev := stream.Msg().GetEvent()
				b, err := protojson.Marshal(ev)
				if err != nil {
					return err
				}
				fmt.Fprintln(out, string(b))
				if verify && broken == nil {
					if err := verifier.Add(ev); err != nil {
						broken = fmt.Errorf("verify: %d events verified, then: %w", verifier.Verified(), err)
					}
				}
			}
			if err := stream.Err(); err != nil {
				return err
			}
			if !verify {
				return nil
			}
			if broken != nil {
				return broken
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "verified: %d events, every hash chain and checkpoint intact\n", verifier.Verified())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "events at or after this time (RFC 3339)")
	f.StringVar(&to, "to", "", "events before this time (RFC 3339)")
	f.DurationVar(&since, "since", 0, "events of the last DURATION (e.g. 24h)")
	f.StringVar(&leaseID, "lease", "", "only this lease's events")
	f.StringVar(&kind, "kind", "", "only events of this kind (issued, renewed, revoked, denied, break_glass, orphan_revoked …)")
	f.BoolVar(&verify, "verify", false, "recompute the hash chains and fail if anything was altered or removed")
	return cmd
}
