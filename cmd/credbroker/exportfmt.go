package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

// Export formats: JSON lines (protojson, one event a line) and CSV.
const (
	formatJSONL = "jsonl"
	formatCSV   = "csv"
)

// csvColumns is the header of a CSV export, in order. The columns from role
// to break_glass are copies of the details of the same name, for filtering
// in a spreadsheet (reason is a revoke's reason, or a break-glass
// justification); details is every detail, as a JSON object with sorted
// keys, and is what the hash covers. chain (the hash chain of the event) is
// not in the hash but is needed to verify it, so it comes last.
var csvColumns = []string{
	"seq", "time", "kind", "lease_id", "role", "backend", "username", "subject", "issuer",
	"actor", "reason", "break_glass", "details", "hash", "prev_hash", "chain",
}

// Column indexes of csvColumns.
const (
	colSeq = iota
	colTime
	colKind
	colLeaseID
	colRole
	colBackend
	colUsername
	colSubject
	colIssuer
	colActor
	colReason
	colBreakGlass
	colDetails
	colHash
	colPrevHash
	colChain
)

// detailColumns are the columns copied from details, with the detail each
// copies.
var detailColumns = []struct {
	col int
	key string
}{
	{colRole, "role"}, {colBackend, "backend"}, {colUsername, "username"}, {colSubject, "subject"},
	{colIssuer, "issuer"}, {colBreakGlass, "break_glass"},
}

// A cell that starts with one of formulaStarts is read by a spreadsheet as
// a formula ("CSV injection"), and a subject or a break-glass reason is
// chosen by a caller: such a cell is written with a leading ', which
// spreadsheets take as "text", and so is a cell that starts with ' itself,
// so that reading strips exactly one and gets the value back.
const formulaStarts = "=+-@\t\r'"

func csvCell(s string) string {
	if s != "" && strings.IndexByte(formulaStarts, s[0]) >= 0 {
		return "'" + s
	}
	return s
}

func uncell(s string) string { return strings.TrimPrefix(s, "'") }

// reasonOf is the reason column: a revoke's reason, else a break-glass
// justification.
func reasonOf(details map[string]string) string {
	if r, ok := details["reason"]; ok {
		return r
	}
	return details["break_glass_reason"]
}

// eventWriter writes exported events in one format.
type eventWriter interface {
	Write(*credbrokerv1.LeaseEvent) error
	// Flush writes what is buffered and reports the first write error.
	Flush() error
}

func newEventWriter(format string, w io.Writer) (eventWriter, error) {
	switch format {
	case formatJSONL:
		return &jsonlWriter{w: bufio.NewWriter(w)}, nil
	case formatCSV:
		cw := csv.NewWriter(w)
		if err := cw.Write(csvColumns); err != nil {
			return nil, err
		}
		return &csvWriter{w: cw, rec: make([]string, len(csvColumns))}, nil
	}
	return nil, fmt.Errorf("unknown format %q: want %s or %s", format, formatJSONL, formatCSV)
}

type jsonlWriter struct{ w *bufio.Writer }

func (j *jsonlWriter) Write(ev *credbrokerv1.LeaseEvent) error {
	b, err := protojson.Marshal(ev)
	if err != nil {
		return err
	}
	j.w.Write(b)
	return j.w.WriteByte('\n')
}

func (j *jsonlWriter) Flush() error { return j.w.Flush() }

type csvWriter struct {
	w   *csv.Writer
	rec []string
}

func (c *csvWriter) Write(ev *credbrokerv1.LeaseEvent) error {
	d := ev.GetDetails()
	details, err := detailsJSON(d)
	if err != nil {
		return err
	}
	r := c.rec
	r[colSeq] = strconv.FormatInt(ev.GetSeq(), 10)
	r[colTime] = ev.GetAt().AsTime().UTC().Format(time.RFC3339Nano) // exactly what the hash covers
	r[colKind] = csvCell(ev.GetKind())
	r[colLeaseID] = csvCell(ev.GetLeaseId())
	for _, c := range detailColumns {
		r[c.col] = csvCell(d[c.key])
	}
	r[colActor] = csvCell(ev.GetActor())
	r[colReason] = csvCell(reasonOf(d))
	r[colDetails] = details // starts with {
	r[colHash] = hex.EncodeToString(ev.GetHash())
	r[colPrevHash] = hex.EncodeToString(ev.GetPrevHash())
	r[colChain] = strconv.Itoa(int(ev.GetChain()))
	return c.w.Write(r)
}

func (c *csvWriter) Flush() error {
	c.w.Flush()
	return c.w.Error()
}

