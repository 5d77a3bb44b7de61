package main

import (
	"fmt"
	"net"
)

func listenTCP(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (is another credbroker running? pass --listen to use another port)", addr, err)
	}
	return ln, nil
}
