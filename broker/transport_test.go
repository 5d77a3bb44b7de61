package broker

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBodyDeadline: a trickled body is cut at the deadline; a response that
// takes longer than the deadline, once the body is in, is not.
func TestBodyDeadline(t *testing.T) {
	t.Parallel()
	const d = 500 * time.Millisecond
	srv := httptest.NewServer(bodyDeadline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost { // a GET's handler does not read its body
			if _, err := io.ReadAll(r.Body); err != nil {
				http.Error(w, err.Error(), http.StatusRequestTimeout)
				return
			}
		}
		// A slow stream: the handler answers after three deadlines.
		w.WriteHeader(http.StatusOK)
		for i := range 3 {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(d):
			}
			fmt.Fprintf(w, "part %d\n", i)
			http.NewResponseController(w).Flush()
		}
	}), d))
	defer srv.Close()

	t.Run("Trickle", func(t *testing.T) {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
		start := time.Now()
		go func() {
			for range 40 { // 8s: far longer than the deadline
				if _, err := conn.Write([]byte("x")); err != nil {
					return
				}
				time.Sleep(200 * time.Millisecond) // the attacker's pace
			}
		}()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to a trickled body: %v", err)
		}
		res.Body.Close()
		// Slack for a loaded machine, still well before the trickle ends.
		if res.StatusCode != http.StatusRequestTimeout || time.Since(start) > 10*d {
			t.Errorf("trickled body: HTTP %d after %s, want 408 within %s", res.StatusCode, time.Since(start), 10*d)
		}
	})

	t.Run("LongResponseWithoutBody", func(t *testing.T) {
		res, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil || strings.Count(string(body), "part") != 3 {
			t.Errorf("a bodyless request answered slowly: %q, %v", body, err)
		}
	})

	t.Run("LongResponse", func(t *testing.T) {
		res, err := http.Post(srv.URL, "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil || strings.Count(string(body), "part") != 3 {
			t.Errorf("a response longer than the body deadline: %q, %v", body, err)
		}
	})
}

// TestLimitListener: at most n connections are accepted at once; closing
// one lets the next in; Close stops an Accept waiting for a slot.
func TestLimitListener(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := limitListener(inner, 2)
	accepted := make(chan net.Conn, 10)
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while two are open")
	case <-time.After(300 * time.Millisecond):
	}
	first.Close()
	first.Close() // a second Close gives back nothing more
	third := <-accepted
	second.Close()
	third.Close()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-acceptErr:
		if err == nil {
			t.Error("Accept after Close returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}
