// End-to-end tests of the handshake watch, the cookie at the gate and bans,
// with real OTP 25 nodes and clients.

package test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/testenv"
	"github.com/distgate/distgate/wire"
)

// The handshake watch, the cookie at the gate and bans, with real OTP
// nodes and clients (design.md: The handshake watch, Bans).

// watchCookieFile writes the node's cookie where a gate's cookie_file can
// read it (mode 0600) and returns its path.
func watchCookieFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cookie")
	if err := os.WriteFile(p, []byte(testenv.Cookie+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startQuietNode starts the app node without the test watch (its
// net_kernel reports and nodeup lines): its output is then what an
// operator sees at the default logger level. Cleanup stops it.
func startQuietNode(t *testing.T, port int) *testenv.Node {
	t.Helper()
	n, err := testenv.App(port).StartNode(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Stop(syscall.SIGTERM, 10*time.Second)
		if t.Failed() {
			t.Logf("%s output:\n%s", n.Name, n.Out)
		}
	})
	return n
}

// pingWith runs net_adm:ping from a client and returns pong or pang.
func pingWith(t *testing.T, e testenv.Erl) string { t.Helper(); return testenv.Ping(t, e) }

// A right cookie: one handshake line, outcome ok, and the closed line
// carries the outcome.
func TestWatchRightCookie(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	testenv.StartNode(t, testenv.App(p))
	g := testenv.StartGate(t, testenv.AppGate("w", p, testenv.Allow([]string{"127.0.0.1/32"})))

	if r := pingWith(t, testenv.Client("ok@127.0.0.1", p)); r != "pong" {
		t.Fatalf("ping = %s, want pong", r)
	}
	h := g.Wait(testenv.Msg("handshake"), testenv.NodeIs("ok@127.0.0.1"))
	if h.Str("outcome") != "ok" || h.Str("gate") != "w" || !testenv.From("127.0.0.1")(h) || h.Str("dur") == "" {
		t.Errorf("handshake line = %v, want outcome ok, gate, remote, dur", h)
	}
	c := g.Wait(testenv.Msg("closed"), testenv.NodeIs("ok@127.0.0.1"))
	if c.Str("outcome") != "ok" || c.Str("reason") != "" {
		t.Errorf("closed line = %v, want outcome ok and no reason", c)
	}
	if n := g.Count(testenv.Msg("handshake")); n != 1 {
		t.Errorf("%d handshake lines, want 1", n)
	}
}

// A wrong cookie with no cookie at the gate: the node judges it (and logs
// it), the gate sees the node close after 'r' and says auth_failed.
func TestWatchWrongCookieAtNode(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	n := startQuietNode(t, p)
	g := testenv.StartGate(t, testenv.AppGate("w", p, testenv.Allow([]string{"127.0.0.0/8"})))

	bad := testenv.Client("bad@127.0.0.1", p).Bind("127.0.0.3")
	bad.Cookie = "not-the-cookie"
	if r := pingWith(t, bad); r != "pang" {
		t.Fatalf("ping with a wrong cookie = %s, want pang", r)
	}
	h := g.Wait(testenv.Msg("handshake"), testenv.NodeIs("bad@127.0.0.1"))
	if h.Str("outcome") != "auth_failed" || !testenv.From("127.0.0.3")(h) {
		t.Errorf("handshake line = %v, want outcome auth_failed from 127.0.0.3", h)
	}
	if c := g.Wait(testenv.Msg("closed"), testenv.NodeIs("bad@127.0.0.1")); c.Str("reason") != "auth_failed" || c.Str("outcome") != "auth_failed" {
		t.Errorf("closed line = %v, want reason and outcome auth_failed", c)
	}
	err := n.WaitFor("the node's report of the wrong cookie", testenv.WaitTimeout, func(ls []string) bool {
		return slices.ContainsFunc(ls, func(l string) bool { return strings.Contains(l, "Invalid challenge reply") })
	})
	if err != nil {
		t.Error(err)
	}
}

// A wrong cookie with the cookie at the gate: cut before 'r' reaches the
// node, which says nothing about it; the right cookie still gets in.
func TestWatchWrongCookieAtGate(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	n := startQuietNode(t, p)
	f := testenv.AppGate("w", p, testenv.Allow([]string{"127.0.0.0/8"}))
	f.Gate[0].CookieFile = watchCookieFile(t)
	g := testenv.StartGate(t, f)

	bad := testenv.Client("bad@127.0.0.1", p).Bind("127.0.0.3")
	bad.Cookie = "not-the-cookie"
	if r := pingWith(t, bad); r != "pang" {
		t.Fatalf("ping with a wrong cookie = %s, want pang", r)
	}
	h := g.Wait(testenv.Msg("handshake"), testenv.NodeIs("bad@127.0.0.1"))
	if h.Str("outcome") != "auth_failed" || !testenv.From("127.0.0.3")(h) || !strings.Contains(h.Str("error"), "digest") {
		t.Errorf("handshake line = %v, want outcome auth_failed from 127.0.0.3, a digest error", h)
	}
	// The right cookie, after: it works, and the node has had time to
	// log the attempt if it had seen it.
	if r := pingWith(t, testenv.Client("good@127.0.0.1", p)); r != "pong" {
		t.Fatalf("ping with the right cookie = %s, want pong", r)
	}
	g.Wait(testenv.Msg("handshake"), testenv.NodeIs("good@127.0.0.1"), testenv.Field("outcome", "ok"))
	time.Sleep(time.Second) // nothing to wait on: the check is that no line comes
	for _, l := range n.Out.All() {
		t.Errorf("the node printed %q; a cut attempt must leave it silent", l)
	}
	if strings.Contains(g.Out.String(), testenv.Cookie) {
		t.Errorf("distgate's log holds the cookie")
	}
}

// net_kernel:allow/1 on the node: the node refuses, the client is told,
// and the gate says refused with the status.
func TestWatchNotAllowed(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	app := testenv.App(p)
	app.Args = []string{"-eval", "ok = net_kernel:allow(['only@127.0.0.1'])."}
	testenv.StartNode(t, app)
	g := testenv.StartGate(t, testenv.AppGate("w", p, testenv.Allow([]string{"127.0.0.1/32"})))

	if r := pingWith(t, testenv.Client("other@127.0.0.1", p)); r != "pang" {
		t.Fatalf("ping = %s, want pang", r)
	}
	h := g.Wait(testenv.Msg("handshake"), testenv.NodeIs("other@127.0.0.1"))
	if h.Str("outcome") != "refused" || h.Str("status") != "not_allowed" {
		t.Errorf("handshake line = %v, want outcome refused, status not_allowed", h)
	}
	if c := g.Wait(testenv.Msg("closed"), testenv.NodeIs("other@127.0.0.1")); c.Str("reason") != "refused" {
		t.Errorf("closed line = %v, want reason refused", c)
	}
}

// A client that asks for a name, and a second VM with a name already
// connected (the node says alive): both end ok, and the dynamic one is
// logged under the name the node gave it.
func TestWatchNamedAndAlive(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	testenv.StartNode(t, testenv.App(p))
	g := testenv.StartGate(t, testenv.AppGate("w", p, testenv.Allow([]string{"127.0.0.1/32"})))

	// A dynamic name implies dist_auto_connect never: connect explicitly.
	out := testenv.MustRun(t, testenv.Client("undefined@127.0.0.1", p),
		`io:format("connect ~p~nme ~p~n", [net_kernel:connect_node(Node), node()])`)
	var me string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "me "); ok {
			me = strings.Trim(v, "'")
		}
	}
	if !strings.Contains(out, "connect true") || !strings.HasSuffix(me, "@127.0.0.1") {
		t.Fatalf("dynamic-name client:\n%s", out)
	}
	h := g.Wait(testenv.Msg("handshake"), testenv.NodeIs(me))
	if h.Str("outcome") != "ok" {
		t.Errorf("dynamic name: handshake line = %v, want outcome ok under %s", h, me)
	}
	if a := g.Wait(testenv.Msg("admitted"), testenv.Field("remote", h.Str("remote"))); a.Str("node") != "127.0.0.1" {
		t.Errorf("dynamic name: admitted line = %v, want the host it asked with", a)
	}

	first := testenv.StartShell(t, testenv.Client("dup@127.0.0.1", p))
	if r := first.Do("ping"); r != "pong" {
		t.Fatalf("first dup: ping = %s", r)
	}
	if r := pingWith(t, testenv.Client("dup@127.0.0.1", p)); r != "pong" {
		t.Fatalf("second dup (alive): ping = %s, want pong", r)
	}
	hs := g.WaitN(2, testenv.Msg("handshake"), testenv.NodeIs("dup@127.0.0.1"))
	for _, h := range hs {
		if h.Str("outcome") != "ok" {
			t.Errorf("dup: handshake line = %v, want outcome ok", h)
		}
	}
}

