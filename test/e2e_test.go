package test

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scannerProbe is the first message internet scanners send (from the seed):
// an old-style 'n' name message with version 7, flags 0x0003499c and the
// name AAAAAA@AAAAAAA. It lacks the OTP 25 mandatory flags.
const scannerProbe = "\x00\x15n\x00\x07\x00\x03\x49\x9cAAAAAA@AAAAAAA"

const appQuoted = "'" + nodeName + "'"

// An allowed client's rpc goes through, and 64 MiB go each way intact.
func TestAdmittedRPCAndBigBinary(t *testing.T) {
	t.Parallel()
	p := freePort(t)
	n := startNode(t, p)
	g := startGate(t, gateTOML(p, "", allow([]string{"127.0.0.1/32"}, "big@127.0.0.1")))

	c := client{name: "big@127.0.0.1", port: p}
	// md5 on the node proves the bytes arrived intact; iolist_to_binary
	// sends them back, and the client checks them against its own sum.
	out := c.mustRun(t, `
io:format("node ~p~n", [rpc:call(Node, erlang, node, [])]),
Bin = crypto:strong_rand_bytes(64 bsl 20),
Sum = erlang:md5(Bin),
io:format("local ~s~n", [binary:encode_hex(Sum)]),
Remote = rpc:call(Node, erlang, md5, [Bin]),
io:format("remote ~s~n", [case Remote of B when is_binary(B) -> binary:encode_hex(B); Other -> io_lib:format("~p", [Other]) end]),
Back = rpc:call(Node, erlang, iolist_to_binary, [[Bin]]),
io:format("back ~p ~s~n", [byte_size(Back), binary:encode_hex(erlang:md5(Back))])`)

	got := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			got[k] = v
		}
	}
	if got["node"] != appQuoted {
		t.Errorf("rpc:call(Node, erlang, node, []) = %q, want %s; output:\n%s", got["node"], appQuoted, out)
	}
	sum := got["local"]
	if len(sum) != 32 {
		t.Fatalf("no local md5 in the client's output:\n%s", out)
	}
	if got["remote"] != sum {
		t.Errorf("the node's md5 of the 64 MiB binary is %q, the client's %q", got["remote"], sum)
	}
	if want := fmt.Sprintf("%d %s", 64<<20, sum); got["back"] != want {
		t.Errorf("the binary sent back: %q, want %q", got["back"], want)
	}

	adm := g.wait(msg("admitted"), nodeIs("big@127.0.0.1"))
	if adm.str("tag") != "N" || adm.str("hidden") != "true" || adm.str("upstream") != addr("127.0.0.2", p) {
		t.Errorf("admitted line: %v", adm)
	}
	closed := g.wait(msg("closed"), nodeIs("big@127.0.0.1"))
	// Client to node: the binary twice (md5 and iolist_to_binary);
	// node to client: once.
	if in, out := closed.num("bytes_in"), closed.num("bytes_out"); in < 2*(64<<20) || out < 64<<20 {
		t.Errorf("closed line: bytes_in %v, bytes_out %v; want at least %d and %d", in, out, 2*(64<<20), 64<<20)
	}
	if closed.str("reason") != "" {
		t.Errorf("a client that halted should close without a reason: %v", closed)
	}
	if d := g.count(msg("denied")); d != 0 {
		t.Errorf("%d denied lines, want none", d)
	}
	waitLines(t, n.out, n.done, "nodeup for big", func(ls []string) (int, bool) {
		return 0, contains(ls, "nodeup 'big@127.0.0.1'")
	})
}

// A name no entry allows gets pang; the node never hears of it.
func TestNameNotAllowed(t *testing.T) {
	t.Parallel()
	p := freePort(t)
	n := startNode(t, p)
	g := startGate(t, gateTOML(p, "", allow([]string{"127.0.0.1/32"}, "good@*")))

	if r := (client{name: "evil@127.0.0.1", port: p}).ping(t); r != "pang" {
		t.Errorf("evil@127.0.0.1: ping = %s, want pang", r)
	}
	d := g.wait(msg("denied"), reason("name_not_allowed"), nodeIs("evil@127.0.0.1"))
	if d.str("tag") != "N" || d.str("hidden") != "true" || !from("127.0.0.1")(d) {
		t.Errorf("denied line: %v", d)
	}
	// The allowed name from the same source works, and orders the node's
	// output: nothing may come before its nodeup.
	if r := (client{name: "good@127.0.0.1", port: p}).ping(t); r != "pong" {
		t.Fatalf("good@127.0.0.1: ping = %s, want pong", r)
	}
	n.quietUntil("nodeup 'good@127.0.0.1'")
	for _, l := range n.lines() {
		if strings.Contains(l, "evil") {
			t.Errorf("the node's output mentions the denied node: %q", l)
		}
	}
	if c := g.count(msg("denied")); c != 1 {
		t.Errorf("%d denied lines, want 1", c)
	}
	if c := g.count(msg("admitted"), nodeIs("evil@127.0.0.1")); c != 0 {
		t.Errorf("evil@127.0.0.1 was admitted %d times", c)
	}
}

