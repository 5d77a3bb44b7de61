package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	credbrokerv1 "github.com/credbroker/credbroker/proto/credbroker/v1"
)

func TestHumanDuration(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		in   time.Duration
		want string
	}{
		"Zero":            {0, "0s"},
		"Seconds":         {45 * time.Second, "45s"},
		"NinetySeconds":   {90 * time.Second, "90s"},
		"TwoMinutes":      {2 * time.Minute, "2m"},
		"MinutesSeconds":  {2*time.Minute + 30*time.Second, "2m30s"},
		"FifteenMinutes":  {15 * time.Minute, "15m"},
		"Hour":            {time.Hour, "1h"},
		"HourAndHalf":     {90 * time.Minute, "1h30m"},
		"HourAndSeconds":  {time.Hour + 5*time.Second, "1h5s"},
		"Days":            {48 * time.Hour, "48h"},
		"Fraction":        {1500 * time.Millisecond, "1.5s"},
		"Milliseconds":    {500 * time.Millisecond, "500ms"},
		"Negative":        {-15 * time.Minute, "-15m"},
		"NoZeroTailAtAll": {3*time.Hour + 2*time.Minute, "3h2m"},
	} {
		if got := humanDuration(tc.in); got != tc.want {
			t.Errorf("%s: humanDuration(%v) = %q, want %q", name, tc.in, got, tc.want)
		}
		// People write what humanDuration writes; Go reads it back.
		if back, err := time.ParseDuration(humanDuration(tc.in)); err != nil || back != tc.in {
			t.Errorf("%s: %q parses as %v (%v), want %v", name, humanDuration(tc.in), back, err, tc.in)
		}
	}
	if got := duration(nil); got != "-" {
		t.Errorf("duration(nil) = %q, want -", got)
	}
	if got := duration(durationpb.New(900 * time.Second)); got != "15m" {
		t.Errorf(`duration("900s") = %q, want 15m`, got)
	}
}

func TestRelativeTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		in   time.Duration // from now
		want string
	}{
		"JustIssued":     {15*time.Minute - 100*time.Millisecond, "in 14m"},
		"Future":         {time.Hour, "in 1h"},
		"FutureHours":    {3*time.Hour + 5*time.Minute + 20*time.Second, "in 3h5m"},
		"FutureSeconds":  {45 * time.Second, "in 45s"},
		"FutureDays":     {50 * time.Hour, "in 2d2h"},
		"Past":           {-3*time.Minute - 10*time.Second, "3m ago"},
		"PastSeconds":    {-90 * time.Second, "90s ago"},
		"PastWholeDays":  {-72 * time.Hour, "3d ago"},
		"Now":            {0, "now"},
		"UnderOneSecond": {-300 * time.Millisecond, "now"},
	} {
		if got := relativeTime(now.Add(tc.in), now); got != tc.want {
			t.Errorf("%s: relativeTime(now%+v) = %q, want %q", name, tc.in, got, tc.want)
		}
	}
	ts := timestamppb.New(now.Add(14*time.Minute + 30*time.Second + 123456*time.Microsecond))
	if got := timestamp(ts, false, now); got != "in 14m" {
		t.Errorf("timestamp table = %q", got)
	}
	if got := timestamp(ts, true, now); got != "2025-03-01T12:14:30Z" {
		t.Errorf("timestamp wide = %q, want RFC 3339 in UTC to the second", got)
	}
	if got := timestamp(nil, true, now); got != "-" {
		t.Errorf("timestamp(nil) = %q, want -", got)
	}
}

func TestLeaseState(t *testing.T) {
	t.Parallel()
	for s, want := range map[credbrokerv1.LeaseState]string{
		credbrokerv1.LeaseState_LEASE_STATE_PENDING:     "pending",
		credbrokerv1.LeaseState_LEASE_STATE_ACTIVE:      "active",
		credbrokerv1.LeaseState_LEASE_STATE_REVOKING:    "revoking",
		credbrokerv1.LeaseState_LEASE_STATE_REVOKED:     "revoked",
		credbrokerv1.LeaseState_LEASE_STATE_UNSPECIFIED: "-",
	} {
		if got := leaseState(s).text; got != want {
			t.Errorf("leaseState(%v) = %q, want %q", s, got, want)
		}
	}
}

// TestTableColor: colour codes only when asked, and columns line up on the
// visible text either way.
func TestTableColor(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	leases := []*credbrokerv1.Lease{
		{Id: "l1", Role: "readonly", Backend: "pg", Username: "cb_readonly_a", State: credbrokerv1.LeaseState_LEASE_STATE_ACTIVE,
			Subject: "system:serviceaccount:orders:api", ExpiresAt: timestamppb.New(now.Add(14 * time.Minute))},
		{Id: "l2", Role: "readonly", Backend: "pg", Username: "cb_readonly_b", State: credbrokerv1.LeaseState_LEASE_STATE_REVOKING,
			Subject: "x", SubjectName: "ann@example.com", ExpiresAt: timestamppb.New(now.Add(-3 * time.Minute))},
	}
	var plainOut, colorOut bytes.Buffer
	if err := writeLeases(&plainOut, leases, false, now, false); err != nil {
		t.Fatal(err)
	}
	if err := writeLeases(&colorOut, leases, false, now, true); err != nil {
		t.Fatal(err)
	}
	want := `ID  ROLE      BACKEND  USERNAME       STATE     EXPIRES  HOLDER
l1  readonly  pg       cb_readonly_a  active    in 14m   system:serviceaccount:orders:api
l2  readonly  pg       cb_readonly_b  revoking  3m ago   ann@example.com
`
	if plainOut.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", plainOut.String(), want)
	}
	if strings.Contains(plainOut.String(), "\x1b[") {
		t.Error("colour codes without colour")
	}
	if !strings.Contains(colorOut.String(), "\x1b[32mactive\x1b[0m    in 14m") {
		t.Errorf("coloured table does not colour the state or misaligns it:\n%q", colorOut.String())
	}
	stripped := strings.NewReplacer("\x1b[32m", "", "\x1b[33m", "", "\x1b[0m", "").Replace(colorOut.String())
	if stripped != want {
		t.Errorf("coloured table without its codes:\n%s\nwant:\n%s", stripped, want)
	}
}

