package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestStartDebug: the profiler answers on a loopback address, stops with
// its stop function, and is refused off loopback.
func TestStartDebug(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	addr, stop, err := startDebug("127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("GET goroutine profile: %s, %.80q", resp.Status, body)
	}
	stop()
	if _, err := http.Get("http://" + addr.String() + "/debug/pprof/"); err == nil {
		t.Error("the profiler still answers after stop")
	}
	for _, bad := range []string{"0.0.0.0:6060", "192.0.2.1:6060", "6060"} {
		if _, _, err := startDebug(bad, log); err == nil {
			t.Errorf("--debug-listen %s was accepted", bad)
		}
	}
	if a, stop, err := startDebug("", log); err != nil || a != nil {
		t.Errorf("an empty --debug-listen served %v, %v", a, err)
	} else {
		stop()
	}
}