// The scanners' probe gets not a byte back, and the node hears nothing.
func TestScannerProbe(t *testing.T) {
	t.Parallel()
	p := freePort(t)
	n := startNode(t, p)
	g := startGate(t, gateTOML(p, "", allow([]string{"127.0.0.1/32"})))

	c := dialFrom(t, "", addr("127.0.0.1", p))
	if _, err := c.Write([]byte(scannerProbe)); err != nil {
		t.Fatal(err)
	}
	got, _, err := readToEnd(c, 10*time.Second)
	if got != 0 || err != nil {
		t.Errorf("scanner read %d bytes, err %v; want 0 bytes and a clean close (EOF)", got, err)
	}
	d := g.wait(msg("denied"), field("remote", c.LocalAddr().String()))
	if d.str("reason") != "missing_flags" || d.str("tag") != "n" || d.str("node") != "AAAAAA@AAAAAAA" || d.str("flags") != "0003499c" {
		t.Errorf("denied line: %v; want reason missing_flags, tag n, node AAAAAA@AAAAAAA, flags 0003499c", d)
	}

	if r := (client{name: "flush@127.0.0.1", port: p}).ping(t); r != "pong" {
		t.Fatalf("flush@127.0.0.1: ping = %s, want pong", r)
	}
	n.quietUntil("nodeup 'flush@127.0.0.1'")
	if c := g.count(msg("denied")); c != 1 {
		t.Errorf("%d denied lines, want exactly 1", c)
	}
	if k := g.count(field("remote", c.LocalAddr().String())); k != 1 {
		t.Errorf("%d lines about the scanner's connection, want 1", k)
	}

	// Control: the same bytes sent straight to the node do show up in its
	// output, so the silence above means something.
	mark := len(n.lines())
	direct := dialFrom(t, "", addr("127.0.0.2", p))
	if _, err := direct.Write([]byte(scannerProbe)); err != nil {
		t.Fatal(err)
	}
	_, _, _ = readToEnd(direct, 10*time.Second)
	waitLines(t, n.out, n.done, "the node to report the direct probe", func(ls []string) (int, bool) {
		for _, l := range ls[mark:] {
			if strings.HasPrefix(l, "{net_kernel,{'EXIT',") && strings.HasSuffix(l, ",shutdown}}") {
				return 0, true
			}
		}
		return 0, false
	})
}

// A source no entry lists gets pang; the same name from a listed source
// works.
func TestSourceNotAllowed(t *testing.T) {
	t.Parallel()
	p := freePort(t)
	n := startNode(t, p)
	g := startGate(t, gateTOML(p, "", allow([]string{"127.0.0.1/32", "127.0.0.2/32"})))

	if r := (client{name: "far@127.0.0.1", port: p, src: "127.0.0.3"}).ping(t); r != "pang" {
		t.Errorf("from 127.0.0.3: ping = %s, want pang", r)
	}
	d := g.wait(msg("denied"), from("127.0.0.3"))
	if d.str("reason") != "source_not_allowed" || d.str("node") != "" {
		t.Errorf("denied line: %v; want reason source_not_allowed and no node (nothing is read)", d)
	}
	if r := (client{name: "far@127.0.0.1", port: p}).ping(t); r != "pong" {
		t.Fatalf("from 127.0.0.1: ping = %s, want pong", r)
	}
	n.quietUntil("nodeup 'far@127.0.0.1'")
	if c := g.count(msg("denied")); c != 1 {
		t.Errorf("%d denied lines, want 1", c)
	}
}

