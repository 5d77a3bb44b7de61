package plugins

import (
	"net"
	"strings"
)

// AdminIdentifier is implemented by a backend's parsed connection (the value
// its [Driver]'s ParseConnection returns) that names in literal config
// fields the server its admin connection reaches and the admin user it logs
// in as. `credbroker config check` uses it to refuse two backends of
// different environments that share an admin (one server, one admin user):
// environments must not share credentials.
//
// It is optional, and only for what the config itself says: a connection
// whose server or user lives inside a secret (a DSN reference, resolved only
// when the backend is opened, never in CI) does not implement it, and is
// compared by its secret references alone.
type AdminIdentifier interface {
	AdminIdentity() AdminIdentity
}

// AdminIdentity is the server and admin user of a backend's admin
// connection, as its config writes them.
type AdminIdentity struct {
	// Addrs are the host:port addresses the admin connection dials (one, or
	// a cluster's seeds), default ports filled in. Compared as written, with
	// host names in lower case: no name is resolved.
	Addrs []string
	// User is the admin user, the backend's default user filled in.
	User string
}

// HostPort returns host:port with host in lower case, for [AdminIdentity.Addrs].
func HostPort(host, port string) string {
	return net.JoinHostPort(strings.ToLower(host), port)
}
