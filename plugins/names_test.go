package plugins

import (
	"regexp"
	"testing"
)

// FuzzNewUsername checks that any role name gives a username of lower-case
// letters, digits and underscores, within any limit of 16 or more.
func FuzzNewUsername(f *testing.F) {
	valid := regexp.MustCompile(`^cb_[a-z0-9_]+$`)
	f.Add("orders-readonly", 63)
	f.Add("", 16)
	f.Add("Ünïcødé ROLE with spaces and a very long name that goes on and on", 16)
	f.Add("İK\x00\xff", 32)
	f.Fuzz(func(t *testing.T, role string, limit int) {
		limit = 16 + int(uint(limit)%256) // every input tests a limit of 16 or more
		got := NewUsername(role, limit)
		if !valid.MatchString(got) {
			t.Errorf("NewUsername(%q, %d) = %q, not ^cb_[a-z0-9_]+$", role, limit, got)
		}
		if len(got) > limit {
			t.Errorf("NewUsername(%q, %d) = %q, %d bytes long", role, limit, got, len(got))
		}
	})
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST": true, "127.0.0.1": true, "127.8.9.10": true, "::1": true,
		"10.0.0.1": false, "redis.internal": false, "": false, "localhost.evil.example": false, "[::1]": false,
	} {
		if got := IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %t, want %t", host, got, want)
		}
	}
}