// With burst 3 and a tiny rate, the fourth quick connection from one source
// is refused at once and the first three are not.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	p := freePort(t)
	startNode(t, p)
	g := startGate(t, gateTOML(p, "rate = 0.001\nburst = 3\nhandshake_timeout = \"10s\"\n",
		allow([]string{"127.0.0.1/32", "127.0.0.4/32"})))

	const n = 4 // denial lines are sampled at 5 per source per period: stay under
	var conns []*net.TCPConn
	for range n {
		conns = append(conns, dialFrom(t, "127.0.0.4", addr("127.0.0.1", p)))
	}
	last := conns[n-1]
	got, took, err := readToEnd(last, 5*time.Second)
	if got != 0 || err != nil {
		t.Fatalf("connection %d: read %d bytes, err %v; want it closed at once, silently", n, got, err)
	}
	d := g.wait(msg("denied"), field("remote", last.LocalAddr().String()))
	if d.str("reason") != "rate_limited" {
		t.Errorf("connection %d: %v; want reason rate_limited", n, d)
	}
	t.Logf("the excess connection was closed after %v", took)
	// The first three passed the limiter and wait for their first message
	// (10 s), so there is no line about them yet.
	for i, c := range conns[:n-1] {
		if k := g.count(field("remote", c.LocalAddr().String())); k != 0 {
			t.Errorf("connection %d: %d lines before it sent anything, want 0", i+1, k)
		}
	}
	// Now let them finish: the scanner probe is denied for its flags.
	for i, c := range conns[:n-1] {
		if _, err := c.Write([]byte(scannerProbe)); err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		if got, _, err := readToEnd(c, 5*time.Second); got != 0 || err != nil {
			t.Errorf("connection %d: read %d bytes, err %v", i+1, got, err)
		}
		d := g.wait(msg("denied"), field("remote", c.LocalAddr().String()))
		if d.str("reason") != "missing_flags" {
			t.Errorf("connection %d: %v; want reason missing_flags (it passed the limiter)", i+1, d)
		}
	}
	if c := g.count(from("127.0.0.4")); c != n {
		t.Errorf("%d lines about 127.0.0.4, want %d", c, n)
	}
	if c := g.count(from("127.0.0.4"), reason("rate_limited")); c != 1 {
		t.Errorf("%d rate_limited lines, want exactly 1 (the excess)", c)
	}
}

// Silent and half-sent first messages are cut at handshake_timeout, and a
// real client gets through while they hang.
func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	p := freePort(t)
	startNode(t, p)
	g := startGate(t, gateTOML(p, fmt.Sprintf("handshake_timeout = %q\n", timeout.String()),
		allow([]string{"127.0.0.1/32", "127.0.0.5/32"})))
	sh := startShell(t, client{name: "live@127.0.0.1", port: p})

	type result struct {
		n    int64
		err  error
		took time.Duration
		at   time.Time
	}
	// The time is taken before the dial: distgate's clock starts at accept,
	// which comes after it.
	var dialed [2]time.Time
	dialed[0] = time.Now()
	silent := dialFrom(t, "127.0.0.5", addr("127.0.0.1", p))
	dialed[1] = time.Now()
	slow := dialFrom(t, "127.0.0.5", addr("127.0.0.1", p))
	if _, err := slow.Write([]byte(scannerProbe[:5])); err != nil { // the length and 3 of 21 bytes
		t.Fatal(err)
	}
	results := make([]chan result, 2)
	for i, c := range []*net.TCPConn{silent, slow} {
		results[i] = make(chan result, 1)
		go func() {
			n, _, err := readToEnd(c, 10*time.Second)
			now := time.Now()
			results[i] <- result{n, err, now.Sub(dialed[i]), now}
		}()
	}

	if r := sh.do("node"); r != appQuoted {
		t.Errorf("rpc while two connections hang: %s, want %s", r, appQuoted)
	}
	clientDone := time.Now()
	g.wait(msg("admitted"), nodeIs("live@127.0.0.1"))

	for i, c := range []*net.TCPConn{silent, slow} {
		r := <-results[i]
		if r.n != 0 || r.err != nil {
			t.Errorf("conn %d: read %d bytes, err %v; want a clean close by distgate", i, r.n, r.err)
		}
		if r.took < timeout || r.took > 5*time.Second {
			t.Errorf("conn %d: closed after %v; want between %v and 5s", i, r.took, timeout)
		}
		if !r.at.After(clientDone) {
			t.Errorf("conn %d was closed before the client's rpc finished; the rpc did not overlap it", i)
		}
		d := g.wait(msg("denied"), field("remote", c.LocalAddr().String()))
		if d.str("reason") != "handshake_timeout" {
			t.Errorf("conn %d: %v; want reason handshake_timeout", i, d)
		}
	}
	if r := sh.do("node"); r != appQuoted {
		t.Errorf("rpc after the timeouts: %s", r)
	}
}

