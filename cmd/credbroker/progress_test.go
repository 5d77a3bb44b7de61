package main

import (
	"strings"
	"testing"
	"time"
)

func TestFormatProgress(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		n       int64
		elapsed time.Duration
		want    string
	}{
		"Running":   {12000, 3 * time.Second, "exported 12000 events, 4000 events/s, 3s elapsed"},
		"Rounded":   {5000, 1234 * time.Millisecond, "exported 5000 events, 4052 events/s, 1.2s elapsed"},
		"NoTimeYet": {5000, 0, "exported 5000 events, - events/s, 0s elapsed"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := formatProgress("exported", tc.n, tc.elapsed); got != tc.want {
				t.Errorf("formatProgress = %q, want %q", got, tc.want)
			}
		})
	}
}

// fakeClock advances by step each time it is read.
type fakeClock struct {
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time {
	c.t = c.t.Add(c.step)
	return c.t
}

func TestProgress(t *testing.T) {
	t.Parallel()
	run := func(on bool, events int, step time.Duration) string {
		var buf strings.Builder
		clock := &fakeClock{t: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC), step: step}
		p := newProgress(&buf, on, "exported", clock.now)
		for range events {
			p.add()
		}
		p.done()
		return buf.String()
	}
	t.Run("OffWritesNothing", func(t *testing.T) {
		t.Parallel()
		if out := run(false, 20000, time.Second); out != "" {
			t.Errorf("progress off wrote %q", out)
		}
	})
	t.Run("ShortExportWritesNothing", func(t *testing.T) {
		t.Parallel()
		if out := run(true, progressAfter-1, time.Second); out != "" {
			t.Errorf("an export of %d events showed progress: %q", progressAfter-1, out)
		}
	})
	t.Run("LongExportRedrawsAndClears", func(t *testing.T) {
		t.Parallel()
		// Each read of the clock is 100 ms later: a redraw is due every
		// third read at most.
		out := run(true, 20000, 100*time.Millisecond)
		draws := strings.Count(out, "exported ")
		if draws < 2 {
			t.Fatalf("progress drawn %d times over 20000 events: %q", draws, out)
		}
		// 20000-progressAfter events, the clock read every 64: 234 reads,
		// a redraw at most every 3 of them.
		if limit := (20000-progressAfter)/64/3 + 2; draws > limit {
			t.Errorf("progress drawn %d times, more than once per %s (%d)", draws, progressEvery, limit)
		}
		if !strings.HasPrefix(out, "\rexported 5056 events") {
			t.Errorf("the first line is %q", out[:min(len(out), 40)])
		}
		if !strings.HasSuffix(out, "\r\x1b[K") {
			t.Errorf("the progress line is not cleared at the end: %q", out[max(0, len(out)-40):])
		}
		if strings.Contains(out, "\n") {
			t.Error("the progress line wrote a newline")
		}
	})
}
