package harness

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// StallProxy is a TCP proxy in front of a real service that, on demand,
// holds back what a client sends once it holds a marker: the way a test
// catches a broker in the middle of a backend call (a root rotation's
// password change, say) when the backend has no lock to hold it on, without
// a hook in the binary. Everything else passes through unchanged, both
// ways, to and from the real service.
//
// A held connection's bytes stay held when its client goes away (kill -9):
// the proxy's connection to the service stays open, and on release the
// held bytes are sent and the service's answer read, as a backend session
// whose client died goes on with the statement it has. That is what a game
// day must survive.
type StallProxy struct {
	// Addr is the proxy's host:port, for the client's config.
	Addr string

	target string
	ln     net.Listener

	mu      sync.Mutex
	match   func(window []byte) bool // nil: nothing is held
	gate    chan struct{}            // closed by the stall's release
	release func()                   // the stall's release
	held    int                      // connections holding bytes now
	closed  bool                     // the test ended
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// stallWindow is how many bytes of what came before a read the marker is
// also looked for in, so that a marker split across two reads is found.
const stallWindow = 512

// NewStallProxy starts a proxy on a free loopback port in front of target
// (host:port). It is closed, with every connection through it, when the
// test ends.
func NewStallProxy(t testing.TB, target string) *StallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &StallProxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

// Stall makes every connection hold what it sends from the read on where
// match first reports true for the bytes read so far (the read and up to
// stallWindow bytes before it, as the client sent them) until release is
// called; a marker already in the window before that read does not count
// again. waiting reports how many connections hold bytes now. release is
// idempotent and also runs when the test ends. One stall at a time.
func (p *StallProxy) Stall(t testing.TB, match func(window []byte) bool) (waiting func() int, release func()) {
	t.Helper()
	p.mu.Lock()
	if p.match != nil {
		p.mu.Unlock()
		t.Fatal("StallProxy.Stall: a stall is already on")
	}
	gate := make(chan struct{})
	release = sync.OnceFunc(func() {
		p.mu.Lock()
		if p.gate == gate {
			p.match, p.gate, p.release = nil, nil, nil
		}
		p.mu.Unlock()
		close(gate)
	})
	p.match, p.gate, p.release = match, gate, release
	p.mu.Unlock()
	t.Cleanup(release)
	waiting = func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.held
	}
	return waiting, release
}

func (p *StallProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.wg.Go(func() { p.serve(c, up) })
		p.mu.Unlock()
	}
}

// serve copies c to up, holding while a stall says so, and up to c; it
// closes both when the service is done with the connection.
func (p *StallProxy) serve(c, up net.Conn) {
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		delete(p.conns, up)
		p.mu.Unlock()
		c.Close()
		up.Close()
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// What the service answers a client that is gone is read and
		// dropped, so the service finishes as it would with a live one.
		_, _ = io.Copy(onlyWrite{c}, up)
		// The service closed the connection (or crashed): the client
		// sees it at once, as it would without the proxy, and not a
		// connection that stays silent until its read timeout.
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	buf := make([]byte, 32<<10)
	var window []byte
	for {
		n, err := c.Read(buf)
		if n > 0 {
			prev := len(window)
			window = append(window, buf[:n]...)
			p.hold(window, prev)
			if len(window) > stallWindow {
				window = append(window[:0], window[len(window)-stallWindow:]...)
			}
			if _, werr := up.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			// The client is gone or done sending: the service reads what
			// it was sent to the end, and answers it.
			if tc, ok := up.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			<-done
			return
		}
	}
}

// hold waits while a stall is on whose match reports true for window but
// not for its first prev bytes (read before).
func (p *StallProxy) hold(window []byte, prev int) {
	p.mu.Lock()
	if p.match == nil || !p.match(window) || p.match(window[:prev]) {
		p.mu.Unlock()
		return
	}
	gate := p.gate
	p.held++
	p.mu.Unlock()
	<-gate
	p.mu.Lock()
	p.held--
	p.mu.Unlock()
}

func (p *StallProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	release := p.release
	p.mu.Unlock()
	if release != nil {
		release()
	}
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// onlyWrite writes to w and reports success even when it cannot: the
// client it writes to may be gone.
type onlyWrite struct{ w io.Writer }

func (o onlyWrite) Write(b []byte) (int, error) {
	_, _ = o.w.Write(b)
	return len(b), nil
}

// ContainsFold reports whether window holds every one of words, ignoring
// ASCII case: a Stall match for a command naming an account, say
// ContainsFold(w, "setuser", admin).
func ContainsFold(window []byte, words ...string) bool {
	lower := bytes.ToLower(window)
	for _, w := range words {
		if !bytes.Contains(lower, bytes.ToLower([]byte(w))) {
			return false
		}
	}
	return true
}
