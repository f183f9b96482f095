package main

import (
	"time"

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