// TestDefaultFormatAndColor: table and colour only for a terminal (a
// pseudo-terminal here); a pipe, a file, /dev/null and a buffer get JSON
// and no colour, and NO_COLOR turns colour off.
func TestDefaultFormatAndColor(t *testing.T) {
	t.Parallel()
	env := func(noColor string) func(string) string {
		return func(k string) string {
			if k == "NO_COLOR" {
				return noColor
			}
			return ""
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	file, err := os.Create(t.TempDir() + "/out")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for name, out := range map[string]interface{ Write([]byte) (int, error) }{
		"Pipe": w, "DevNull": devNull, "File": file, "Buffer": &bytes.Buffer{},
	} {
		if got := defaultFormat(out); got != "json" {
			t.Errorf("%s: default format %q, want json", name, got)
		}
		if useColor(out, env("")) {
			t.Errorf("%s: colour on a non-terminal", name)
		}
	}

	tty := openPTY(t)
	if got := defaultFormat(tty); got != "table" {
		t.Errorf("terminal: default format %q, want table", got)
	}
	if !useColor(tty, env("")) {
		t.Error("terminal without NO_COLOR: no colour")
	}
	for _, v := range []string{"1", "true", "0"} {
		if useColor(tty, env(v)) {
			t.Errorf("terminal with NO_COLOR=%s: colour", v)
		}
	}
}

// TestOutputFlag: -o takes the command's formats only; the deprecated
// --format still works, text meaning table; both at once is an error.
func TestOutputFlag(t *testing.T) {
	t.Parallel()
	parse := func(args ...string) (string, error) {
		cmd := &cobra.Command{Use: "x"}
		o := addOutputFlag(cmd, tableFormats...)
		o.deprecatedAlias(cmd, "format", "", map[string]string{"text": outTable})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.ParseFlags(args); err != nil {
			return "", err
		}
		return o.resolve(cmd, &bytes.Buffer{})
	}
	for name, tc := range map[string]struct {
		args    []string
		want    string
		wantErr string
	}{
		"Default":           {nil, "json", ""},
		"Short":             {[]string{"-o", "wide"}, "wide", ""},
		"Long":              {[]string{"--output=yaml"}, "yaml", ""},
		"Unknown":           {[]string{"-o", "xml"}, "", "-o/--output must be table, wide, json or yaml, not \"xml\""},
		"NotForThisCommand": {[]string{"-o", "env"}, "", "not \"env\""},
		"AliasText":         {[]string{"--format", "text"}, "table", ""},
		"AliasJSON":         {[]string{"--format", "json"}, "json", ""},
		"AliasBad":          {[]string{"--format", "xml"}, "", "--format must be text, table, wide, json or yaml"},
		"Both":              {[]string{"--format", "json", "-o", "json"}, "", "not both"},
	} {
		got, err := parse(tc.args...)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one saying %q", name, err, tc.wantErr)
		case tc.wantErr != "":
			if _, ok := err.(usageError); !ok {
				t.Errorf("%s: %v is not a usage error (exit 2)", name, err)
			}
		case err != nil || got != tc.want:
			t.Errorf("%s: %q, %v; want %q", name, got, err, tc.want)
		}
	}
}

// TestYAMLIsTheJSONDocument: -o yaml has the fields of -o json, with the same
// names, order and values.
func TestYAMLIsTheJSONDocument(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 123456000, time.UTC)
	msg := &credbrokerv1.GetInventoryResponse{
		Backends: []*credbrokerv1.InventoryBackend{{Name: "pg", Plugin: "postgres", Sweep: true}},
		Roles: []*credbrokerv1.InventoryRole{{Name: "readonly", Backend: "pg", DefaultTtl: durationpb.New(15 * time.Minute),
			ActiveLeases: 3, Policies: []string{"a", "b"}}},
	}
	lease := &credbrokerv1.GetLeaseResponse{Lease: &credbrokerv1.Lease{Id: "x", State: credbrokerv1.LeaseState_LEASE_STATE_ACTIVE, ExpiresAt: timestamppb.New(now), Renewable: true}}
	for _, tc := range []struct {
		name string
		msg  proto.Message
	}{{"Inventory", msg}, {"Lease", lease}} {
		var js, ym bytes.Buffer
		err := printJSON(&js, tc.msg)
		if err == nil {
			err = printYAML(&ym, tc.msg)
		}
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON, fromYAML any
		if err := json.Unmarshal(js.Bytes(), &fromJSON); err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(ym.Bytes(), &fromYAML); err != nil {
			t.Fatalf("%s: yaml does not parse: %v\n%s", tc.name, err, ym.String())
		}
		a, _ := json.Marshal(fromJSON)
		b, _ := json.Marshal(fromYAML)
		if string(a) != string(b) {
			t.Errorf("%s: yaml document %s\nis not the json one %s\nyaml:\n%s", tc.name, b, a, ym.String())
		}
		if strings.ContainsAny(ym.String(), "{}") {
			t.Errorf("%s: yaml is not in block style:\n%s", tc.name, ym.String())
		}
	}
}
