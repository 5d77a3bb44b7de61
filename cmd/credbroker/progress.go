package main

import (
	"fmt"
	"io"
	"time"
)

// progressAfter is how many events pass before a progress line is shown:
// a short export finishes before anyone would read one.
const progressAfter = 5000

// progressEvery is how often the progress line is redrawn at most.
const progressEvery = 250 * time.Millisecond

// progress is a line on a terminal's stderr, redrawn in place with \r,
// saying how many events went by, how fast, and for how long. It writes
// nothing when off (stderr is not a terminal), so logs and pipes stay clean.
type progress struct {
	w     io.Writer
	on    bool
	what  string // "exported", "verified"
	now   func() time.Time
	start time.Time
	last  time.Time
	n     int64
	shown bool
}

// newProgress starts a progress line on w; on says whether to draw it (w is
// a terminal).
func newProgress(w io.Writer, on bool, what string, now func() time.Time) *progress {
	return &progress{w: w, on: on, what: what, now: now, start: now()}
}

// add counts one event and redraws the line when it is due.
func (p *progress) add() {
	p.n++
	// The clock is read every 64 events, not on every one.
	if !p.on || p.n < progressAfter || p.n%64 != 0 {
		return
	}
	t := p.now()
	if p.shown && t.Sub(p.last) < progressEvery {
		return
	}
	p.last, p.shown = t, true
	fmt.Fprintf(p.w, "\r%s\x1b[K", formatProgress(p.what, p.n, t.Sub(p.start)))
}

// done clears the line, so what is printed next starts on a clean one.
func (p *progress) done() {
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}

// formatProgress is the text of the progress line.
func formatProgress(what string, n int64, elapsed time.Duration) string {
	rate := "-"
	if s := elapsed.Seconds(); s > 0 {
		rate = fmt.Sprintf("%.0f", float64(n)/s)
	}
	return fmt.Sprintf("%s %d events, %s events/s, %s elapsed", what, n, rate, elapsed.Round(100*time.Millisecond))
}
