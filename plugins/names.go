package plugins

import (
	"crypto/rand"
	"net"
	"strings"

	"github.com/credbroker/credbroker/secret"
)

// suffixLen is the length of the random part of a username: 10 base32
// characters are 50 bits, so concurrent creates never collide in practice.
const suffixLen = 10

// NewUsername returns "cb_<role>_<random>" no longer than limit, using only
// lower-case letters, digits and underscores whatever the role name holds. The
// role part is shortened to make room; the random suffix is never shortened.
func NewUsername(role string, limit int) string {
	const prefix = ManagedPrefix
	var b strings.Builder
	for _, r := range strings.ToLower(role) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := b.String()
	room := limit - len(prefix) - 1 - suffixLen
	if room < 0 {
		room = 0
	}
	if len(name) > room {
		name = name[:room]
	}
	suffix := strings.ToLower(rand.Text()[:suffixLen])
	if name == "" {
		return prefix + suffix
	}
	return prefix + name + "_" + suffix
}

// passwordAlphabet avoids characters that need quoting in a URI, a DSN or a shell.
const passwordAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// NewPassword returns 32 characters drawn uniformly from crypto/rand (about
// 190 bits).
func NewPassword() secret.Value {
	const n = 32
	out := make([]byte, 0, n)
	buf := make([]byte, 64)
	for len(out) < n {
		_, _ = rand.Read(buf) // crypto/rand.Read never returns an error
		for _, c := range buf {
			// Reject bytes past the largest multiple of the alphabet size, so
			// every character is equally likely.
			if int(c) < 256-256%len(passwordAlphabet) && len(out) < n {
				out = append(out, passwordAlphabet[int(c)%len(passwordAlphabet)])
			}
		}
	}
	return secret.New(string(out))
}

// IsLoopback reports whether host (a name or an IP address, without a port)
// is this machine: "localhost" or a loopback address. Plugins use it to warn
// about admin connections that cross the network in plain text.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
