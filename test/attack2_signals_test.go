package test

import (
	"bufio"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

// With stderr's reader gone (`distgate run 2>&1 | head -n 1`), a log line
// must not kill the process: the line is dropped and counted, and the gate
// goes on deciding.
func TestRunStderrClosed(t *testing.T) {
	t.Parallel()
	port := testenv.AppPort(t)
	maddr := testenv.Addr("127.0.0.1", testenv.Port(t, "127.0.0.1"))
	f := testenv.AppGate("e2e", port, testenv.Allow([]string{"127.0.0.1"}))
	f.Metrics.Listen = maddr
	// distgate logs to stderr, which the test reads itself here: GateCmd
	// would keep reading it.
	p := testenv.Start(t, testenv.Cmd{Name: "distgate", StderrPipe: true,
		Args: []string{testenv.Distgate(t), "run", "-config", testenv.ConfigFile(t, f)}})
	listening := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(p.Stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"message":"listening"`) {
				listening <- true
				return
			}
		}
		listening <- false
	}()
	select {
	case ok := <-listening:
		if !ok {
			t.Fatal("distgate's stderr ended before it said listening")
		}
	case <-time.After(testenv.WaitTimeout):
		t.Fatal("distgate did not say listening")
	}
	_ = p.Stderr.Close() // the reader goes away, as `head -n 1` does

	// Denied connections, each logged (the first five per source).
	for range 3 {
		c := testenv.Dial(t, "127.0.0.3", testenv.Addr("127.0.0.1", port))
		if n, _, err := testenv.ReadToEnd(c, 5*time.Second); n != 0 || err != nil {
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
	if p.Exited() {
		t.Fatalf("distgate exited: %v", p.Err())
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitExit(testenv.WaitTimeout); err != nil {
		t.Fatal("distgate did not stop on SIGTERM")
	}
	if code := p.ExitCode(); code != 0 {
		t.Errorf("exit %v after SIGTERM, want 0", p.Err())
	}
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
	path := testenv.ConfigFile(t, testenv.AppGate("e2e", testenv.AppPort(t), testenv.Allow([]string{"127.0.0.1"})))
	starts := 20
	if testenv.RaceEnabled() {
		starts = 8 // a race-enabled distgate takes over a second to start
	}
	sent := 0
	for i := range starts {
		p := testenv.Start(t, testenv.Cmd{Name: "distgate", Args: []string{testenv.Distgate(t), "run", "-config", path}})
		// Poll (every 100 µs) for the moment main has caught the signals.
		deadline := time.Now().Add(testenv.WaitTimeout)
		for {
			ign, err := testenv.SignalIgnored(p.Pid(), syscall.SIGPIPE)
			if ign {
				break
			}
			if time.Now().After(deadline) {
				p.Kill()
				t.Fatalf("start %d: SIGPIPE not ignored within %v (%v): run did not catch its signals first", i, testenv.WaitTimeout, err)
			}
			time.Sleep(100 * time.Microsecond)
		}
		for !strings.Contains(p.Out.String(), `"message":"listening"`) {
			if p.Exited() {
				t.Fatalf("start %d: died after %d SIGHUPs: %v\n%s", i, sent, p.Err(), p.Out)
			}
			if time.Now().After(deadline) {
				p.Kill()
				t.Fatalf("start %d: not listening within %v:\n%s", i, testenv.WaitTimeout, p.Out)
			}
			_ = p.Signal(syscall.SIGHUP)
			sent++
			time.Sleep(time.Millisecond) // the pace of the SIGHUPs, not a wait for something
		}
		_ = p.Signal(syscall.SIGTERM)
		if err := p.WaitExit(testenv.WaitTimeout); err != nil {
			p.Kill()
			t.Fatalf("start %d: no exit after SIGTERM", i)
		}
		if c := p.ExitCode(); c != 0 {
			t.Errorf("start %d: exit %v after SIGTERM:\n%s", i, p.Err(), p.Out)
		}
	}
	t.Logf("%d starts survived %d SIGHUPs sent while they started", starts, sent)
}
