package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

// exportSample holds events with every shape the history has: a lease's, a
// denial without a lease, a checkpoint, and details a spreadsheet would run
// as formulas, with quotes, commas and line breaks (\n and \r\n).
func exportSample() []*credbrokerv1.LeaseEvent {
	at := time.Date(2026, 11, 28, 10, 0, 0, 123456000, time.UTC)
	return []*credbrokerv1.LeaseEvent{
		{Seq: 1, Chain: 3, LeaseId: "lease-1", Kind: "issued", Actor: "test:app", At: timestamppb.New(at),
			Details: map[string]string{"role": "readonly", "backend": "pg", "username": "cb_readonly_x", "subject": "app", "issuer": "test", "break_glass": "false"},
			Hash:    []byte{1, 2, 3}},
		{Seq: 2, Chain: 7, Kind: "denied", Actor: "=cmd|' /C calc'!A0", At: timestamppb.New(at.Add(time.Second)),
			Details: map[string]string{"role": "reports", "count": "1"}, Hash: []byte{4}},
		{Seq: 3, Chain: 3, LeaseId: "lease-1", Kind: "break_glass", Actor: "test:app", At: timestamppb.New(at.Add(2 * time.Second)),
			Details:  map[string]string{"role": "readonly", "break_glass_reason": "@SUM(1+1)\nincident, \"42\"\r\ntyped on Windows"},
			PrevHash: []byte{1, 2, 3}, Hash: []byte{5}},
		{Seq: 4, Chain: 0, Kind: "checkpoint", Actor: "checkpoint", At: timestamppb.New(at.Add(3 * time.Second)),
			Details: map[string]string{"chain.3": "3:05", "chain.7": "2:04"}, Hash: []byte{6}},
		{Seq: 5, Chain: 3, LeaseId: "lease-1", Kind: "revoked", Actor: "'quoted", At: timestamppb.New(at.Add(4 * time.Second)),
			Details: map[string]string{"reason": "-1 expired"}, PrevHash: []byte{5}, Hash: []byte{7}},
	}
}

func writeSample(t *testing.T, format string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := newEventWriter(format, &buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range exportSample() {
		if err := w.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readAll(format string, data []byte) ([]*credbrokerv1.LeaseEvent, error) {
	r, err := newEventReader(format, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var out []*credbrokerv1.LeaseEvent
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

func TestExportFormatsRoundTrip(t *testing.T) {
	t.Parallel()
	for _, format := range []string{formatJSONL, formatCSV} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			data := writeSample(t, format)
			for _, given := range []string{format, ""} { // named, and told by the first line
				got, err := readAll(given, data)
				if err != nil {
					t.Fatalf("read back (format %q): %v", given, err)
				}
				want := exportSample()
				if len(got) != len(want) {
					t.Fatalf("read back %d events, want %d", len(got), len(want))
				}
				for i := range want {
					if !proto.Equal(got[i], want[i]) {
						t.Errorf("event %d read back as %v, want %v", i, got[i], want[i])
					}
				}
			}
		})
	}
}

func TestCSVExportCells(t *testing.T) {
	t.Parallel()
	data := writeSample(t, formatCSV)
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatalf("the CSV does not parse: %v", err)
	}
	if !slices.Equal(recs[0], csvColumns) {
		t.Errorf("header = %v", recs[0])
	}
	if len(recs) != 1+len(exportSample()) {
		t.Fatalf("%d rows, want a header and %d events", len(recs), len(exportSample()))
	}
	col := func(row int, name string) string { return recs[row][slices.Index(csvColumns, name)] }
	for _, c := range []struct {
		row        int
		name, want string
	}{
		{1, "time", "2026-11-28T10:00:00.123456Z"},
		{1, "role", "readonly"},
		{1, "break_glass", "false"},
		{1, "hash", "010203"},
		{1, "prev_hash", ""},
		{1, "chain", "3"},
		{1, "details", `{"backend":"pg","break_glass":"false","issuer":"test","role":"readonly","subject":"app","username":"cb_readonly_x"}`},
		{2, "actor", "'=cmd|' /C calc'!A0"}, // not a formula in a spreadsheet
		{2, "lease_id", ""},
		{3, "reason", "'@SUM(1+1)\nincident, \"42\"\ntyped on Windows"}, // a quoted \r\n reads back as \n
		{4, "details", `{"chain.3":"3:05","chain.7":"2:04"}`},
		{5, "actor", "''quoted"},
		{5, "reason", "'-1 expired"},
	} {
		if got := col(c.row, c.name); got != c.want {
			t.Errorf("row %d, %s = %q, want %q", c.row, c.name, got, c.want)
		}
	}
}

func TestCSVExportEditedCell(t *testing.T) {
	t.Parallel()
	data := string(writeSample(t, formatCSV))
	for name, tc := range map[string]struct{ from, to, want string }{
		"CopiedColumn": {",readonly,pg,", ",admin,pg,", "line 2: seq 1: column role is \"admin\", but details say \"readonly\""},
		"Header":       {"seq,time", "seq,when", "line 1: not a credbroker CSV export"},
		"Hash":         {",010203,,3", ",01020x,,3", "line 2: seq 1: hash is not hexadecimal"},
		"Details":      {`{""chain.3""`, `{""chain.3"":1,""x""`, "line 7: seq 4: details are not a JSON object of strings"}, // row 3 takes three lines
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			edited := strings.Replace(data, tc.from, tc.to, 1)
			if edited == data {
				t.Fatalf("%q is not in the CSV:\n%s", tc.from, data)
			}
			_, err := readAll("", []byte(edited))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("reading the edited CSV: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseAnchor(t *testing.T) {
	t.Parallel()
	a, err := parseAnchor("1234:0a0b")
	if err != nil || a.seq != 1234 || !bytes.Equal(a.hash, []byte{10, 11}) || a.String() != "1234:0a0b" {
		t.Errorf("parseAnchor = %v, %v", a, err)
	}
	for _, bad := range []string{"", "1234", "x:0a", "12:zz", "12:"} {
		if _, err := parseAnchor(bad); err == nil {
			t.Errorf("parseAnchor(%q) accepted it", bad)
		}
	}
}
