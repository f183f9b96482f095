package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

// keepAlive opens a connection to the metrics listener, makes one
// keep-alive request and returns the connection still open, or nil if the
// server closed it without an answer (or the dial failed).
func keepAlive(t *testing.T, maddr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", maddr, 5*time.Second)
	if err != nil {
		return nil
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: distgate\r\n\r\n"); err != nil {
		_ = c.Close()
		return nil
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		_ = c.Close()
		return nil
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	_ = c.SetDeadline(time.Time{})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Keep-alive connections to the metrics port cannot take the gates'
// descriptors: under a 256-descriptor limit, 245 of them get at most
// metrics.max_conns (capped at an eighth of the limit) served and held, the
// rest closed at once, the gates never run out of descriptors, an operator
// still gets in, and every line on stderr stays one JSON object.
func TestMetricsConnCap(t *testing.T) {
	t.Parallel()
	const (
		nofile = 256
		tries  = 245
		limit  = nofile / 8 // the metrics listener's share of the limit
	)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatalf("this test needs prlimit (util-linux): %v", err)
	}
	p := testenv.AppPort(t)
	testenv.StartNode(t, testenv.App(p))
	maddr := testenv.Addr("127.0.0.1", testenv.Port(t, "127.0.0.1"))
	f := testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"}))
	f.Metrics.Listen = maddr
	g := testenv.StartGateCmd(t, testenv.GateCmd{File: f, Adjust: func(c *exec.Cmd) {
		c.Path = prlimit
		c.Args = append([]string{"prlimit", fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--"}, c.Args...)
	}})
	baseSockets := g.Sockets()
	rss0, _, _ := testenv.Memory(g.Pid())

	held := 0
	for range tries {
		if keepAlive(t, maddr) != nil {
			held++
		}
	}
	sockets := g.Sockets()
	rss1, _, _ := testenv.Memory(g.Pid())
	t.Logf("%d of %d keep-alive connections served and held; distgate holds %d sockets (%d at start), %d descriptors; RSS %s -> %s",
		held, tries, sockets, baseSockets, g.FDs(), mib(rss0), mib(rss1))
	if held > limit {
		t.Errorf("%d metrics connections held, want at most %d (an eighth of the %d-descriptor limit)", held, limit, nofile)
	}
	if held == 0 {
		t.Errorf("no metrics connection was served")
	}

	// The gate still has descriptors: an operator gets in.
	if r := testenv.Ping(t, testenv.Client("op@127.0.0.1", p)); r != "pong" {
		t.Errorf("operator ping = %s while the metrics port is full, want pong", r)
	}
	if n := g.Count(testenv.Msg("accept")); n != 0 {
		t.Errorf("the gate's accept failed %d times (out of descriptors)", n)
	}
	if strings.Contains(g.Out.String(), "too many open files") {
		t.Errorf("distgate ran out of descriptors:\n%s", g.Out)
	}
	g.AllJSON()
}

// Thousands of connections to the metrics port cost distgate neither
// memory nor descriptors: past metrics.max_conns they are closed at once.
func TestMetricsManyConns(t *testing.T) {
	t.Parallel()
	const tries, maxConns = 2000, 16
	p := testenv.AppPort(t)
	maddr := testenv.Addr("127.0.0.1", testenv.Port(t, "127.0.0.1"))
	f := testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"}))
	f.Metrics.Listen, f.Metrics.MaxConns = maddr, testenv.Ptr(maxConns)
	g := testenv.StartGate(t, f)
	rss0, _, _ := testenv.Memory(g.Pid())
	held := 0
	for range tries {
		if keepAlive(t, maddr) != nil {
			held++
		}
	}
	rss1, _, _ := testenv.Memory(g.Pid())
	sockets := g.Sockets()
	t.Logf("%d of %d keep-alive connections held; distgate holds %d sockets; RSS %s -> %s", held, tries, sockets, mib(rss0), mib(rss1))
	if held > maxConns || sockets > maxConns+2 {
		t.Errorf("%d connections held, %d sockets; want at most max_conns = %d (+ the 2 listeners)", held, sockets, maxConns)
	}
	g.AllJSON()
}
