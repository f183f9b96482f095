package main

import (
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/distgate/distgate/internal/testenv"
)

// The proxies' figures include their children: nginx's workers do the
// work its master was started as.

// family returns pid and its direct children.
func family(pid int) []int { return append([]int{pid}, testenv.Children(pid)...) }

// sum adds f over pid and its children, skipping those that are gone.
func sum[T int | int64 | time.Duration](pid int, f func(int) (T, error)) T {
	var total T
	for _, p := range family(pid) {
		if v, err := f(p); err == nil {
			total += v
		}
	}
	return total
}

// cpuSeconds is the CPU time of pid and its children.
func cpuSeconds(pid int) float64 { return sum(pid, testenv.CPUTime).Seconds() }

// rssKiB is VmRSS of pid and its children.
func rssKiB(pid int) int64 {
	return sum(pid, func(p int) (int64, error) { rss, _, err := testenv.Memory(p); return rss >> 10, err })
}

// fdCount is the number of open file descriptors of pid and its children.
func fdCount(pid int) int { return sum(pid, testenv.FDs) }

// sockCount is the number of open sockets of pid and its children.
func sockCount(pid int) int { return sum(pid, testenv.Sockets) }

// waitFDs polls until cond(count(pid)) holds or timeout passes; it
// reports whether it held. The proxies' own descriptors are the readiness
// signal for "every connection accepted" and "every connection gone".
func waitFDs(pid int, timeout time.Duration, count func(int) int, cond func(int) bool) bool {
	end := time.Now().Add(timeout)
	for {
		if cond(count(pid)) {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// liftNoFile raises the soft open-files limit of t's processes to the
// harness's own (the hard limit, or what run.sh could get) where one is
// lower, and returns the lowest soft limit among them afterwards. Most
// inherit the harness's limit already (Go passes a limit set with
// setrlimit on to its children; HAProxy and nginx set their own from their
// configuration); this makes sure the memory test is not cut short by a
// proxy that started with less.
func (h *harness) liftNoFile(t *target) int {
	lowest := 0
	for _, pid := range family(t.pid()) {
		soft, hard, ok := noFile(pid)
		if !ok {
			continue
		}
		if soft < h.nofile {
			want := unix.Rlimit{Cur: uint64(min(h.nofile, hard)), Max: uint64(hard)}
			if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &want, nil); err != nil {
				logf("%s: raising the open-files limit of pid %d from %d: %v", t.name, pid, soft, err)
			}
			if s, _, ok := noFile(pid); ok {
				soft = s
			}
		}
		if lowest == 0 || soft < lowest {
			lowest = soft
		}
	}
	return lowest
}

// noFile reads a process's soft and hard open-files limits from
// /proc/PID/limits ("unlimited" reads as a very large number).
func noFile(pid int) (soft, hard int, ok bool) {
	s, err := testenv.Limit(pid, "Max open files")
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, false
	}
	num := func(v string) (int, bool) {
		if v == "unlimited" {
			return 1 << 30, true
		}
		n, err := strconv.Atoi(v)
		return n, err == nil
	}
	soft, ok1 := num(f[0])
	hard, ok2 := num(f[1])
	return soft, hard, ok1 && ok2
}
