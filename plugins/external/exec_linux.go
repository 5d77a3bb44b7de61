package external

import (
	"os"
	"os/exec"
	"strconv"
)

// execOpenFile makes cmd run the open file exe rather than its path: exe
// goes to the program as its next descriptor, and the kernel execs
// /proc/self/fd/N, the very file openProgram hashed. The descriptor stays
// open in the program, read-only, on its own executable (scripts need it:
// their interpreter opens that path).
func execOpenFile(cmd *exec.Cmd, exe *os.File) {
	cmd.ExtraFiles = append(cmd.ExtraFiles, exe)
	cmd.Path = "/proc/self/fd/" + strconv.Itoa(2+len(cmd.ExtraFiles))
}