// Five wrong cookies from one source ban it: the sixth connection gets
// nothing and is denied at accept; other sources, and a never source
// however often it fails, carry on; the ban survives a reload.
func TestWatchBans(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	testenv.StartNode(t, testenv.App(p))
	f := testenv.AppGate("w", p, testenv.Allow([]string{"127.0.0.0/8"}))
	f.Gate[0].Rate, f.Gate[0].Burst = testenv.Ptr(100.0), testenv.Ptr(100)
	f.Gate[0].Ban = config.Ban{After: testenv.Ptr(5), Never: []string{"127.0.0.4/32"}}
	g := testenv.StartGate(t, f)
	gw := testenv.Addr(testenv.GateIP, p)

	bad := testenv.Client("bad@127.0.0.1", p).Bind("127.0.0.3")
	bad.Cookie = "not-the-cookie"
	for i := range 5 {
		if r := pingWith(t, bad); r != "pang" {
			t.Fatalf("wrong cookie %d: ping = %s, want pang", i+1, r)
		}
	}
	b := g.Wait(testenv.Msg("banned"))
	if b.Str("remote") != "127.0.0.3" || b.Num("failures") != 5 || b.Str("until") == "" || b.Str("gate") != "w" {
		t.Errorf("banned line = %v, want remote 127.0.0.3, failures 5, until", b)
	}
	sixth := func() {
		t.Helper()
		c := testenv.Dial(t, "127.0.0.3", gw)
		_, _ = c.Write(testenv.Hello("bad@127.0.0.1")) // may fail once the gate has closed
		n, _, err := testenv.ReadToEnd(c, testenv.WaitTimeout)
		if n != 0 || (err != nil && !strings.Contains(err.Error(), "reset")) {
			t.Errorf("banned source: got %d bytes, then %v; want none and a close", n, err)
		}
		d := g.Wait(testenv.Msg("denied"), testenv.Reason("banned"),
			testenv.Field("remote", c.LocalAddr().String()))
		if d.Str("node") != "" {
			t.Errorf("denied line = %v: something was read from a banned source", d)
		}
	}
	sixth()
	if r := pingWith(t, testenv.Client("good@127.0.0.1", p)); r != "pong" {
		t.Errorf("127.0.0.1 after the ban: ping = %s, want pong", r)
	}

	// A never source fails and fails, and still gets in.
	for range 7 {
		c := testenv.Dial(t, "127.0.0.4", gw)
		if _, err := c.Write(wire.ScannerProbe); err != nil {
			t.Fatal(err)
		}
		_, _, _ = testenv.ReadToEnd(c, testenv.WaitTimeout)
	}
	// (Denial lines are sampled: five per source per period.)
	g.WaitN(5, testenv.Reason("missing_flags"), testenv.From("127.0.0.4"))
	if r := pingWith(t, testenv.Client("never@127.0.0.1", p).Bind("127.0.0.4")); r != "pong" {
		t.Errorf("never source after 7 failures: ping = %s, want pong", r)
	}
	if n := g.Count(testenv.Msg("banned")); n != 1 {
		t.Errorf("%d banned lines, want 1", n)
	}

	// The ban survives SIGHUP.
	g.Reload(f)
	g.Wait(testenv.Msg("reloaded"))
	sixth()
	if n := g.Count(testenv.Msg("unbanned")); n != 0 {
		t.Errorf("%d unbanned lines after a reload that keeps the ban", n)
	}
}

