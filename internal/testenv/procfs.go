package testenv

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// Memory returns a process's resident set size now and its peak (VmRSS and
// VmHWM from /proc/PID/status), in bytes.
func Memory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &rss
		case "VmHWM":
			dst = &hwm
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, k, err)
		}
		*dst = kb << 10
	}
	return rss, hwm, nil
}

// CPUTime returns the user plus system CPU time a process has used
// (utime+stime in /proc/PID/stat).
func CPUTime(pid int) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// utime and stime are fields 14 and 15, i.e. f[11] and f[12].
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// statFields returns the fields of /proc/PID/stat after the command name,
// so f[0] is the state (field 3) and f[i] is field i+3. The command name in
// parentheses may hold spaces, hence the cut at its last parenthesis.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// Children returns the pids whose parent is pid (nginx's workers, say).
func Children(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		if f, err := statFields(child); err == nil && len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// Status returns the value of one line of /proc/PID/status ("Uid", "Groups",
// "CapEff", ...), trimmed.
func Status(pid int, key string) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no %s in /proc/%d/status", key, pid)
}

// Limit returns the soft and hard values of one line of /proc/PID/limits,
// e.g. "Max open files" gives "64 64".
func Limit(pid int, name string) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, name); ok {
			if f := strings.Fields(rest); len(f) >= 2 {
				return f[0] + " " + f[1], nil
			}
		}
	}
	return "", fmt.Errorf("no %q in /proc/%d/limits", name, pid)
}

// FDs returns the number of open file descriptors of a process.
func FDs(pid int) (int, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return len(es), nil
}

// Sockets returns the number of a process's descriptors that are sockets.
// Unlike FDs it does not count the pipes Go keeps pooled for splice(2),
// which come and go with the garbage collector.
func Sockets(pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	es, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range es {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n, nil
}

// Peak is the most a process held while it was watched.
type Peak struct {
	RSS     int64 // highest VmRSS sampled, bytes
	HWM     int64 // VmHWM at the end (the kernel's own peak), bytes
	FDs     int   // most open descriptors sampled
	Sockets int   // most sockets sampled
	Samples int
}

// Watch samples a process's memory and descriptors every interval until the
// returned function is called; that function returns the peaks.
func Watch(pid int, every time.Duration) (stop func() Peak) {
	done := make(chan struct{})
	out := make(chan Peak, 1)
	go func() {
		var p Peak
		t := time.NewTicker(every)
		defer t.Stop()
		sample := func() {
			if rss, hwm, err := Memory(pid); err == nil {
				p.RSS, p.HWM = max(p.RSS, rss), hwm
			}
			if n, err := FDs(pid); err == nil {
				p.FDs = max(p.FDs, n)
			}
			if n, err := Sockets(pid); err == nil {
				p.Sockets = max(p.Sockets, n)
			}
			p.Samples++
		}
		sample()
		for {
			select {
			case <-t.C:
				sample()
			case <-done:
				sample()
				out <- p
				return
			}
		}
	}()
	return func() Peak { close(done); return <-out }
}
