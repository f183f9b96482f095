package test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startWithPipe starts `distgate run -config` with stderr on a pipe the
// test holds, reads it until every gate said "listening", and returns the
// command, the read end, and a channel closed when the process exits.
func startWithPipe(t *testing.T, config string) (*exec.Cmd, *os.File, chan struct{}) {
	t.Helper()
	path := tempConfig(t, config)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(distgateBin, "run", "-config", path)
	cmd.Env = cleanEnv()
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = w.Close() // the child holds the only write end
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { stopProcess(cmd, done, syscall.SIGTERM, 10*time.Second); _ = r.Close() })
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"message":"listening"`) {
				lines <- sc.Text()
				return
			}
		}
		close(lines)
	}()
	select {
	case _, ok := <-lines:
		if !ok {
			t.Fatal("distgate's stderr ended before it said listening")
		}
	case <-time.After(waitTimeout):
		t.Fatal("distgate did not say listening")
	}
	return cmd, r, done
}

// With stderr's reader gone (`distgate run 2>&1 | head -n 1`), a log line
// must not kill the process: the line is dropped and counted, and the gate
// goes on deciding.
func TestRunStderrClosed(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	mport := freePortOn(t, "127.0.0.1")
	maddr := addr("127.0.0.1", mport)
	config := gateTOML(port, "", allow([]string{"127.0.0.1"})) + fmt.Sprintf("\n[metrics]\nlisten = %q\n", maddr)
	cmd, r, done := startWithPipe(t, config)
	_ = r.Close() // the reader goes away, as `head -n 1` does

	// Denied connections, each logged (the first five per source).
	for range 3 {
		c := dialFrom(t, "127.0.0.3", addr("127.0.0.1", port))
		if n, _, err := readToEnd(c, 5*time.Second); n != 0 || err != nil {
			t.Errorf("denied connection: %d bytes, %v", n, err)
		}
		_ = c.Close()
	}
	ss := metricsWait(t, maddr, "three denials and a dropped line", func(ss []metricsSample) bool {
		v, _ := metricsFind(ss, "distgate_connections_total", "gate", "e2e", "reason", "source_not_allowed", "verdict", "denied")
		d, _ := metricsFind(ss, "distgate_log_dropped_total")
		return v >= 3 && d >= 1
	})
	d, _ := metricsFind(ss, "distgate_log_dropped_total")
	t.Logf("distgate_log_dropped_total %v after 3 denials", d)
	select {
	case <-done:
		t.Fatalf("distgate exited: %v", cmd.ProcessState)
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("distgate did not stop on SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %v after SIGTERM, want 0", cmd.ProcessState)
	}
}

// sigIgnored reports whether process pid ignores sig now (SigIgn in
// /proc/PID/status).
func sigIgnored(pid int, sig syscall.Signal) (bool, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0, err
		}
	}
	return false, errors.New("no SigIgn line")
}

// A SIGHUP while run starts (`systemctl reload` right after `start`) must
// not kill the process: run catches its signals as the first thing in main
// and then ignores SIGPIPE, so from the moment SIGPIPE shows as ignored
// every SIGHUP is caught. Each start gets SIGHUPs from that moment, one per
// millisecond until the gate says listening, and must then serve and stop
// on SIGTERM with exit 0. (Before main, the Go runtime's own default for
// SIGHUP is to exit, which no program can change; under systemd,
// Type=notify keeps `systemctl reload` from sending one before READY=1.)
func TestRunSIGHUPAtStart(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	path := tempConfig(t, gateTOML(port, "", allow([]string{"127.0.0.1"})))
	starts := 20
	if raceEnabled {
		starts = 8 // a race-enabled distgate takes over a second to start
	}
	sent := 0
	for i := range starts {
		cmd := exec.Command(distgateBin, "run", "-config", path)
		cmd.Env = cleanEnv()
		out := &probeLog{done: make(chan struct{})}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { out.err = cmd.Wait(); close(out.done) }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-out.done
		}
		// Poll (every 100 µs) for the moment main has caught the signals.
		deadline := time.Now().Add(waitTimeout)
		for {
			ign, err := sigIgnored(cmd.Process.Pid, syscall.SIGPIPE)
			if ign {
				break
			}
			if time.Now().After(deadline) {
				stop()
				t.Fatalf("start %d: SIGPIPE not ignored within %v (%v): run did not catch its signals first", i, waitTimeout, err)
			}
			time.Sleep(100 * time.Microsecond)
		}
		for !strings.Contains(out.String(), `"message":"listening"`) {
			select {
			case <-out.done:
				t.Fatalf("start %d: died after %d SIGHUPs: %v\n%s", i, sent, cmd.ProcessState, out.String())
			default:
			}
			if time.Now().After(deadline) {
				stop()
				t.Fatalf("start %d: not listening within %v:\n%s", i, waitTimeout, out.String())
			}
			_ = cmd.Process.Signal(syscall.SIGHUP)
			sent++
			time.Sleep(time.Millisecond) // the pace of the SIGHUPs, not a wait for something
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-out.done:
		case <-time.After(waitTimeout):
			stop()
			t.Fatalf("start %d: no exit after SIGTERM", i)
		}
		if c := cmd.ProcessState.ExitCode(); c != 0 {
			t.Errorf("start %d: exit %v after SIGTERM:\n%s", i, cmd.ProcessState, out.String())
		}
	}
	t.Logf("%d starts survived %d SIGHUPs sent while they started", starts, sent)
}
