package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Memory figures come from /proc/<pid>/status, which Linux lets any user
// read, also for a process that made itself non-dumpable (as `credbroker
// serve` does): VmRSS is the resident set now, VmHWM its peak so far.

// procStatusKB returns the field (VmRSS, VmHWM …) of /proc/<pid>/status, in
// kB. A process that has exited (or is a zombie, whose memory is gone)
// has none.
func procStatusKB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc/%d/status: %s: %q", pid, field, v)
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// mib shows kB as MiB.
func mib(kb int64) string {
	if kb <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
}

// rssSampler reads a field of /proc/<pid>/status every interval until
// stopped and keeps the largest value seen.
type rssSampler struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	peak  int64
	n     int
}

// sampleMemory starts sampling field of pid every interval.
func sampleMemory(pid int, field string, every time.Duration) *rssSampler {
	s := &rssSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if kb, err := procStatusKB(pid, field); err == nil {
				s.mu.Lock()
				s.peak = max(s.peak, kb)
				s.n++
				s.mu.Unlock()
			}
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the peak (kB) and how many samples
// were taken.
func (s *rssSampler) stop() (peakKB int64, samples int) {
	close(s.stopc)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.n
}
