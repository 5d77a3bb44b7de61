//go:build !linux

package main

import (
	"os"
	"testing"
)

// openPTY skips: the test opens a pseudo-terminal on Linux only.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	t.Skip("pseudo-terminals are opened on Linux only")
	return nil
}
