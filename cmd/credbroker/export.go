package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

// exportOptions are the flags of `credbroker export`.
type exportOptions struct {
	format, outputFile string
	since, until       string
	from, to           string
	leaseID, kind      string
	verify             bool
}

func newExportCmd() *cobra.Command {
	var o exportOptions
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export lease history (who, what, when, why) as JSON lines or CSV, and verify its hash chains",
		Long: `Export the lease history, oldest first: every issue, renewal, revocation,
denial, break-glass use, orphan sweep, checkpoint and export, with the hashes
that chain them. Needs an admin identity. The export is itself recorded.

Formats (--format):
  jsonl  one JSON object a line (the default)
  csv    one header row, then one row an event (RFC 4180), for a spreadsheet:
         ` + csvHeaderHelp + `
         role … break_glass copy the details of that name; details holds them
         all as JSON (what the hash covers); hash and prev_hash are hex.
         A cell a spreadsheet would run as a formula (=, +, -, @) starts with '.

--since and --until take a duration back from now (24h, 90m), an RFC 3339
time (2026-11-28T10:00:00Z), or a date or time without a zone (2026-11-28,
2026-11-28 10:00:00) in local time: a date is its midnight, as journalctl
reads it. --from and --to are their older names and take the same.

With --output-file the export is written to a temporary file beside FILE
(mode 0600) and renamed to FILE once complete: FILE is never half-written,
and an export that fails leaves nothing.

With --verify the hashes are recomputed as the events are written; a broken
chain (an event altered or removed) makes the command exit 1 naming the first
bad event, after writing the whole export (with --output-file, the file is
still written: its bytes are the evidence). On success it prints the anchor:
the last event's seq and hash. Keep it somewhere else: a later
'credbroker export verify --anchor SEQ:HASH FILE' proves the events up to it
were not removed since. 'credbroker export verify FILE' checks a saved export
offline, without the broker.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runExport(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.format, "format", formatJSONL, "jsonl or csv")
	f.StringVar(&o.outputFile, "output-file", "", "write the export to FILE (mode 0600, complete or not at all) instead of stdout")
	f.StringVar(&o.since, "since", "", "events at or after this time: a duration back from now (24h), RFC 3339, or a local date (2026-11-28)")
	f.StringVar(&o.until, "until", "", "events before this time, in the forms of --since")
	f.StringVar(&o.from, "from", "", "the same as --since")
	f.StringVar(&o.to, "to", "", "the same as --until")
	f.StringVar(&o.leaseID, "lease", "", "only this lease's events")
	f.StringVar(&o.kind, "kind", "", "only events of this kind (issued, renewed, revoked, denied, break_glass, orphan_revoked …)")
	f.BoolVar(&o.verify, "verify", false, "recompute the hash chains and fail if anything was altered or removed")
	cmd.AddCommand(newExportVerifyCmd())
	return cmd
}

// csvHeaderHelp is the CSV header, wrapped for the help text.
const csvHeaderHelp = "seq,time,kind,lease_id,role,backend,username,subject,issuer,actor,\n         reason,break_glass,details,hash,prev_hash,chain"

// exportRequest builds the request of o, reading times against now; errors
// are the user's to fix.
func exportRequest(o exportOptions, now time.Time) (*credbrokerv1.ExportLeaseHistoryRequest, error) {
	if o.format != formatJSONL && o.format != formatCSV {
		return nil, fmt.Errorf("--format %q: want %s or %s", o.format, formatJSONL, formatCSV)
	}
	if o.since != "" && o.from != "" {
		return nil, errors.New("give --since or --from, not both")
	}
	if o.until != "" && o.to != "" {
		return nil, errors.New("give --until or --to, not both")
	}
	if o.verify && (o.leaseID != "" || o.kind != "") {
		return nil, errors.New("--verify needs every event of the range: drop --lease and --kind")
	}
	req := &credbrokerv1.ExportLeaseHistoryRequest{LeaseId: o.leaseID, Kind: o.kind}
	for _, b := range []struct {
		flag, v string
		to      **timestamppb.Timestamp
	}{
		{"--since", o.since, &req.StartTime}, {"--from", o.from, &req.StartTime},
		{"--until", o.until, &req.EndTime}, {"--to", o.to, &req.EndTime},
	} {
		if b.v == "" {
			continue
		}
		t, err := parseTimeArg(b.v, now, time.Local)
		if err != nil {
			return nil, fmt.Errorf("%s %w", b.flag, err)
		}
		*b.to = timestamppb.New(t)
	}
	if req.StartTime != nil && req.EndTime != nil && req.EndTime.AsTime().Before(req.StartTime.AsTime()) {
		return nil, fmt.Errorf("the end of the range (%s) is before its start (%s)",
			req.EndTime.AsTime().Format(time.RFC3339), req.StartTime.AsTime().Format(time.RFC3339))
	}
	return req, nil
}

func runExport(cmd *cobra.Command, o exportOptions) error {
	req, err := exportRequest(o, time.Now())
	if err != nil {
		return usageError{err}
	}
	stderr := cmd.ErrOrStderr()
	// The file is opened before the broker is asked, so a path that cannot
	// be written fails before the export is on the record.
	var out io.Writer = cmd.OutOrStdout()
	var file *outputFile
	if o.outputFile != "" {
		if file, err = createOutputFile(o.outputFile); err != nil {
			return err
		}
		defer file.Abort() // nothing half-made is left: a no-op once committed
		out = file
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
	bw := bufio.NewWriterSize(out, 64<<10)
	w, err := newEventWriter(o.format, bw)
	if err != nil {
		return err
	}
	// Verified as it streams: nothing but the chains' heads is kept,
	// however long the export. The whole export is written even past a
	// broken event, which is named at the end.
	check := newExportCheck(req.StartTime != nil, nil)
	prog := newProgress(stderr, isTerminal(stderr), "exported", time.Now)
	defer prog.done()
	for stream.Receive() {
		ev := stream.Msg().GetEvent()
		if err := w.Write(ev); err != nil {
			return err
		}
		if o.verify {
			check.add(ev, 0)
		}
		prog.add()
	}
	if err := stream.Err(); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	prog.done()
	if file != nil {
		if err := file.Commit(); err != nil {
			return err
		}
	}
	if !o.verify {
		return nil
	}
	if err := check.result(); err != nil {
		if file != nil {
			fmt.Fprintf(stderr, "credbroker: the export was written to %s as received; keep it, it is the evidence\n", o.outputFile)
		}
		return err
	}
	check.report(stderr)
	return nil
}
