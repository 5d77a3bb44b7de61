package main

import (
	"os"
	"testing"

	"github.com/credbroker/credbroker/test/harness"
)

// openPTY opens a pseudo-terminal and returns its terminal end, or skips
// the test where the system has none to give.
func openPTY(t *testing.T) *os.File {
	_, pts := harness.OpenPTY(t)
	return pts
}
