package external

import (
	"sync"
	"syscall"
)

// prSetDumpable is PR_SET_DUMPABLE from linux/prctl.h.
const prSetDumpable = 4

var protectOnce sync.Once

// protectBroker makes the broker's process not dumpable before its first
// program starts. A program runs as the broker's user, and a process of the
// same user may otherwise read the broker's /proc/<pid>/environ and memory:
// the store's DSN, every backend's secrets. Not dumpable, those are the
// root's only, and the broker leaves no core dump.
func protectBroker() {
	protectOnce.Do(func() {
		_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0)
	})
}