// detailsJSON is details as a JSON object with sorted keys, not escaping
// <, > and & (nothing here is bound for HTML).
func detailsJSON(details map[string]string) (string, error) {
	if details == nil {
		details = map[string]string{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(details); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// eventReader reads a saved export back, one event at a time.
type eventReader interface {
	// Next returns the next event, or io.EOF after the last. An error
	// names the line.
	Next() (*credbrokerv1.LeaseEvent, error)
	// Line is the line the last event returned starts on.
	Line() int
}

// maxExportLine bounds one line of a JSON lines export: events are a few
// hundred bytes, and every string in them is capped by the broker.
const maxExportLine = 4 << 20

// newEventReader reads r in format, or, with format "", in the format its
// first line shows: a JSON object, or the CSV header.
func newEventReader(format string, r io.Reader) (eventReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if format == "" {
		first, err := br.Peek(1)
		switch {
		case errors.Is(err, io.EOF):
			return nil, errors.New("the file is empty: not an export")
		case err != nil:
			return nil, err
		case first[0] == '{':
			format = formatJSONL
		default:
			format = formatCSV
		}
	}
	switch format {
	case formatJSONL:
		sc := bufio.NewScanner(br)
		sc.Buffer(make([]byte, 0, 64<<10), maxExportLine)
		return &jsonlReader{sc: sc}, nil
	case formatCSV:
		cr := csv.NewReader(br)
		cr.ReuseRecord = true
		cr.FieldsPerRecord = -1 // checked here, to say which columns are wrong
		head, err := cr.Read()
		if err != nil {
			return nil, fmt.Errorf("line 1: not a CSV export: %w", err)
		}
		if !slices.Equal(head, csvColumns) {
			return nil, fmt.Errorf("line 1: not a credbroker CSV export: the header is %q, want %q", strings.Join(head, ","), strings.Join(csvColumns, ","))
		}
		return &csvReader{r: cr}, nil
	}
	return nil, fmt.Errorf("unknown format %q", format)
}

type jsonlReader struct {
	sc   *bufio.Scanner
	line int
	at   int
}

func (j *jsonlReader) Next() (*credbrokerv1.LeaseEvent, error) {
	for j.sc.Scan() {
		j.line++
		b := bytes.TrimSpace(j.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		j.at = j.line
		ev := &credbrokerv1.LeaseEvent{}
		if err := protojson.Unmarshal(b, ev); err != nil {
			return nil, fmt.Errorf("line %d: not an exported event: %w", j.line, err)
		}
		return ev, nil
	}
	if err := j.sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", j.line+1, err)
	}
	return nil, io.EOF
}

func (j *jsonlReader) Line() int { return j.at }

type csvReader struct {
	r  *csv.Reader
	at int
}

func (c *csvReader) Next() (*credbrokerv1.LeaseEvent, error) {
	rec, err := c.r.Read()
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, err // a *csv.ParseError names the line
	}
	c.at, _ = c.r.FieldPos(0)
	if len(rec) != len(csvColumns) {
		return nil, fmt.Errorf("line %d: %d columns, want %d (%s)", c.at, len(rec), len(csvColumns), strings.Join(csvColumns, ","))
	}
	ev, err := eventFromCSV(rec)
	if err != nil {
		return nil, fmt.Errorf("line %d: %w", c.at, err)
	}
	return ev, nil
}

func (c *csvReader) Line() int { return c.at }

// eventFromCSV is the event of one CSV row. The columns copied from
// details must say what details says: a cell edited in a spreadsheet is
// caught even where the hash does not cover it twice.
func eventFromCSV(rec []string) (*credbrokerv1.LeaseEvent, error) {
	r := make([]string, len(rec))
	for i, c := range rec {
		r[i] = uncell(c)
	}
	seq, err := strconv.ParseInt(r[colSeq], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("seq %q is not a number", r[colSeq])
	}
	at, err := time.Parse(time.RFC3339Nano, r[colTime])
	if err != nil {
		return nil, fmt.Errorf("seq %d: time %q is not an RFC 3339 time", seq, r[colTime])
	}
	var details map[string]string
	if err := json.Unmarshal([]byte(r[colDetails]), &details); err != nil || details == nil {
		return nil, fmt.Errorf("seq %d: details are not a JSON object of strings", seq)
	}
	// encoding/csv reads a quoted \r\n as \n: the copy columns are
	// compared with details read the same way, or a caller's CRLF in a
	// break-glass reason would look like an edit. The event keeps details
	// as they are: they are what the hash covers.
	asRead := make(map[string]string, len(details))
	for k, v := range details {
		asRead[k] = strings.ReplaceAll(v, "\r\n", "\n")
	}
	for _, c := range detailColumns {
		if r[c.col] != asRead[c.key] {
			return nil, fmt.Errorf("seq %d: column %s is %q, but details say %q (the line was edited)", seq, csvColumns[c.col], r[c.col], asRead[c.key])
		}
	}
	if r[colReason] != reasonOf(asRead) {
		return nil, fmt.Errorf("seq %d: column reason is %q, but details say %q (the line was edited)", seq, r[colReason], reasonOf(asRead))
	}
	hash, err1 := hex.DecodeString(r[colHash])
	prev, err2 := hex.DecodeString(r[colPrevHash])
	chain, err3 := strconv.ParseInt(r[colChain], 10, 32)
	switch {
	case err1 != nil:
		return nil, fmt.Errorf("seq %d: hash is not hexadecimal", seq)
	case err2 != nil:
		return nil, fmt.Errorf("seq %d: prev_hash is not hexadecimal", seq)
	case err3 != nil:
		return nil, fmt.Errorf("seq %d: chain %q is not a number", seq, r[colChain])
	}
	return &credbrokerv1.LeaseEvent{
		Seq: seq, Chain: int32(chain), LeaseId: r[colLeaseID], Kind: r[colKind], Actor: r[colActor],
		At: timestamppb.New(at), Details: details, Hash: hash, PrevHash: prev,
	}, nil
}