// SIGHUP: a source taken out of the allow list is disconnected (revoked)
// and refused afterwards; an invalid file changes nothing.
func TestReloadRevokes(t *testing.T) {
	t.Parallel()
	p := freePort(t)
	n := startNode(t, p)
	v1 := gateTOML(p, "", allow([]string{"127.0.0.1/32"}), allow([]string{"127.0.0.3/32"}))
	g := startGate(t, v1)

	keep := startShell(t, client{name: "keep@127.0.0.1", port: p})
	rev := startShell(t, client{name: "rev@127.0.0.1", port: p, src: "127.0.0.3"})
	for _, s := range []*shell{keep, rev} {
		if r := s.do("node"); r != appQuoted {
			t.Fatalf("%s: rpc = %s, want %s", s.c.name, r, appQuoted)
		}
		if r := s.do("monitor"); r != "true" {
			t.Fatalf("%s: monitor_node = %s", s.c.name, r)
		}
	}
	g.wait(msg("admitted"), nodeIs("rev@127.0.0.1"), from("127.0.0.3"))
	waitLines(t, n.out, n.done, "nodeup for rev", func(ls []string) (int, bool) {
		return 0, contains(ls, "nodeup 'rev@127.0.0.1'")
	})

	// An invalid file is refused and the running policy stays.
	g.reconfigure(gateTOML(p, "", allow([]string{"127.0.0.1/32"}), allow([]string{"127.0.0.300/32"})))
	refused := g.wait(msgPrefix("reload refused"))
	if !strings.Contains(refused.str("error"), "127.0.0.300/32") {
		t.Errorf("reload refused line does not name the bad value: %v", refused)
	}
	for _, s := range []*shell{keep, rev} {
		if r := s.do("node"); r != appQuoted {
			t.Errorf("%s after a refused reload: rpc = %s", s.c.name, r)
		}
	}
	if c := g.count(msg("closed")); c != 0 {
		t.Errorf("a refused reload closed %d connections", c)
	}

	// A valid file without 127.0.0.3 revokes rev's connection.
	g.reconfigure(gateTOML(p, "", allow([]string{"127.0.0.1/32"})))
	g.wait(msg("reloaded"), field("revoked", "1"))
	g.wait(msg("closed"), reason("revoked"), nodeIs("rev@127.0.0.1"))
	if r := rev.do("wait_down"); r != "nodedown" {
		t.Errorf("rev: %s, want nodedown", r)
	}
	waitLines(t, n.out, n.done, "nodedown for rev", func(ls []string) (int, bool) {
		return 0, contains(ls, "nodedown 'rev@127.0.0.1'")
	})
	if r := rev.do("ping"); r != "pang" {
		t.Errorf("rev reconnecting after the revocation: %s, want pang", r)
	}
	g.wait(msg("denied"), reason("source_not_allowed"), from("127.0.0.3"))

	// keep goes on over the connection it had all along.
	if r := keep.do("node"); r != appQuoted {
		t.Errorf("keep after the reload: rpc = %s", r)
	}
	if r := keep.do("connected"); r != "true" {
		t.Errorf("keep: still connected = %s", r)
	}
	if c := g.count(msg("admitted"), nodeIs("keep@127.0.0.1")); c != 1 {
		t.Errorf("keep was admitted %d times, want once (its connection should have lasted)", c)
	}
	if c := g.count(msg("closed"), nodeIs("keep@127.0.0.1")); c != 0 {
		t.Errorf("keep's connection was closed")
	}
	for _, l := range n.lines() {
		if l == "nodedown 'keep@127.0.0.1'" {
			t.Errorf("the node lost keep")
		}
	}
}

// SIGTERM lets a live connection finish within drain_timeout, then distgate
// exits 0 and logs why it closed what was left.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	p := freePort(t)
	startNode(t, p)
	g := startGate(t, gateTOML(p, "", allow([]string{"127.0.0.1/32"})))
	sh := startShell(t, client{name: "drain@127.0.0.1", port: p})
	if r := sh.do("node"); r != appQuoted {
		t.Fatalf("rpc = %s", r)
	}
	if r := sh.do("monitor"); r != "true" {
		t.Fatalf("monitor_node = %s", r)
	}
	start := time.Now()
	g.signal(syscall.SIGTERM)
	g.wait(msg("shutting down"))
	// The listener is closed at once; the live connection is kept until the
	// drain ends (1 s in gateTOML).
	if r := sh.do("wait_down"); r != "nodedown" {
		t.Errorf("after the drain: %s, want nodedown", r)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("the live connection ended %v after SIGTERM, before the 1s drain", took)
	}
	g.wait(msg("closed"), nodeIs("drain@127.0.0.1"), reason("shutdown"))
	g.wait(msg("stopped"))
	if code := g.waitExit(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}
