package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/attack"
	"github.com/distgate/distgate/internal/testenv"
	"github.com/distgate/distgate/wire"
)

// The attack and fault tests. Each one is the small, CI-sized
// version of a scenario; stress/*.sh runs the big ones and docs/SECURITY.md
// has the figures.

// floodSources are the non-allowed (or attacking) sources of the floods.
var floodSources = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}

// mib formats bytes for the logs.
func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// floodRSSBound is the most memory distgate may hold through the denied
// flood. The race detector multiplies a Go program's memory several times.
var floodRSSBound = int64(map[bool]int{false: 40, true: 128}[testenv.RaceEnabled()]) << 20

// 1. A flood of connections from sources that are not allowed: every one is
// closed without a byte, none reaches the node, the log stays within the
// sampling bound, distgate's memory stays small, and the operator's rpc
// keeps working throughout.
func TestDeniedFlood(t *testing.T) {
	t.Parallel()
	const conns = 5000
	p := testenv.AppPort(t)
	n := testenv.StartNode(t, testenv.App(p))
	g := testenv.StartGate(t, testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"})))

	op := attack.Operate(t, testenv.Client("op@127.0.0.1", p), func(mark, stop string) string {
		return attack.RPCLoop(mark, stop, 5*time.Millisecond)
	})
	n.Mark = n.AwaitLine("nodeup 'op@127.0.0.1'")

	watch := testenv.Watch(g.Pid(), 50*time.Millisecond)
	r := attack.Flood(context.Background(), attack.FloodConfig{
		Target: testenv.Addr("127.0.0.1", p), Sources: floodSources, Conns: conns, Workers: 64})
	peak := watch()
	t.Logf("flood: %d connections in %v (%.0f/s): %d closed, %d reset, %d got bytes, %d timeouts, %d dial errors (%v)",
		r.Conns, r.Elapsed.Round(time.Millisecond), r.Rate(), r.Closed, r.Reset, r.GotBytes, r.Timeouts, r.DialErrs, r.FirstErr)
	t.Logf("distgate: peak RSS %s, VmHWM %s, peak fds %d (%d samples)", mib(peak.RSS), mib(peak.HWM), peak.FDs, peak.Samples)
	if r.Closed != conns || r.DialErrs != 0 {
		t.Errorf("%d of %d connections closed cleanly (FIN, no byte); %d dial errors; want all", r.Closed, conns, r.DialErrs)
	}

	// Nothing reached the node: an admitted client's nodeup is the first
	// thing it prints after the operator's.
	if got := testenv.Ping(t, testenv.Client("flush@127.0.0.1", p)); got != "pong" {
		t.Fatalf("flush@127.0.0.1: ping = %s after the flood, want pong", got)
	}
	n.QuietUntil("nodeup 'flush@127.0.0.1'")

	out, err := op.Stop()
	if err != nil {
		t.Errorf("%v; output:\n%s", err, out)
	}
	base, err := attack.ParseRPCStats(out, "baseline")
	if err != nil {
		t.Fatal(err)
	}
	during, err := attack.ParseRPCStats(out, "during")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("operator rpc before the flood: %v", base)
	t.Logf("operator rpc during the flood: %v", during)
	if during.Failed != 0 || during.Calls == 0 {
		t.Errorf("operator rpc during the flood: %v; want every call to succeed", during)
	}

	g.Shutdown()
	g.AllJSON()
	lines := g.Lines()
	denied := 0
	for _, s := range floodSources {
		k := len(testenv.Filter(lines, testenv.Msg("denied"), testenv.From(s)))
		denied += k
		// Sampling: at most 5 lines per source per 10 s period; the flood
		// spans at most two periods here.
		if k > 10 {
			t.Errorf("%d denied lines from %s, want at most 10 (5 per period)", k, s)
		}
	}
	suppressed := 0
	sums := testenv.Filter(lines, testenv.Msg("denials suppressed"))
	for _, l := range sums {
		suppressed += int(l.Num("suppressed"))
	}
	if denied+suppressed != conns {
		t.Errorf("%d denied lines + %d suppressed in %d summaries = %d, want %d (every denial counted once)",
			denied, suppressed, len(sums), denied+suppressed, conns)
	}
	t.Logf("log: %d lines in all for %d denials (%d denied, %d summaries)", len(lines), conns, denied, len(sums))
	if peak.HWM > floodRSSBound {
		t.Errorf("distgate's peak RSS (VmHWM) %s, want under %s", mib(peak.HWM), mib(floodRSSBound))
	}
}

// 2. Thousands of connections from allowed sources that send 0, 1 or 2
// bytes and stall: each is cut at handshake_timeout or refused at once
// (too_many_handshakes), distgate's descriptors stay under the cap, and an
// operator at another allowed source still opens new sessions, because the
// cap keeps a share of its slots for sources that hold none.
func TestSlowClients(t *testing.T) {
	t.Parallel()
	const (
		conns   = 2000
		timeout = time.Second
		maxHS   = 128 // the default max_handshakes
	)
	p := testenv.AppPort(t)
	testenv.StartNode(t, testenv.App(p))
	// Per-source limits are lifted so that only the handshake cap stands
	// between the attackers and the descriptors (with the defaults, 8
	// connections and 1/s per source stop them long before).
	f := testenv.AppGate("e2e", p, testenv.Allow(append([]string{"127.0.0.1/32"}, floodSources...)))
	gc := &f.Gate[0]
	gc.HandshakeTimeout, gc.MaxConns, gc.MaxConnsPerSource = testenv.Dur(timeout), testenv.Ptr(10000), testenv.Ptr(10000)
	gc.Rate, gc.Burst = testenv.Ptr(100000.0), testenv.Ptr(100000)
	g := testenv.StartGate(t, f)
	base := g.FDs()

	op := attack.Operate(t, testenv.Client("op@127.0.0.1", p), func(mark, stop string) string {
		return attack.SessionLoop(mark, stop, 20*time.Millisecond)
	})

	hello := testenv.Hello("slow@127.0.0.1")
	watch := testenv.Watch(g.Pid(), 20*time.Millisecond)
	r := attack.Flood(context.Background(), attack.FloodConfig{
		Target: testenv.Addr("127.0.0.1", p), Sources: floodSources, Conns: conns, For: 10 * time.Second,
		Workers: 2 * maxHS, Send: func(i int) []byte { return hello[:i%3] }, Hold: 5 * time.Second})
	peak := watch()
	opOut, opErr := op.Stop()

	stalled := 0
	for _, h := range r.Held {
		if h >= timeout*9/10 {
			stalled++
		}
	}
	longest := attack.Percentile(r.Held, 1)
	t.Logf("attack: %d connections in %v: %d held until handshake_timeout, %d refused at once; longest held %v; %d still open after 5s",
		r.Conns, r.Elapsed.Round(time.Millisecond), stalled, r.Conns-stalled, longest.Round(time.Millisecond), r.Timeouts)
	t.Logf("distgate: %d descriptors before, at most %d during, %d of them sockets (max_handshakes %d); peak RSS %s",
		base, peak.FDs, peak.Sockets, maxHS, mib(peak.RSS))
	if r.Conns != conns || r.Timeouts != 0 || r.GotBytes != 0 {
		t.Errorf("attack: %d of %d connections made, %d outlived handshake_timeout by 4s, %d got bytes; want all made and closed, none with bytes",
			r.Conns, conns, r.Timeouts, r.GotBytes)
	}
	if longest > timeout+2*time.Second {
		t.Errorf("a stalled connection was held %v, want it cut at handshake_timeout (%v)", longest, timeout)
	}
	if stalled == 0 || stalled == r.Conns {
		t.Errorf("%d of %d connections held until the timeout; want some held and the rest refused by the cap", stalled, r.Conns)
	}
	// Sockets, not descriptors: Go also keeps pipes for splice, which come
	// and go with its garbage collector. The listener, the handshakes, and
	// the operator's two legs plus one being refused.
	if limit := 1 + maxHS + 3; peak.Sockets > limit {
		t.Errorf("distgate held %d sockets, want at most %d (the listener, the cap, the operator)", peak.Sockets, limit)
	}

	if opErr != nil {
		t.Fatalf("%v; output:\n%s", opErr, opOut)
	}
	ss, err := attack.ParseSessions(opOut)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("operator during the attack: %d of %d new sessions got in; first after %v; longest wait between sessions %v",
		ss.OK, ss.Tries, ss.First, ss.LongestGap)
	if ss.OK != ss.Tries || ss.Tries == 0 {
		t.Errorf("operator: %d of %d new sessions got in during the attack, want all", ss.OK, ss.Tries)
	}
	if k := g.Count(testenv.Msg("denied"), testenv.From("127.0.0.1")); k != 0 {
		t.Errorf("the operator was denied %d times", k)
	}
}

// 3. With few file descriptors (prlimit --nofile=64:64) and more allowed
// connections than fit, accept fails with EMFILE: distgate backs off instead
// of spinning a core, and serves again by itself once descriptors free up.
func TestFDExhaustion(t *testing.T) {
	t.Parallel()
	const (
		nofile = 64
		hold   = 100 // silent connections, more than the limit
		window = 2 * time.Second
	)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatalf("this test needs prlimit (util-linux): %v", err)
	}
	p := testenv.AppPort(t)
	testenv.StartNode(t, testenv.App(p))
	// No handshake cap: the descriptor limit is what the silent clients hit.
	f := testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32", "127.0.0.3/32"}))
	f.MaxHandshakes = testenv.Ptr(0)
	gc := &f.Gate[0]
	gc.HandshakeTimeout, gc.MaxConns, gc.MaxConnsPerSource = testenv.Dur(60*time.Second), testenv.Ptr(1000), testenv.Ptr(1000)
	gc.SetupTimeout = testenv.Dur(60 * time.Second) // not shorter than handshake_timeout: both count from accept
	gc.Rate, gc.Burst = testenv.Ptr(100000.0), testenv.Ptr(100000)
	g := testenv.StartGateCmd(t, testenv.GateCmd{File: f, Adjust: func(c *exec.Cmd) {
		c.Path = prlimit
		c.Args = append([]string{"prlimit", fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--"}, c.Args...)
	}})
	if lim, err := testenv.Limit(g.Pid(), "Max open files"); err != nil || lim != fmt.Sprintf("%d %d", nofile, nofile) {
		t.Fatalf("distgate's open-files limit is %q (%v), want %d %d", lim, err, nofile, nofile)
	}
	base, baseSockets := g.FDs(), g.Sockets()

	var silent []*net.TCPConn
	for range hold {
		silent = append(silent, testenv.Dial(t, "127.0.0.3", testenv.Addr("127.0.0.1", p)))
	}
	first := g.Wait(testenv.Msg("accept"), testenv.Field("level", "warn"))
	if !strings.Contains(first.Str("error"), "too many open files") {
		t.Errorf("accept warning: %v; want the EMFILE error", first)
	}
	// The backoff doubles from 5 ms; measure once it has reached its cap.
	g.Wait(testenv.Msg("accept"), testenv.Field("retry_in", "1000"))
	t.Logf("distgate holds %d descriptors (limit %d; %d at start)", g.FDs(), nofile, base)

	// Measure a window of the exhaustion: CPU time used and accept lines.
	cpu0, err := testenv.CPUTime(g.Pid())
	if err != nil {
		t.Fatal(err)
	}
	lines0 := g.Count(testenv.Msg("accept"))
	time.Sleep(window) // a measurement window, not a wait for an event
	cpu1, err := testenv.CPUTime(g.Pid())
	if err != nil {
		t.Fatal(err)
	}
	linesIn := g.Count(testenv.Msg("accept")) - lines0
	used := cpu1 - cpu0
	t.Logf("while out of descriptors: %v CPU in %v; %d accept warnings in the window, %d so far", used, window, linesIn, g.Count(testenv.Msg("accept")))
	if used > window/4 {
		t.Errorf("distgate used %v CPU in %v while out of descriptors; want under %v (backing off, not spinning)", used, window, window/4)
	}
	if linesIn > 3 {
		t.Errorf("%d accept warnings in %v; the backoff (capped at 1s) allows about 2", linesIn, window)
	}

	// Free the descriptors: an operator gets in with no restart.
	freed := time.Now()
	for _, c := range silent {
		_ = c.Close()
	}
	if r := testenv.Ping(t, testenv.Client("back@127.0.0.1", p)); r != "pong" {
		t.Fatalf("after descriptors were freed: ping = %s, want pong", r)
	}
	g.Wait(testenv.Msg("admitted"), testenv.NodeIs("back@127.0.0.1"))
	t.Logf("service back %v after the descriptors were freed; %d accept warnings in all", time.Since(freed).Round(time.Millisecond), g.Count(testenv.Msg("accept")))
	if n := g.WaitSockets(baseSockets); n > baseSockets {
		t.Errorf("distgate holds %d sockets after the client left, want %d as at start", n, baseSockets)
	}
}

// 4. The node is killed (SIGKILL) under a live connection: the client sees
// a clean close, distgate keeps running and denies new connections with
// upstream_unreachable, and they work again as soon as the node is back on
// the same port.
func TestNodeGoesAway(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	n := testenv.StartNode(t, testenv.App(p))
	g := testenv.StartGate(t, testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"})))
	sh := testenv.StartShell(t, testenv.Client("live@127.0.0.1", p))
	if r := sh.Do("node"); r != appQuoted {
		t.Fatalf("rpc = %s", r)
	}
	if r := sh.Do("monitor"); r != "true" {
		t.Fatalf("monitor_node = %s", r)
	}
	// A raw client in the middle of its handshake: the node has answered
	// (status and challenge) and waits for the reply.
	raw := testenv.Dial(t, "", testenv.Addr("127.0.0.1", p))
	if _, err := raw.Write(testenv.Hello("raw@127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	g.Wait(testenv.Msg("admitted"), testenv.NodeIs("raw@127.0.0.1"))
	var first [1]byte
	_ = raw.SetReadDeadline(time.Now().Add(testenv.WaitTimeout))
	if _, err := io.ReadFull(raw, first[:]); err != nil {
		t.Fatalf("raw client: no answer from the node: %v", err)
	}

	n.Kill()
	killed := time.Now()

	if r := sh.Do("wait_down"); r != "nodedown" {
		t.Errorf("client after the node was killed: %s, want nodedown", r)
	}
	got, _, err := testenv.ReadToEnd(raw, testenv.WaitTimeout)
	if err != nil {
		t.Errorf("raw client after the node was killed: read %d more bytes, then %v; want a clean close (EOF)", got, err)
	}
	_ = raw.Close()
	// The live client's connection ended by itself; the raw one's
	// handshake was cut by the node's end: outcome aborted, which is the
	// closed line's reason too.
	if c := g.Wait(testenv.Msg("closed"), testenv.NodeIs("live@127.0.0.1")); c.Str("reason") != "" || c.Str("outcome") != "ok" {
		t.Errorf("live@127.0.0.1: closed line %v, want outcome ok and no reason (the node ended it)", c)
	}
	if c := g.Wait(testenv.Msg("closed"), testenv.NodeIs("raw@127.0.0.1")); c.Str("reason") != "aborted" || c.Str("outcome") != "aborted" {
		t.Errorf("raw@127.0.0.1: closed line %v, want outcome and reason aborted", c)
	}

	// While the node is down: refused, logged, and distgate stays up.
	if r := sh.Do("ping"); r != "pang" {
		t.Errorf("ping while the node is down: %s, want pang", r)
	}
	d := g.Wait(testenv.Msg("denied"), testenv.Reason("upstream_unreachable"), testenv.NodeIs("live@127.0.0.1"))
	if d.Str("upstream") != testenv.Addr("127.0.0.2", p) || !strings.Contains(d.Str("error"), "refused") {
		t.Errorf("denied line %v, want upstream %s and connection refused", d, testenv.Addr("127.0.0.2", p))
	}
	select {
	case <-g.Done():
		t.Fatalf("distgate exited when the node went away: %v", g.Err())
	default:
	}

	// The node comes back on the same port: the same client gets in.
	testenv.StartNode(t, testenv.App(p))
	back := time.Now()
	if r := sh.Do("ping"); r != "pong" {
		t.Fatalf("ping once the node is back: %s, want pong", r)
	}
	if r := sh.Do("node"); r != appQuoted {
		t.Errorf("rpc once the node is back: %s", r)
	}
	t.Logf("node down for %v; first ping after its return took %v", back.Sub(killed).Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
	if c := g.Count(testenv.Msg("admitted"), testenv.NodeIs("live@127.0.0.1")); c != 2 {
		t.Errorf("live@127.0.0.1 admitted %d times, want 2 (before and after)", c)
	}
}

// 5. Broken peers against the real binary: RSTs from either side in the
// middle of a splice, clients that vanish in the middle of their first
// message, half-closes both ways. Afterwards distgate holds exactly the
// sockets it held before. (Its goroutines are checked with goleak by the
// same cases in proxy/fault_test.go.)
func TestBrokenPeers(t *testing.T) {
	t.Parallel()
	forEachPath(t, func(t *testing.T, path string) {
		const rounds = 10
		p := testenv.AppPort(t)
		up := testenv.StartFakeNode(t, "127.0.0.2:0", true)
		f := testenv.GateFile("e2e", testenv.Addr("127.0.0.1", p), up.Addr(), testenv.Allow([]string{"127.0.0.3/32"}))
		f.Gate[0].Rate, f.Gate[0].Burst, f.Gate[0].MaxConnsPerSource = testenv.Ptr(100000.0), testenv.Ptr(100000), testenv.Ptr(1000)
		// The clients that vanish in their first message are failures
		// (bad_handshake) and would ban 127.0.0.3 after five: this test is
		// about what broken peers leave behind, not bans.
		f.Gate[0].Ban.After = testenv.Ptr(0)
		g := startOnPath(t, f, path)
		baseFDs, baseSockets := g.FDs(), g.Sockets()
		gw := testenv.Addr("127.0.0.1", p)

		rst := func(c *net.TCPConn) {
			_ = c.SetLinger(0)
			_ = c.Close()
		}
		// ended reads c until it ends and fails unless that is a FIN or a RST.
		ended := func(c *net.TCPConn, who string) {
			t.Helper()
			_ = c.SetReadDeadline(time.Now().Add(testenv.WaitTimeout))
			if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("%s: %v, want EOF or ECONNRESET", who, err)
			}
			_ = c.Close()
		}
		admitted := func(name string) (*net.TCPConn, *net.TCPConn) {
			t.Helper()
			c := testenv.Dial(t, "127.0.0.3", gw)
			_ = c.SetDeadline(time.Now().Add(testenv.WaitTimeout))
			if _, _, err := testenv.Handshake(c, name); err != nil {
				t.Fatalf("%s: handshake through distgate: %v", name, err)
			}
			_ = c.SetDeadline(time.Time{})
			u, got := up.Next()
			if m := testenv.Hello(name); !bytes.Equal(got, m) {
				t.Fatalf("%s: the upstream got % x, want the first message", name, got)
			}
			return c, u
		}
		chunk := bytes.Repeat([]byte("distgate"), 32<<10) // 256 KiB

		for i := range rounds {
			// The client resets while the node sends.
			c, u := admitted(fmt.Sprintf("rstc-%d@h", i))
			go func(u *net.TCPConn) { _, _ = u.Write(chunk) }(u)
			rst(c)
			ended(u, "upstream after the client's RST")

			// The node resets while the client sends.
			c, u = admitted(fmt.Sprintf("rstu-%d@h", i))
			go func(c *net.TCPConn) { _, _ = c.Write(chunk) }(c)
			rst(u)
			ended(c, "client after the node's RST")

			// The client vanishes after part of its first message.
			c = testenv.Dial(t, "127.0.0.3", gw)
			_, _ = c.Write(testenv.Hello("gone@h")[:i%6])
			rst(c)

			// Half-close, client first: the node still answers.
			c, u = admitted(fmt.Sprintf("hcc-%d@h", i))
			if _, err := c.Write(chunk); err != nil {
				t.Fatal(err)
			}
			_ = c.CloseWrite()
			if n, err := io.Copy(io.Discard, u); err != nil || n != int64(len(chunk)) {
				t.Fatalf("half-close: the node read %d bytes (%v), want %d then EOF", n, err, len(chunk))
			}
			if _, err := u.Write(chunk); err != nil {
				t.Fatal(err)
			}
			_ = u.Close()
			_ = c.SetReadDeadline(time.Now().Add(testenv.WaitTimeout))
			if n, err := io.Copy(io.Discard, c); err != nil || n != int64(len(chunk)) {
				t.Fatalf("half-close: the client read %d bytes (%v), want %d then EOF", n, err, len(chunk))
			}
			_ = c.Close()

			// Half-close, node first: the client still sends.
			c, u = admitted(fmt.Sprintf("hcu-%d@h", i))
			_ = u.CloseWrite()
			_ = c.SetReadDeadline(time.Now().Add(testenv.WaitTimeout))
			if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
				t.Fatalf("half-close: the client read %d bytes (%v), want EOF", n, err)
			}
			if _, err := c.Write(chunk); err != nil {
				t.Fatal(err)
			}
			_ = c.Close()
			if n, err := io.Copy(io.Discard, u); err != nil || n != int64(len(chunk)) {
				t.Fatalf("half-close: the node read %d bytes (%v), want %d then EOF", n, err, len(chunk))
			}
			_ = u.Close()
		}

		g.WaitN(4*rounds, testenv.Msg("closed"))
		n := g.WaitSockets(baseSockets)
		fds := g.FDs()
		t.Logf("distgate: %d sockets and %d descriptors before, %d and %d after %d broken connections", baseSockets, baseFDs, n, fds, 5*rounds)
		if n != baseSockets {
			t.Errorf("distgate holds %d sockets after the broken peers, want %d as before", n, baseSockets)
		}
		if adm, cl := g.Count(testenv.Msg("admitted")), g.Count(testenv.Msg("closed")); adm != 4*rounds || cl != 4*rounds {
			t.Errorf("%d admitted and %d closed lines, want %d each", adm, cl, 4*rounds)
		}
		// On the kernel path a pair whose peer already sent its FIN (or reset)
		// before the hand-off stays in user space: either path is right.
		for _, l := range g.Lines() {
			if l.Str("message") == "closed" {
				closedPath(t, l, path, true)
			}
		}
		g.Shutdown()
		g.AllJSON()
	})
}

// 6. 100 SIGHUPs, alternating between a policy that admits sources A and B
// and one that admits only A, while streams from both go through distgate
// to a Go node that echoes them: every A stream runs to its end with its
// bytes intact both ways (sha256 compared at the node and the client), B
// streams are revoked when B goes out and reconnect when it comes back,
// and no connection is closed for any other reason.
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	forEachPath(t, func(t *testing.T, path string) {
		const (
			reloads = 100
			perSrc  = 4
			srcA    = "127.0.0.3"
			srcB    = "127.0.0.4"
		)
		p := testenv.AppPort(t)
		up := testenv.StartFakeNode(t, "127.0.0.2:0", false)
		conf := func(allow ...config.Allow) *config.File {
			f := testenv.GateFile("e2e", testenv.Addr("127.0.0.1", p), up.Addr(), allow...)
			f.Gate[0].Rate, f.Gate[0].Burst, f.Gate[0].MaxConnsPerSource = testenv.Ptr(100000.0), testenv.Ptr(100000), testenv.Ptr(1000)
			return onPath(f, path)
		}
		both := conf(testenv.Allow([]string{srcA + "/32"}), testenv.Allow([]string{srcB + "/32"}))
		onlyA := conf(testenv.Allow([]string{srcA + "/32"}))
		g := startOnPath(t, both, path)
		gw := testenv.Addr("127.0.0.1", p)

		stop := make(chan struct{})
		stream := func(src, name string, seed uint64) attack.StreamResult {
			return attack.Stream(context.Background(), attack.StreamConfig{Source: src, Target: gw, Name: name,
				Seed: seed, Max: 1 << 30, Stop: stop, Chunk: 16 << 10, Pace: 2 * time.Millisecond, Linger: testenv.WaitTimeout})
		}
		type bRun struct {
			name string
			res  attack.StreamResult
		}
		var (
			wg   sync.WaitGroup
			aRes [perSrc]attack.StreamResult
			bMu  sync.Mutex
			bAll []bRun
		)
		for i := range perSrc {
			wg.Add(2)
			go func() {
				defer wg.Done()
				aRes[i] = stream(srcA, fmt.Sprintf("a%d@h", i), uint64(i))
			}()
			go func() {
				defer wg.Done()
				// B reconnects whenever it is cut, until the test stops it
				// (bounded: at most 1000 tries).
				for try := range 1000 {
					name := fmt.Sprintf("b%d-%d@h", i, try)
					r := stream(srcB, name, uint64(1000*(i+1)+try))
					bMu.Lock()
					bAll = append(bAll, bRun{name, r})
					bMu.Unlock()
					select {
					case <-stop:
						return
					default:
					}
					time.Sleep(20 * time.Millisecond) // pacing the reconnects, not synchronisation
				}
			}()
		}
		t.Cleanup(func() {
			select {
			case <-stop:
			default:
				close(stop)
			}
			wg.Wait()
		})
		g.WaitN(2*perSrc, testenv.Msg("admitted"))

		start := time.Now()
		for i := 1; i <= reloads; i++ {
			conf := both
			if i%2 == 1 {
				conf = onlyA
			}
			g.Reload(conf)
			g.WaitRaw(i, `"message":"reloaded"`)
		}
		took := time.Since(start)
		close(stop)
		wg.Wait()

		// Every admitted connection has ended: index the log once.
		g.WaitN(g.Count(testenv.Msg("admitted")), testenv.Msg("closed"))
		lines := g.Lines()
		admitted, closed := map[string]int{}, map[string]testenv.Line{}
		for _, l := range lines {
			switch l.Str("message") {
			case "admitted":
				admitted[l.Str("node")]++
			case "closed":
				closed[l.Str("node")] = l
			}
		}

		// A: each stream whole, checked at both ends.
		var moved int64
		for i, r := range aRes {
			name := fmt.Sprintf("a%d@h", i)
			rec, ok := up.WaitDone(name, testenv.WaitTimeout)
			switch {
			case !r.Complete || r.Cut || r.Mismatch >= 0:
				t.Errorf("%s: sent %d, echoed %d, mismatch at %d, cut %v: %v; want the whole stream back intact",
					name, r.Sent, r.Echoed, r.Mismatch, r.Cut, r.Err)
			case !ok || rec.N != r.Sent || rec.Sum != r.Sum:
				t.Errorf("%s: the node got %d bytes (sha256 %x), the client sent %d (sha256 %x)", name, rec.N, rec.Sum[:8], r.Sent, r.Sum[:8])
			}
			moved += r.Sent
			if admitted[name] != 1 || closed[name].Str("reason") != "" {
				t.Errorf("%s admitted %d times, closed %v; want once, closed at its end", name, admitted[name], closed[name])
			}
		}

		// B: every stream that was let in either ran to the end or was revoked;
		// whatever it got back was a true prefix of what it sent.
		revokedB, completeB, deniedB := 0, 0, 0
		for _, b := range bAll {
			if b.res.Mismatch >= 0 {
				t.Errorf("%s: echo differs at byte %d", b.name, b.res.Mismatch)
			}
			if admitted[b.name] == 0 {
				deniedB++
				continue
			}
			cl := closed[b.name]
			switch {
			case b.res.Complete && cl.Str("reason") == "":
				completeB++
			case b.res.Cut && cl.Str("reason") == "revoked":
				revokedB++
			default:
				t.Errorf("%s: complete %v, cut %v (%v); closed line %v; want it whole, or cut by a revocation",
					b.name, b.res.Complete, b.res.Cut, b.res.Err, cl)
			}
		}
		revoked := testenv.Filter(lines, testenv.Msg("closed"), testenv.Reason("revoked"))
		for _, l := range revoked {
			if !testenv.From(srcB)(l) {
				t.Errorf("revoked a connection from %s, which every policy admits: %v", l.Str("remote"), l)
			}
		}
		sumRevoked := 0
		for _, l := range testenv.Filter(lines, testenv.Msg("reloaded")) {
			sumRevoked += int(l.Num("revoked"))
		}
		// A connection revoked while distgate was still dialling the node is
		// logged as denied (reason revoked), and denial lines are sampled: so
		// the reloads may count a few more revocations than closed lines.
		if revokedB != len(revoked) || sumRevoked < len(revoked) || sumRevoked > len(revoked)+deniedB {
			t.Errorf("reloaded lines count %d revocations, closed lines %d, B clients saw %d (and %d refused)",
				sumRevoked, len(revoked), revokedB, deniedB)
		}
		if k := len(testenv.Filter(lines, testenv.Msg("denied"), testenv.From(srcA))); k != 0 {
			t.Errorf("%d denied lines for A, which every policy admits", k)
		}
		if revokedB == 0 {
			t.Errorf("no B stream was revoked: the test did not exercise revocation")
		}
		t.Logf("%d reloads in %v; A: %d streams intact, %s each way in all; B: %d streams revoked, %d ran to the end, %d refused while B was out",
			reloads, took.Round(time.Millisecond), perSrc, mib(moved), revokedB, completeB, deniedB)
		g.Shutdown()
		g.AllJSON()
	})
}

// 7. Hostile node names cannot forge log lines: names with newlines, control
// characters or escape sequences are refused as bad_handshake and never
// logged; printable ones with quotes or backslashes are logged escaped.
// Every line distgate writes stays one JSON object.
func TestHostileNames(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	up := testenv.StartFakeNode(t, "127.0.0.2:0", false)
	// Sources 127.0.0.10-29 are allowed, names only good@*: printable
	// hostile names get name_not_allowed, with the name in the line.
	g := testenv.StartGate(t, testenv.GateFile("e2e", testenv.Addr("127.0.0.1", p), up.Addr(), testenv.Allow([]string{"127.0.0.0/27"}, "good@*")))
	forged := `{"level":"info","gate":"e2e","node":"root@h","message":"admitted"}`
	cases := []struct {
		name   string
		tag    byte
		reason string
	}{
		{"a\n" + forged + "\n@h", wire.TagNew, "bad_handshake"},
		{"a\r\n" + forged + "@h", wire.TagNew, "bad_handshake"},
		{"a\x00b@h", wire.TagNew, "bad_handshake"},
		{"\x1b[2J\x1b[H@h", wire.TagNew, "bad_handshake"},
		{"a\u2028b@h", wire.TagNew, "bad_handshake"}, // a JSON line separator, as UTF-8
		{"\xff\xfe@h", wire.TagNew, "bad_handshake"},
		{"a\tb@h", wire.TagOld, "bad_handshake"},
		{"a\"b@h", wire.TagNew, "name_not_allowed"},
		{"a\\b@h", wire.TagNew, "name_not_allowed"},
		{`a","message":"admitted@h`, wire.TagNew, "name_not_allowed"},
		{`x\u000a{"message":"admitted"}@h`, wire.TagOld, "name_not_allowed"},
	}
	for i, tc := range cases {
		flags := wire.DefaultHiddenFlags
		if tc.tag == wire.TagOld {
			flags &= 0xffffffff
		}
		m, err := wire.Append(nil, wire.Handshake{Tag: tc.tag, Version: 5, Flags: flags, Name: []byte(tc.name)})
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		// One source per case: denial lines are sampled per source.
		src := fmt.Sprintf("127.0.0.%d", 10+i)
		c := testenv.Dial(t, src, testenv.Addr("127.0.0.1", p))
		if _, err := c.Write(m); err != nil {
			t.Fatal(err)
		}
		if n, _, err := testenv.ReadToEnd(c, testenv.WaitTimeout); n != 0 || err != nil {
			t.Errorf("case %d (%q): read %d bytes (%v), want a silent close", i, tc.name, n, err)
		}
		d := g.Wait(testenv.Msg("denied"), testenv.From(src))
		if d.Str("reason") != tc.reason {
			t.Errorf("case %d (%q): %v, want reason %s", i, tc.name, d, tc.reason)
		}
		if tc.reason == "name_not_allowed" && d.Str("node") != tc.name {
			t.Errorf("case %d: logged node %q, want %q exactly (escaped in the JSON)", i, d.Str("node"), tc.name)
		}
		if tc.reason == "bad_handshake" && d.Str("node") != "" {
			t.Errorf("case %d: a refused name was logged: %q", i, d.Str("node"))
		}
	}
	g.Shutdown()
	g.AllJSON()
	raw := g.Out.String()
	for _, bad := range []string{"\x1b", "\x00", "\r", "\u2028", "\xff"} {
		if strings.Contains(raw, bad) {
			t.Errorf("distgate's output holds the byte(s) %q", bad)
		}
	}
	if k := g.Count(testenv.Msg("admitted")); k != 0 {
		t.Errorf("%d admitted lines, want none: a forged line got through", k)
	}
	if up.Accepts() != 0 {
		t.Errorf("the node got %d connections, want none", up.Accepts())
	}
	if !strings.Contains(raw, `"node":"a\"b@h"`) || !strings.Contains(raw, `"node":"a\\b@h"`) {
		t.Errorf("names with a quote or a backslash are not logged JSON-escaped:\n%s", raw)
	}
}

// 8. Integrity under attack: 128 MiB each way through distgate, while 2000
// connections from sources that are not allowed and 200 silent ones from an
// allowed source come and go, arrive byte for byte (checked as they come
// back, and by sha256 at the node). stress/integrity.sh does 1 GiB.
func TestIntegrityUnderFlood(t *testing.T) {
	t.Parallel()
	const size = 128 << 20
	p := testenv.AppPort(t)
	up := testenv.StartFakeNode(t, "127.0.0.2:0", false)
	f := testenv.GateFile("e2e", testenv.Addr("127.0.0.1", p), up.Addr(), testenv.Allow([]string{"127.0.0.1/32", "127.0.0.6/32"}))
	gc := &f.Gate[0]
	gc.HandshakeTimeout, gc.Rate, gc.Burst = testenv.Dur(time.Second), testenv.Ptr(100000.0), testenv.Ptr(100000)
	gc.MaxConnsPerSource, gc.MaxConns = testenv.Ptr(1000), testenv.Ptr(1000)
	g := testenv.StartGate(t, f)
	gw := testenv.Addr("127.0.0.1", p)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var flood, silent attack.FloodResult
	wg.Add(2)
	go func() {
		defer wg.Done()
		flood = attack.Flood(ctx, attack.FloodConfig{Target: gw, Sources: floodSources, Conns: 2000, Workers: 16})
	}()
	go func() {
		defer wg.Done()
		silent = attack.Flood(ctx, attack.FloodConfig{Target: gw, Sources: []string{"127.0.0.6"}, Conns: 200, Workers: 50})
	}()
	start := time.Now()
	r := attack.Stream(ctx, attack.StreamConfig{Source: "127.0.0.1", Target: gw, Name: "bulk@127.0.0.1", Seed: 42, Max: size})
	took := time.Since(start)
	wg.Wait()

	rec, ok := up.WaitDone("bulk@127.0.0.1", testenv.WaitTimeout)
	t.Logf("%s each way in %v (%.0f MiB/s each way) beside %d denied and %d silent connections",
		mib(r.Sent), took.Round(time.Millisecond), float64(r.Sent)/(1<<20)/took.Seconds(), flood.Conns, silent.Conns)
	if !r.Complete || r.Sent != size || r.Echoed != size || r.Mismatch >= 0 {
		t.Errorf("stream: sent %d, echoed %d, first difference at %d, complete %v (%v); want %d each way, intact",
			r.Sent, r.Echoed, r.Mismatch, r.Complete, r.Err, size)
	}
	if !ok || rec.N != size || rec.Sum != r.Sum || rec.Err != nil {
		t.Errorf("the node got %d bytes (sha256 %x, %v), the client sent %d (sha256 %x)", rec.N, rec.Sum, rec.Err, r.Sent, r.Sum)
	}
	if flood.Closed != 2000 || silent.Closed != 200 {
		t.Errorf("flood: %d of 2000 closed cleanly (%d reset, %d bytes, %v); silent: %d of 200 (%d reset, %d bytes, %v)",
			flood.Closed, flood.Reset, flood.GotBytes, flood.FirstErr, silent.Closed, silent.Reset, silent.GotBytes, silent.FirstErr)
	}
	cl := g.Wait(testenv.Msg("closed"), testenv.NodeIs("bulk@127.0.0.1"))
	// Every byte each way: the payload and what came before it (the
	// handshake and the command).
	if in, out := float64(size+r.PreSent), float64(size+r.PreGot); cl.Num("bytes_in") != in || cl.Num("bytes_out") != out {
		t.Errorf("closed line %v, want bytes_in %.0f and bytes_out %.0f", cl, in, out)
	}
	if n := up.Accepts(); n != 1 {
		t.Errorf("the node got %d connections, want only the stream's", n)
	}
}
