package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/broker"
	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

func newExportVerifyCmd() *cobra.Command {
	var format, anchorArg string
	var partial bool
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Verify the hash chains of a saved export, offline",
		Long: `Recompute the hash chains of an export saved earlier (JSON lines or CSV, told
apart by the first line; FILE - reads stdin), with no broker and no token, as
the file streams by. Exit 0 prints how many events verified and the anchor to
keep (the last event's seq and hash); exit 1 names the line and seq of the
first event that was edited, removed or moved.

An export of a time range (made with --since or --from) does not start at the
beginning of each chain: verify it with --partial, which takes each chain's
first event on trust. Without --partial, a file whose first events were cut
off fails.

--anchor SEQ:HASH checks that the file holds the event an earlier
verification printed as its anchor, unchanged: events up to it were not
removed since.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var a *anchor
			if anchorArg != "" {
				parsed, err := parseAnchor(anchorArg)
				if err != nil {
					return usageError{err}
				}
				a = &parsed
			}
			if format != "" && format != formatJSONL && format != formatCSV {
				return usageError{fmt.Errorf("--format %q: want %s or %s (or leave it out: the first line tells)", format, formatJSONL, formatCSV)}
			}
			return verifyFile(cmd, args[0], format, partial, a)
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "", "jsonl or csv (default: told by the first line)")
	f.BoolVar(&partial, "partial", false, "the file is an export of a time range: take each chain's first event on trust")
	f.StringVar(&anchorArg, "anchor", "", "SEQ:HASH printed by an earlier verification, which the file must hold unchanged")
	return cmd
}

func verifyFile(cmd *cobra.Command, path, format string, partial bool, a *anchor) error {
	var in io.Reader = cmd.InOrStdin()
	name := "stdin"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		in, name = f, filepath.Base(path)
	}
	r, err := newEventReader(format, in)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	stderr := cmd.ErrOrStderr()
	check := newExportCheck(partial, a)
	prog := newProgress(stderr, isTerminal(stderr), "verified", time.Now)
	defer prog.done()
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if !check.add(ev, r.Line()) {
			break // the first broken event is the one to name
		}
		prog.add()
	}
	prog.done()
	if err := check.result(); err != nil {
		if !partial && errors.Is(err, errChainStart) {
			return fmt.Errorf("%s: %w\nif %s is an export of a time range (--since, --from), verify it with --partial", name, err, name)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	check.report(cmd.OutOrStdout())
	return nil
}

// anchor is an event's seq and hash, kept apart from the exports to detect
// a later removal of the events up to it.
type anchor struct {
	seq  int64
	hash []byte
}

func (a anchor) String() string {
	return strconv.FormatInt(a.seq, 10) + ":" + hex.EncodeToString(a.hash)
}

func parseAnchor(s string) (anchor, error) {
	seqStr, hashHex, ok := strings.Cut(strings.TrimSpace(s), ":")
	seq, err1 := strconv.ParseInt(seqStr, 10, 64)
	hash, err2 := hex.DecodeString(hashHex)
	if !ok || err1 != nil || err2 != nil || len(hash) == 0 {
		return anchor{}, fmt.Errorf("--anchor %q: want SEQ:HASH as verification printed it (1234:3f9a…)", s)
	}
	return anchor{seq: seq, hash: hash}, nil
}

// errChainStart marks a chain whose first event in the file is not the
// first of the chain.
var errChainStart = errors.New("the file does not start at the beginning of the history")

// exportCheck verifies exported events as they stream, with a
// [broker.ExportVerifier], and more that only a whole export shows: seqs
// only grow from one event to the next, and the anchor, if any, is there
// unchanged. It keeps the chains' heads and the last event, whatever the
// export's length.
type exportCheck struct {
	x          *broker.ExportVerifier
	partial    bool
	chains     map[int32]bool // the chains met so far
	anchor     *anchor
	anchorSeen bool
	last       anchor
	n          int
	broken     error
}

func newExportCheck(partial bool, a *anchor) *exportCheck {
	return &exportCheck{x: broker.NewExportVerifier(partial), partial: partial, anchor: a, chains: map[int32]bool{}}
}

// add checks the next event, read from line (0: not from a file), and
// reports whether all is well so far; the first failure is kept for result.
func (c *exportCheck) add(ev *credbrokerv1.LeaseEvent, line int) bool {
	if c.broken != nil {
		return false
	}
	where := fmt.Sprintf("seq %d", ev.GetSeq())
	if line > 0 {
		where = fmt.Sprintf("line %d (seq %d)", line, ev.GetSeq())
	}
	fail := func(err error) bool {
		c.broken = fmt.Errorf("verify: %d events verified, then at %s: %w", c.n, where, err)
		return false
	}
	if c.n > 0 && ev.GetSeq() <= c.last.seq {
		return fail(fmt.Errorf("events are out of order: seq %d comes after seq %d (lines were moved)", ev.GetSeq(), c.last.seq))
	}
	if err := c.x.Add(ev); err != nil {
		if !c.partial && !c.chains[ev.GetChain()] && len(ev.GetPrevHash()) != 0 {
			err = fmt.Errorf("%w: %w", errChainStart, err)
		}
		return fail(err)
	}
	if c.anchor != nil && ev.GetSeq() == c.anchor.seq {
		if !bytes.Equal(ev.GetHash(), c.anchor.hash) {
			return fail(fmt.Errorf("the anchor says seq %d has hash %x, the file says %x (the history was rewritten)", c.anchor.seq, c.anchor.hash, ev.GetHash()))
		}
		c.anchorSeen = true
	}
	c.chains[ev.GetChain()] = true
	c.n++
	c.last = anchor{seq: ev.GetSeq(), hash: ev.GetHash()}
	return true
}

// result is the first failure, or a missing anchor, or nil.
func (c *exportCheck) result() error {
	if c.broken != nil {
		return c.broken
	}
	if c.anchor != nil && !c.anchorSeen {
		return fmt.Errorf("verify: the anchor event, seq %d, is not in the export (%d events, up to seq %d): events were removed, or the export does not reach it", c.anchor.seq, c.n, c.last.seq)
	}
	return nil
}

// report prints what verified and the anchor to keep.
func (c *exportCheck) report(w io.Writer) {
	fmt.Fprintf(w, "verified: %d events, every hash chain and checkpoint intact\n", c.n)
	if c.anchor != nil {
		fmt.Fprintf(w, "anchor %s found unchanged\n", c.anchor)
	}
	if c.n > 0 {
		fmt.Fprintf(w, "anchor: %s\n(the last event's seq and hash: keep it apart from the export; 'credbroker export verify --anchor %s FILE' checks a later export still holds it)\n", c.last, c.last)
	}
}
