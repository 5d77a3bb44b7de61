package main

import (
	"syscall"
	"testing"
	"time"
)

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{
		"SIGTERM": syscall.SIGTERM, "TERM": syscall.SIGTERM, "term": syscall.SIGTERM,
		"HUP": syscall.SIGHUP, "SIGINT": syscall.SIGINT, "15": syscall.SIGTERM, "9": syscall.SIGKILL,
		"usr1": syscall.SIGUSR1,
	} {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "999", "SIGBOGUS", "SIG", "TERM "} {
		if got, err := parseSignal(bad); err == nil {
			t.Errorf("parseSignal(%q) = %v, want an error", bad, got)
		}
	}
}

func TestRotateMargin(t *testing.T) {
	for ttl, want := range map[time.Duration]time.Duration{
		2 * time.Second:  time.Second,
		3 * time.Second:  time.Second,
		15 * time.Minute: 5 * time.Minute,
		time.Hour:        20 * time.Minute,
	} {
		if got := rotateMargin(ttl); got != want {
			t.Errorf("rotateMargin(%s) = %s, want %s", ttl, got, want)
		}
	}
}
