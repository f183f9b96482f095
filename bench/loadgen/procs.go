package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a process the harness started, in its own process group so that
// stopping it also stops what it forked (nginx workers, erl_child_setup) and
// nothing else.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	once sync.Once
}

var (
	procsMu sync.Mutex
	procs   = map[*proc]struct{}{}
)

// startProc starts argv with stdout and stderr going to logPath.
func startProc(name, logPath string, env []string, argv ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	procsMu.Lock()
	procs[p] = struct{}{}
	procsMu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group and waits up to 5 s; if the
// leader is still there, it SIGKILLs the group (safe then: a group id is
// not reused while its leader exists). Only groups this harness created are
// signalled. Calling stop again does nothing.
func (p *proc) stop() {
	p.once.Do(func() {
		procsMu.Lock()
		delete(procs, p)
		procsMu.Unlock()
		if p.exited() {
			return
		}
		pgid := p.pid()
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(5 * time.Second):
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	})
}

// stopAll stops every process still running.
func stopAll() {
	procsMu.Lock()
	var ps []*proc
	for p := range procs {
		ps = append(ps, p)
	}
	procsMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
}

// tail returns the last lines of the process's log, for error messages.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitPort polls until addr accepts a TCP connection, p exits, or timeout.
func waitPort(p *proc, addr string, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited before listening on %s:\n%s", p.name, addr, p.tail(20))
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	name := addr
	if p != nil {
		name = p.name + " on " + addr
		return fmt.Errorf("%s: not listening after %v:\n%s", name, timeout, p.tail(20))
	}
	return fmt.Errorf("%s: not listening after %v", name, timeout)
}

// freePort returns a port that is free on every given IPv4 address now.
func freePort(ips ...string) (int, error) {
	for range 200 {
		ln, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ok := true
		var held []net.Listener
		for _, ip := range ips[1:] {
			l2, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l2)
		}
		for _, l := range held {
			_ = l.Close()
		}
		_ = ln.Close()
		if ok {
			return port, nil
		}
	}
	return 0, errors.New("no port free on all of " + strings.Join(ips, ", "))
}

// family returns pid and its direct children (nginx's workers).
func family(pid int) []int {
	out := []int{pid}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		f, err := statFields(child)
		if err != nil || len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == pid {
			out = append(out, child)
		}
	}
	return out
}

// statFields returns /proc/PID/stat's fields after the command name, so
// f[0] is the state (field 3) and f[i] is field i+3.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, errors.New("bad stat")
	}
	return strings.Fields(s[i+1:]), nil
}

// clockTick is USER_HZ; 100 on every Linux architecture Go supports here.
const clockTick = 100

// cpuSeconds is utime+stime of pid and its children (/proc/PID/stat
// fields 14 and 15).
func cpuSeconds(pid int) float64 {
	var ticks int64
	for _, p := range family(pid) {
		f, err := statFields(p)
		if err != nil || len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return float64(ticks) / clockTick
}

// rssKiB is VmRSS of pid and its children.
func rssKiB(pid int) int64 {
	var total int64
	for _, p := range family(pid) {
		f, err := os.Open(filepath.Join("/proc", strconv.Itoa(p), "status"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				total += n
			}
		}
		_ = f.Close()
	}
	return total
}

// fdCount is the number of open file descriptors of pid and its children.
func fdCount(pid int) int {
	n := 0
	for _, p := range family(pid) {
		ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p), "fd"))
		if err == nil {
			n += len(ents)
		}
	}
	return n
}

// sockCount is the number of open sockets of pid and its children.
func sockCount(pid int) int {
	n := 0
	for _, p := range family(pid) {
		dir := filepath.Join("/proc", strconv.Itoa(p), "fd")
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
				n++
			}
		}
	}
	return n
}

// waitFDs polls until cond(fdCount(pid)) holds or timeout passes; it
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
