package broker

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/grpchealth"
)

type countingPinger struct {
	pings atomic.Int32
	err   atomic.Pointer[error]
}

func (p *countingPinger) Ping(context.Context) error {
	p.pings.Add(1)
	if e := p.err.Load(); e != nil {
		return *e
	}
	return nil
}

// TestHealthCachesPing: a flood of anonymous health checks costs the store
// one ping per healthCacheFor, and a store that goes down is reported once
// the cached answer is older than that.
func TestHealthCachesPing(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	p := &countingPinger{}
	h := newHealthChecker(p, clock)
	check := func() grpchealth.Status {
		resp, err := h.Check(t.Context(), &grpchealth.CheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}

	var wg sync.WaitGroup
	for range 500 {
		wg.Go(func() {
			if s := check(); s != grpchealth.StatusServing {
				t.Errorf("status %v, want SERVING", s)
			}
		})
	}
	wg.Wait()
	if n := p.pings.Load(); n != 1 {
		t.Errorf("500 health checks pinged the store %d times, want 1", n)
	}

	down := errors.New("store down")
	p.err.Store(&down)
	if s := check(); s != grpchealth.StatusServing {
		t.Errorf("within the cache time: %v, want the cached SERVING", s)
	}
	advance(healthCacheFor)
	if s := check(); s != grpchealth.StatusNotServing {
		t.Errorf("after the cache time, store down: %v, want NOT_SERVING", s)
	}
	if n := p.pings.Load(); n != 2 {
		t.Errorf("store pinged %d times, want 2", n)
	}
	// A clock that steps back does not pin the cached answer.
	p.err.Store(nil)
	advance(-time.Hour)
	if s := check(); s != grpchealth.StatusServing {
		t.Errorf("after the clock stepped back: %v, want a fresh SERVING", s)
	}
}

// TestReadyz: GET /readyz answers 200 while the store answers and 503 once
// it does not, as the health check does, for probes that can only GET.
func TestReadyz(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	p := &countingPinger{}
	h := newHealthChecker(p, func() time.Time { return now })
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.serveReady(rec, httptest.NewRequest(http.MethodGet, ReadyPath, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != http.StatusOK || body != "ready\n" {
		t.Errorf("store up: %d %q, want 200 ready", code, body)
	}
	down := errors.New("store down")
	p.err.Store(&down)
	now = now.Add(healthCacheFor)
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "lease store") {
		t.Errorf("store down: %d %q, want 503 naming the lease store", code, body)
	}
}
