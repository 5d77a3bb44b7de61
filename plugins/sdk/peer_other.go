//go:build !linux

package sdk

import "net"

// protect does nothing where there is no prctl(PR_SET_DUMPABLE).
func protect() error { return nil }

// brokerOnly returns l as is: without SO_PEERCRED the program cannot tell
// who connected, and the socket's private directory is the only guard.
func brokerOnly(l net.Listener) net.Listener { return l }
