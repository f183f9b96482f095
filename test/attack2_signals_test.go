package test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
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
