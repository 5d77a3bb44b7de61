package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/credbroker/credbroker/client"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

func newAgentCmd() *cobra.Command {
	var out, format string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "agent ROLE --out FILE",
		Short: "Keep a fresh credential for ROLE in a file beside a workload (sidecar): renew, replace, revoke on exit",
		Long: `Run beside a workload as a sidecar. The agent issues a credential for ROLE
and writes it to FILE (mode 0600, replaced atomically): shell-quoted KEY='value'
lines with --format env (the default), the whole response with --format json.
It renews the lease at half its remaining time; when the lease reaches its max
expiry it issues a new credential and replaces the file while the old one still
works, leaving the old lease to expire. On SIGTERM or Ctrl-C it revokes the
current lease, removes the file and exits 0. Logs go to stderr.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{errors.New("--out is required: where to write the credential")}
			}
			if format != "env" && format != "json" {
				return usageError{fmt.Errorf("--format must be env or json, not %q", format)}
			}
			c, err := newClient()
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)).With(slog.String("component", "agent"), slog.String("role", args[0]))
			return runAgent(cmd.Context(), c, log, args[0], ttl, out, format)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to keep the credential in")
	cmd.Flags().StringVar(&format, "format", "env", "env or json")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "lease lifetime between renewals (default: the role's default_ttl)")
	return cmd
}

// runAgent keeps a credential for role in path until ctx ends.
func runAgent(ctx context.Context, c *client.Client, log *slog.Logger, role string, ttl time.Duration, path, format string) error {
	var current *credbrokerv1.Lease
	defer func() {
		if current != nil {
			revokeQuietly(context.WithoutCancel(ctx), c, current.GetId(), os.Stderr)
			log.Info("lease revoked on exit", slog.String("lease_id", current.GetId()))
		}
		_ = os.Remove(path)
	}()
	backoff := time.Second
	for ctx.Err() == nil {
		req := &credbrokerv1.IssueCredentialRequest{Role: role}
		if ttl != 0 {
			req.Ttl = durationpb.New(ttl)
		}
		resp, err := c.IssueCredential(ctx, connect.NewRequest(req))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ce *connect.Error
			if errors.As(err, &ce) && (ce.Code() == connect.CodePermissionDenied || ce.Code() == connect.CodeNotFound || ce.Code() == connect.CodeUnauthenticated) {
				return err // retrying will not help
			}
			log.Warn("issue failed; retrying", slog.String("error", err.Error()), slog.Duration("in", backoff))
			if !sleep(ctx, backoff) {
				break
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		if err := writeCredential(path, format, resp.Msg); err != nil {
			revokeQuietly(context.WithoutCancel(ctx), c, resp.Msg.GetLease().GetId(), os.Stderr)
			return err
		}
		// The old lease stays valid until it expires, so the workload can
		// move to the new credential at its own pace.
		current = resp.Msg.GetLease()
		log.Info("credential written", slog.String("lease_id", current.GetId()), slog.String("path", path),
			slog.Time("max_expires_at", current.GetMaxExpiresAt().AsTime()))
		last, err := c.KeepRenewed(ctx, current)
		current = last
		if err != nil {
			log.Warn("renewal failed; issuing a new credential", slog.String("lease_id", last.GetId()), slog.String("error", err.Error()))
			continue
		}
		// It can be renewed no further (max expiry, or not renewable): use it
		// for half its remaining time, then replace it. The old lease is left
		// to expire rather than revoked under the workload.
		if !sleep(ctx, time.Until(last.GetExpiresAt().AsTime())/2) {
			break
		}
		current = nil
		log.Info("replacing the credential before its lease ends", slog.String("lease_id", last.GetId()),
			slog.Time("expires_at", last.GetExpiresAt().AsTime()))
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// writeCredential replaces path with the credential, atomically and 0600.
func writeCredential(path, format string, resp *credbrokerv1.IssueCredentialResponse) error {
	var data []byte
	switch format {
	case "json":
		b, err := protojson.MarshalOptions{Multiline: true}.Marshal(resp)
		if err != nil {
			return err
		}
		data = b
	default:
		var b strings.Builder
		writeEnv(&b, resp, "")
		data = []byte(b.String())
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write credential: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write credential: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write credential: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write credential: %w", err)
	}
	return nil
}
