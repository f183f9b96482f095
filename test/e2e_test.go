package test

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
	"github.com/distgate/distgate/wire"
)

// appQuoted is how an Erlang client prints the node's name.
const appQuoted = "'" + testenv.AppName + "'"

// An allowed client's rpc goes through, and 64 MiB go each way intact.
func TestAdmittedRPCAndBigBinary(t *testing.T) {
	t.Parallel()
	forEachPath(t, func(t *testing.T, path string) {
		p := testenv.AppPort(t)
		n := testenv.StartNode(t, testenv.App(p))
		g := startOnPath(t, testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"}, "big@127.0.0.1")), path)

		// md5 on the node proves the bytes arrived intact; iolist_to_binary
		// sends them back, and the client checks them against its own sum.
		out := testenv.MustRun(t, testenv.Client("big@127.0.0.1", p), `
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

		adm := g.Wait(testenv.Msg("admitted"), testenv.NodeIs("big@127.0.0.1"))
		if adm.Str("tag") != "N" || adm.Str("hidden") != "true" || adm.Str("upstream") != testenv.Addr("127.0.0.2", p) {
			t.Errorf("admitted line: %v", adm)
		}
		closed := g.Wait(testenv.Msg("closed"), testenv.NodeIs("big@127.0.0.1"))
		// Client to node: the binary twice (md5 and iolist_to_binary);
		// node to client: once.
		if in, out := closed.Num("bytes_in"), closed.Num("bytes_out"); in < 2*(64<<20) || out < 64<<20 {
			t.Errorf("closed line: bytes_in %v, bytes_out %v; want at least %d and %d", in, out, 2*(64<<20), 64<<20)
		}
		if closed.Str("reason") != "" {
			t.Errorf("a client that halted should close without a reason: %v", closed)
		}
		// 64 MiB each way may move a kernel pair to user space (a reader
		// behind by MaxQueued): nothing is lost either way.
		closedPath(t, closed, path, true)
		t.Logf("closed on path %s", closed.Str("path"))
		if d := g.Count(testenv.Msg("denied")); d != 0 {
			t.Errorf("%d denied lines, want none", d)
		}
		n.AwaitLine("nodeup 'big@127.0.0.1'")
	})
}

// A name no entry allows gets pang; the node never hears of it.
func TestNameNotAllowed(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	n := testenv.StartNode(t, testenv.App(p))
	g := testenv.StartGate(t, testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"}, "good@*")))

	if r := testenv.Ping(t, testenv.Client("evil@127.0.0.1", p)); r != "pang" {
		t.Errorf("evil@127.0.0.1: ping = %s, want pang", r)
	}
	d := g.Wait(testenv.Msg("denied"), testenv.Reason("name_not_allowed"), testenv.NodeIs("evil@127.0.0.1"))
	if d.Str("tag") != "N" || d.Str("hidden") != "true" || !testenv.From("127.0.0.1")(d) {
		t.Errorf("denied line: %v", d)
	}
	// The allowed name from the same source works, and orders the node's
	// output: nothing may come before its nodeup.
	if r := testenv.Ping(t, testenv.Client("good@127.0.0.1", p)); r != "pong" {
		t.Fatalf("good@127.0.0.1: ping = %s, want pong", r)
	}
	n.QuietUntil("nodeup 'good@127.0.0.1'")
	for _, l := range n.Out.All() {
		if strings.Contains(l, "evil") {
			t.Errorf("the node's output mentions the denied node: %q", l)
		}
	}
	if c := g.Count(testenv.Msg("denied")); c != 1 {
		t.Errorf("%d denied lines, want 1", c)
	}
	if c := g.Count(testenv.Msg("admitted"), testenv.NodeIs("evil@127.0.0.1")); c != 0 {
		t.Errorf("evil@127.0.0.1 was admitted %d times", c)
	}
}

// The scanners' probe gets not a byte back, and the node hears nothing.
func TestScannerProbe(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	n := testenv.StartNode(t, testenv.App(p))
	g := testenv.StartGate(t, testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"})))

	c := testenv.Dial(t, "", testenv.Addr("127.0.0.1", p))
	if _, err := c.Write(wire.ScannerProbe); err != nil {
		t.Fatal(err)
	}
	got, _, err := testenv.ReadToEnd(c, 10*time.Second)
	if got != 0 || err != nil {
		t.Errorf("scanner read %d bytes, err %v; want 0 bytes and a clean close (EOF)", got, err)
	}
	d := g.Wait(testenv.Msg("denied"), testenv.Field("remote", c.LocalAddr().String()))
	if d.Str("reason") != "missing_flags" || d.Str("tag") != "n" || d.Str("node") != "AAAAAA@AAAAAAA" || d.Str("flags") != "0003499c" {
		t.Errorf("denied line: %v; want reason missing_flags, tag n, node AAAAAA@AAAAAAA, flags 0003499c", d)
	}

	if r := testenv.Ping(t, testenv.Client("flush@127.0.0.1", p)); r != "pong" {
		t.Fatalf("flush@127.0.0.1: ping = %s, want pong", r)
	}
	n.QuietUntil("nodeup 'flush@127.0.0.1'")
	if c := g.Count(testenv.Msg("denied")); c != 1 {
		t.Errorf("%d denied lines, want exactly 1", c)
	}
	if k := g.Count(testenv.Field("remote", c.LocalAddr().String())); k != 1 {
		t.Errorf("%d lines about the scanner's connection, want 1", k)
	}

	// Control: the same bytes sent straight to the node do show up in its
	// output, so the silence above means something.
	mark := len(n.Out.All())
	direct := testenv.Dial(t, "", testenv.Addr("127.0.0.2", p))
	if _, err := direct.Write(wire.ScannerProbe); err != nil {
		t.Fatal(err)
	}
	_, _, _ = testenv.ReadToEnd(direct, 10*time.Second)
	n.Await("the node to report the direct probe", func(ls []string) bool {
		for _, l := range ls[mark:] {
			if strings.HasPrefix(l, "{net_kernel,{'EXIT',") && strings.HasSuffix(l, ",shutdown}}") {
				return true
			}
		}
		return false
	})
}

// A source no entry lists gets pang; the same name from a listed source
// works.
func TestSourceNotAllowed(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	n := testenv.StartNode(t, testenv.App(p))
	g := testenv.StartGate(t, testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32", "127.0.0.2/32"})))

	if r := testenv.Ping(t, testenv.Client("far@127.0.0.1", p).Bind("127.0.0.3")); r != "pang" {
		t.Errorf("from 127.0.0.3: ping = %s, want pang", r)
	}
	d := g.Wait(testenv.Msg("denied"), testenv.From("127.0.0.3"))
	if d.Str("reason") != "source_not_allowed" || d.Str("node") != "" {
		t.Errorf("denied line: %v; want reason source_not_allowed and no node (nothing is read)", d)
	}
	if r := testenv.Ping(t, testenv.Client("far@127.0.0.1", p)); r != "pong" {
		t.Fatalf("from 127.0.0.1: ping = %s, want pong", r)
	}
	n.QuietUntil("nodeup 'far@127.0.0.1'")
	if c := g.Count(testenv.Msg("denied")); c != 1 {
		t.Errorf("%d denied lines, want 1", c)
	}
}

// With burst 3 and a tiny rate, the fourth quick connection from one source
// is refused at once and the first three are not.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	testenv.StartNode(t, testenv.App(p))
	f := testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32", "127.0.0.4/32"}))
	f.Gate[0].Rate, f.Gate[0].Burst, f.Gate[0].HandshakeTimeout = testenv.Ptr(0.001), testenv.Ptr(3), testenv.Dur(10*time.Second)
	g := testenv.StartGate(t, f)

	const n = 4 // denial lines are sampled at 5 per source per period: stay under
	var conns []*net.TCPConn
	for range n {
		conns = append(conns, testenv.Dial(t, "127.0.0.4", testenv.Addr("127.0.0.1", p)))
	}
	last := conns[n-1]
	got, took, err := testenv.ReadToEnd(last, 5*time.Second)
	if got != 0 || err != nil {
		t.Fatalf("connection %d: read %d bytes, err %v; want it closed at once, silently", n, got, err)
	}
	d := g.Wait(testenv.Msg("denied"), testenv.Field("remote", last.LocalAddr().String()))
	if d.Str("reason") != "rate_limited" {
		t.Errorf("connection %d: %v; want reason rate_limited", n, d)
	}
	t.Logf("the excess connection was closed after %v", took)
	// The first three passed the limiter and wait for their first message
	// (10 s), so there is no line about them yet.
	for i, c := range conns[:n-1] {
		if k := g.Count(testenv.Field("remote", c.LocalAddr().String())); k != 0 {
			t.Errorf("connection %d: %d lines before it sent anything, want 0", i+1, k)
		}
	}
	// Now let them finish: the scanner probe is denied for its flags.
	for i, c := range conns[:n-1] {
		if _, err := c.Write(wire.ScannerProbe); err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		if got, _, err := testenv.ReadToEnd(c, 5*time.Second); got != 0 || err != nil {
			t.Errorf("connection %d: read %d bytes, err %v", i+1, got, err)
		}
		d := g.Wait(testenv.Msg("denied"), testenv.Field("remote", c.LocalAddr().String()))
		if d.Str("reason") != "missing_flags" {
			t.Errorf("connection %d: %v; want reason missing_flags (it passed the limiter)", i+1, d)
		}
	}
	if c := g.Count(testenv.From("127.0.0.4")); c != n {
		t.Errorf("%d lines about 127.0.0.4, want %d", c, n)
	}
	if c := g.Count(testenv.From("127.0.0.4"), testenv.Reason("rate_limited")); c != 1 {
		t.Errorf("%d rate_limited lines, want exactly 1 (the excess)", c)
	}
}

// Silent and half-sent first messages are cut at handshake_timeout, and a
// real client gets through while they hang.
func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	p := testenv.AppPort(t)
	testenv.StartNode(t, testenv.App(p))
	f := testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32", "127.0.0.5/32"}))
	f.Gate[0].HandshakeTimeout = testenv.Dur(timeout)
	g := testenv.StartGate(t, f)
	sh := testenv.StartShell(t, testenv.Client("live@127.0.0.1", p))

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
	silent := testenv.Dial(t, "127.0.0.5", testenv.Addr("127.0.0.1", p))
	dialed[1] = time.Now()
	slow := testenv.Dial(t, "127.0.0.5", testenv.Addr("127.0.0.1", p))
	if _, err := slow.Write([]byte(wire.ScannerProbe[:5])); err != nil { // the length and 3 of 21 bytes
		t.Fatal(err)
	}
	results := make([]chan result, 2)
	for i, c := range []*net.TCPConn{silent, slow} {
		results[i] = make(chan result, 1)
		go func() {
			n, _, err := testenv.ReadToEnd(c, 10*time.Second)
			now := time.Now()
			results[i] <- result{n, err, now.Sub(dialed[i]), now}
		}()
	}

	if r := sh.Do("node"); r != appQuoted {
		t.Errorf("rpc while two connections hang: %s, want %s", r, appQuoted)
	}
	clientDone := time.Now()
	g.Wait(testenv.Msg("admitted"), testenv.NodeIs("live@127.0.0.1"))

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
		d := g.Wait(testenv.Msg("denied"), testenv.Field("remote", c.LocalAddr().String()))
		if d.Str("reason") != "handshake_timeout" {
			t.Errorf("conn %d: %v; want reason handshake_timeout", i, d)
		}
	}
	if r := sh.Do("node"); r != appQuoted {
		t.Errorf("rpc after the timeouts: %s", r)
	}
}

// SIGHUP: a source taken out of the allow list is disconnected (revoked)
// and refused afterwards; an invalid file changes nothing.
func TestReloadRevokes(t *testing.T) {
	t.Parallel()
	forEachPath(t, func(t *testing.T, path string) {
		p := testenv.AppPort(t)
		n := testenv.StartNode(t, testenv.App(p))
		g := startOnPath(t, testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"}), testenv.Allow([]string{"127.0.0.3/32"})), path)

		keep := testenv.StartShell(t, testenv.Client("keep@127.0.0.1", p))
		rev := testenv.StartShell(t, testenv.Client("rev@127.0.0.1", p).Bind("127.0.0.3"))
		for _, s := range []*testenv.Shell{keep, rev} {
			if r := s.Do("node"); r != appQuoted {
				t.Fatalf("%s: rpc = %s, want %s", s.Erl.Name, r, appQuoted)
			}
			if r := s.Do("monitor"); r != "true" {
				t.Fatalf("%s: monitor_node = %s", s.Erl.Name, r)
			}
		}
		g.Wait(testenv.Msg("admitted"), testenv.NodeIs("rev@127.0.0.1"), testenv.From("127.0.0.3"))
		n.AwaitLine("nodeup 'rev@127.0.0.1'")

		// An invalid file is refused and the running policy stays.
		g.Reload(onPath(testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"}), testenv.Allow([]string{"127.0.0.300/32"})), path))
		refused := g.Wait(testenv.MsgPrefix("reload refused"))
		if !strings.Contains(refused.Str("error"), "127.0.0.300/32") {
			t.Errorf("reload refused line does not name the bad value: %v", refused)
		}
		for _, s := range []*testenv.Shell{keep, rev} {
			if r := s.Do("node"); r != appQuoted {
				t.Errorf("%s after a refused reload: rpc = %s", s.Erl.Name, r)
			}
		}
		if c := g.Count(testenv.Msg("closed")); c != 0 {
			t.Errorf("a refused reload closed %d connections", c)
		}

		// A valid file without 127.0.0.3 revokes rev's connection.
		g.Reload(onPath(testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"})), path))
		g.Wait(testenv.Msg("reloaded"), testenv.Field("revoked", "1"))
		closedPath(t, g.Wait(testenv.Msg("closed"), testenv.Reason("revoked"), testenv.NodeIs("rev@127.0.0.1")), path, false)
		if r := rev.Do("wait_down"); r != "nodedown" {
			t.Errorf("rev: %s, want nodedown", r)
		}
		n.AwaitLine("nodedown 'rev@127.0.0.1'")
		if r := rev.Do("ping"); r != "pang" {
			t.Errorf("rev reconnecting after the revocation: %s, want pang", r)
		}
		g.Wait(testenv.Msg("denied"), testenv.Reason("source_not_allowed"), testenv.From("127.0.0.3"))

		// keep goes on over the connection it had all along.
		if r := keep.Do("node"); r != appQuoted {
			t.Errorf("keep after the reload: rpc = %s", r)
		}
		if r := keep.Do("connected"); r != "true" {
			t.Errorf("keep: still connected = %s", r)
		}
		if c := g.Count(testenv.Msg("admitted"), testenv.NodeIs("keep@127.0.0.1")); c != 1 {
			t.Errorf("keep was admitted %d times, want once (its connection should have lasted)", c)
		}
		if c := g.Count(testenv.Msg("closed"), testenv.NodeIs("keep@127.0.0.1")); c != 0 {
			t.Errorf("keep's connection was closed")
		}
		for _, l := range n.Out.All() {
			if l == "nodedown 'keep@127.0.0.1'" {
				t.Errorf("the node lost keep")
			}
		}
	})
}

// SIGTERM lets a live connection finish within drain_timeout, then distgate
// exits 0 and logs why it closed what was left.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	forEachPath(t, func(t *testing.T, path string) {
		p := testenv.AppPort(t)
		testenv.StartNode(t, testenv.App(p))
		g := startOnPath(t, testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"})), path)
		sh := testenv.StartShell(t, testenv.Client("drain@127.0.0.1", p))
		if r := sh.Do("node"); r != appQuoted {
			t.Fatalf("rpc = %s", r)
		}
		if r := sh.Do("monitor"); r != "true" {
			t.Fatalf("monitor_node = %s", r)
		}
		start := time.Now()
		g.Send(syscall.SIGTERM)
		g.Wait(testenv.Msg("shutting down"))
		// The listener is closed at once; the live connection is kept until the
		// drain ends (1 s in testenv.AppGate).
		if r := sh.Do("wait_down"); r != "nodedown" {
			t.Errorf("after the drain: %s, want nodedown", r)
		}
		if took := time.Since(start); took < time.Second {
			t.Errorf("the live connection ended %v after SIGTERM, before the 1s drain", took)
		}
		closedPath(t, g.Wait(testenv.Msg("closed"), testenv.NodeIs("drain@127.0.0.1"), testenv.Reason("shutdown")), path, false)
		g.Wait(testenv.Msg("stopped"))
		if code := g.AwaitExit(); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
	})
}