// SIGTERM with drain_timeout 0s: a client still in its first message (one
// byte sent, handshake_timeout 20s) is cut at once with reason shutdown,
// and distgate exits within a second or so, not at the handshake timeout.
func TestWatchShutdownCutsFirstMessage(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	testenv.StartNode(t, testenv.App(p))
	f := testenv.AppGate("w", p, testenv.Allow([]string{"127.0.0.1/32"}))
	f.DrainTimeout = testenv.Dur(0)
	f.Gate[0].HandshakeTimeout = testenv.Dur(20 * time.Second)
	f.Gate[0].SetupTimeout = testenv.Dur(30 * time.Second)
	g := testenv.StartGate(t, f)

	base := g.Sockets()
	c := testenv.Dial(t, "127.0.0.1", testenv.Addr(testenv.GateIP, p))
	if _, err := c.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	// Accepted once distgate holds one more socket.
	for deadline := time.Now().Add(testenv.WaitTimeout); g.Sockets() <= base; {
		if time.Now().After(deadline) {
			t.Fatal("distgate did not accept the connection")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	if code := g.Shutdown(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("distgate exited %v after SIGTERM with drain_timeout 0s, want about a second at most", took)
	}
	if d := g.Wait(testenv.Msg("denied"), testenv.Field("remote", c.LocalAddr().String())); d.Str("reason") != "shutdown" {
		t.Errorf("denied line = %v, want reason shutdown", d)
	}
}
