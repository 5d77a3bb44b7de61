package main

import (
	"fmt"
	"strings"
	"time"
)

// timeArgForms says what parseTimeArg accepts, for help texts and errors.
const timeArgForms = "a duration back from now (24h, 90m), an RFC 3339 time (2026-11-28T10:00:00Z) or a local date or time (2026-11-28, 2026-11-28 10:00:00)"

// localLayouts are the zone-less forms parseTimeArg reads in local time, as
// journalctl --since does: a date is its midnight.
var localLayouts = []string{"2006-01-02", "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02T15:04"}

// parseTimeArg reads a --since or --until value: a Go duration counted back
// from now (as docker logs --since reads one), an RFC 3339 time, or a date or
// time without a zone, read in loc. The error says which forms are accepted.
func parseTimeArg(s string, now time.Time, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration counts back from now, so it cannot be negative", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range localLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want %s", s, timeArgForms)
}
