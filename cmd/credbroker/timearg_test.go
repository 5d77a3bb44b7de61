package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseTimeArg(t *testing.T) {
	t.Parallel()
	berlin := time.FixedZone("CET", 3600)
	now := time.Date(2026, 11, 29, 15, 30, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		in   string
		want time.Time
	}{
		"Duration":            {"24h", now.Add(-24 * time.Hour)},
		"DurationMixed":       {"1h30m", now.Add(-90 * time.Minute)},
		"Zero":                {"0s", now},
		"RFC3339":             {"2026-11-28T10:00:00Z", time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)},
		"RFC3339Offset":       {"2026-11-28T10:00:00+02:00", time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)},
		"RFC3339Fraction":     {"2026-11-28T10:00:00.123456Z", time.Date(2026, 11, 28, 10, 0, 0, 123456000, time.UTC)},
		"DateIsLocalMidnight": {"2026-11-28", time.Date(2026, 11, 28, 0, 0, 0, 0, berlin)},
		"LocalTime":           {"2026-11-28 10:15:00", time.Date(2026, 11, 28, 10, 15, 0, 0, berlin)},
		"LocalTimeT":          {"2026-11-28T10:15", time.Date(2026, 11, 28, 10, 15, 0, 0, berlin)},
		"Spaces":              {" 2h ", now.Add(-2 * time.Hour)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := parseTimeArg(tc.in, now, berlin)
			if err != nil {
				t.Fatalf("parseTimeArg(%q): %v", tc.in, err)
			}
			if !got.Equal(tc.want) {
				t.Errorf("parseTimeArg(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
	for name, in := range map[string]string{
		"Empty":       "",
		"Word":        "yesterday",
		"Negative":    "-1h",
		"BadDate":     "2026-13-01",
		"NoUnit":      "24",
		"USDate":      "11/28/2026",
		"HalfRFC3339": "2026-11-28T10",
	} {
		t.Run("Rejects"+name, func(t *testing.T) {
			t.Parallel()
			_, err := parseTimeArg(in, now, berlin)
			if err == nil {
				t.Fatalf("parseTimeArg(%q) accepted it", in)
			}
			if name != "Negative" && !strings.Contains(err.Error(), "RFC 3339") {
				t.Errorf("the error does not say the accepted forms: %v", err)
			}
		})
	}
}
