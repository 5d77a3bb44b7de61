//go:build linux

package sdk

import (
	"fmt"
	"io"
	"net"
)

// parentOnly is a listener that serves only connections made by the process
// want returns (the broker: the program's parent, read at every accept, so a
// broker that died is not replaced by a process that got its pid). Any other
// connection, even from a process of the same user, is closed at once,
// before a byte is read: a sibling program that found the socket cannot call
// Open, Create or Revoke on this backend.
type parentOnly struct {
	net.Listener
	want func() int
	log  io.Writer
}

func (l *parentOnly) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		pid, err := peerPID(c)
		switch {
		case err != nil:
			fmt.Fprintf(l.log, "refused a connection: cannot tell who made it: %v\n", err)
		case pid != l.want():
			fmt.Fprintf(l.log, "refused a connection from process %d: only the broker (process %d) may connect\n", pid, l.want())
		default:
			return c, nil
		}
		_ = c.Close()
	}
}
