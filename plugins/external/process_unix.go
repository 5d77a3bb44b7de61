//go:build unix

package external

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

const (
	terminate = syscall.SIGTERM
	kill      = syscall.SIGKILL
)

// setProcAttr puts the program in a process group of its own, so stopping
// it stops what it started too.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup sends sig to the program's process group.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process == nil {
		return
	}
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// checkOwner refuses the program's file f (opened from path) unless, as
// sshd's StrictModes asks of its files, it is a regular file owned by root
// or by the broker's user, and neither it nor its directory is writable by
// anyone else: whoever may write either could swap the program for one that
// gets the backend's secrets. The hash guards the content; this guards that
// only the file's owner can make a new pinned content appear.
func checkOwner(path string, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat the program: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if err := safe(path, "the program", fi); err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("resolve the program's path: %w", err)
	}
	dir := filepath.Dir(real)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("stat the program's directory: %w", err)
	}
	return safe(dir, "the program's directory", di)
}

// safe checks one file or directory for checkOwner.
func safe(path, what string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("stat %s: no owner", path)
	}
	if uid := os.Getuid(); st.Uid != 0 && int(st.Uid) != uid {
		return &UnsafeProgramError{Path: path, Msg: fmt.Sprintf("%s is owned by uid %d, neither root nor the broker's user (uid %d)", what, st.Uid, uid)}
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return &UnsafeProgramError{Path: path, Msg: fmt.Sprintf("%s is writable by its group or others (mode %04o); run chmod go-w %s", what, perm, path)}
	}
	return nil
}
