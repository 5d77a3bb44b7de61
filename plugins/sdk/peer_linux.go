package sdk

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

// From linux/prctl.h.
const (
	prSetDumpable = 4
	prSetName     = 15
)

// protect makes the program not dumpable, first thing: a process of the same
// user then cannot read its /proc/<pid>/environ (the backend's resolved env,
// its admin secrets) or memory, nor ptrace it, and it leaves no core dump.
// Only root, with CAP_SYS_PTRACE, still can.
func protect() error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0); errno != 0 {
		return fmt.Errorf("make the program not dumpable (prctl PR_SET_DUMPABLE): %w", errno)
	}
	// The broker runs the file it hashed as /proc/self/fd/4, which names the
	// process "4": give it back the name of its path, for top and pgrep.
	if name := filepath.Base(os.Args[0]); name != "" {
		b := append([]byte(name)[:min(len(name), 15):min(len(name), 15)], 0)
		_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetName, uintptr(unsafe.Pointer(&b[0])), 0)
	}
	return nil
}

// peerPID is the process id of the other end of a unix socket connection,
// from SO_PEERCRED: the process that connected, whatever uid it runs as.
func peerPID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("a %T, not a unix socket connection", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return int(cred.Pid), nil
}

// brokerOnly wraps the inherited listener so that only the broker, the
// program's parent, is served; see [parentOnly].
func brokerOnly(l net.Listener) net.Listener {
	return &parentOnly{Listener: l, want: os.Getppid, log: os.Stderr}
}
