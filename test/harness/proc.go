package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Pid returns the process id of the running broker; the test fails when it
// is not running.
func (b *Broker) Pid(t testing.TB) int {
	t.Helper()
	b.mu.Lock()
	p := b.proc
	b.mu.Unlock()
	if p == nil {
		t.Fatal("harness: Pid: the broker is not running")
	}
	return p.cmd.Process.Pid
}

// Children returns the pids of the processes whose parent is pid, sorted,
// as pgrep -P finds them: by the parent field of every /proc/<n>/stat,
// which is readable even for a parent that made itself non-dumpable (as
// `credbroker serve` does before it starts a plugin program). Linux only.
func Children(pid int) ([]int, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the process ended
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			return nil, fmt.Errorf("%s: no command name", f)
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 {
			return nil, fmt.Errorf("%s: too short", f)
		}
		ppid, err := strconv.Atoi(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%s: parent %q is not a pid", f, fields[1])
		}
		if ppid != pid {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(s[:strings.IndexByte(s, ' ')]))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// ChildrenRunning returns the children of pid (see [Children]) whose
// executable is path: what /proc/<child>/exe links to or, where that
// cannot be read, the first word of its command line.
func ChildrenRunning(pid int, path string) ([]int, error) {
	kids, err := Children(pid)
	if err != nil {
		return nil, err
	}
	want, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, k := range kids {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", k)); err == nil {
			if strings.TrimSuffix(exe, " (deleted)") == want {
				out = append(out, k)
			}
			continue
		}
		// Not ours to read: the name it was started by.
		if args, err := Cmdline(k); err == nil && (args[0] == path || args[0] == want) {
			out = append(out, k)
		}
	}
	return out, nil
}

// Cmdline returns the arguments of process pid, from /proc/<pid>/cmdline.
func Cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"), nil
}

// Environ returns the environment of process pid, from
// /proc/<pid>/environ (a process of the same user that is dumpable).
func Environ(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"), nil
}
