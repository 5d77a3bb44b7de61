//go:build !linux

package external

import (
	"os"
	"os/exec"
)

// execOpenFile leaves cmd running the path: without /proc/self/fd, what
// runs is the file at the path when it starts, which a process that may
// write the file or its directory could have replaced since it was hashed.
func execOpenFile(*exec.Cmd, *os.File) {}
