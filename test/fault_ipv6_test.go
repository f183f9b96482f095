package test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

// portV6 returns a port free on the IPv4 loopback addresses and on [::1].
func portV6(t *testing.T) int { t.Helper(); return testenv.Port(t, "127.0.0.1", "127.0.0.2", "::1") }

// rpc6 runs an IPv6 client name that asks app@::1 (through port) for its
// node name and returns what it printed.
func rpc6(t *testing.T, name string, port int) string {
	t.Helper()
	c := testenv.Erl{Name: name, Port: port, IPv6: true, Hidden: true, Target: "app@::1"}
	return strings.TrimSpace(testenv.MustRun(t, c, `io:format("~p~n", [rpc:call(Node, erlang, node, [], 10000)])`))
}

// addLoopback6 adds addr/128 to lo (it needs CAP_NET_ADMIN) and removes it
// at cleanup. It reports false, with the reason, if the kernel refuses.
func addLoopback6(t *testing.T, a string) (bool, string) {
	t.Helper()
	out, err := exec.Command("ip", "-6", "addr", "add", a+"/128", "dev", "lo", "nodad").CombinedOutput()
	if err != nil {
		return false, fmt.Sprintf("ip -6 addr add %s/128 dev lo: %v: %s", a, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "-6", "addr", "del", a+"/128", "dev", "lo").CombinedOutput(); err != nil {
			t.Errorf("removing %s from lo: %v: %s", a, err, out)
		}
	})
	return true, ""
}

// IPv6 end to end: a real IPv6 node (app@::1, -proto_dist inet6_tcp) behind
// distgate on [::1], admitted by an IPv6 allow entry.
func TestIPv6EndToEnd(t *testing.T) {
	t.Parallel()
	p, pNode := portV6(t), portV6(t)
	testenv.StartNode(t, testenv.Erl{Name: "app@::1", Port: pNode, Addr: "::1", IPv6: true})
	g := testenv.StartGate(t, testenv.GateFile("v6", testenv.Addr("::1", p), testenv.Addr("::1", pNode), testenv.Allow([]string{"::1"}, "b6@*")))

	if got := rpc6(t, "b6@::1", p); got != "'app@::1'" {
		t.Fatalf("rpc through [::1]:%d = %s, want 'app@::1'", p, got)
	}
	adm := g.Wait(testenv.Msg("admitted"), testenv.NodeIs("b6@::1"))
	if h, _, err := net.SplitHostPort(adm.Str("remote")); err != nil || h != "::1" || adm.Str("upstream") != fmt.Sprintf("[::1]:%d", pNode) {
		t.Errorf("admitted line %v, want remote [::1]:port and upstream [::1]:%d", adm, pNode)
	}
	// Another name from the same source is refused.
	if got := rpc6(t, "evil@::1", p); got != "{badrpc,nodedown}" {
		t.Errorf("evil@::1: rpc = %s, want {badrpc,nodedown}", got)
	}
	if d := g.Wait(testenv.Msg("denied"), testenv.NodeIs("evil@::1")); d.Str("reason") != "name_not_allowed" {
		t.Errorf("denied line %v, want name_not_allowed", d)
	}
}

// IPv6 sources are rate limited per /64: two addresses in one /64 share a
// bucket, an address in another /64 has its own. The addresses are added to
// lo for the test (fd00::/8, unique local) and removed afterwards; that needs
// CAP_NET_ADMIN, so without it the test says so and stops (policy's
// TestLimiterSourceKeys covers the keying without sockets).
func TestIPv6PrefixKeying(t *testing.T) {
	t.Parallel()
	// A random /48 so that concurrent runs do not share addresses.
	base := fmt.Sprintf("fd00:%x:%x", rand.IntN(0xffff)+1, rand.IntN(0xffff)+1)
	a1, a2, b1 := base+":1::1", base+":1::2", base+":2::1"
	for _, a := range []string{a1, a2, b1} {
		if ok, why := addLoopback6(t, a); !ok {
			t.Skipf("cannot add IPv6 addresses to lo here (%s); /64 keying is covered by policy.TestLimiterSourceKeys", why)
		}
	}
	p := portV6(t)
	up := testenv.StartFakeNode(t, "[::1]:0", false)
	f := testenv.GateFile("v6", testenv.Addr("::1", p), up.Addr(), testenv.Allow([]string{base + "::/48"}))
	f.Gate[0].Rate, f.Gate[0].Burst = testenv.Ptr(0.001), testenv.Ptr(2)
	g := testenv.StartGate(t, f)
	gw := testenv.Addr("::1", p)

	// try plays a node's handshake; a denied one ends at the status, which
	// never comes.
	try := func(src, name string) {
		t.Helper()
		c := testenv.Dial(t, src, gw)
		_ = c.SetDeadline(time.Now().Add(testenv.WaitTimeout))
		_, _, _ = testenv.Handshake(c, name)
	}
	// The /64 of a1 and a2 gets two connections (burst 2) between them.
	try(a1, "x1@h")
	try(a2, "x2@h")
	g.WaitN(2, testenv.Msg("admitted"))
	try(a1, "x3@h")
	try(a2, "x4@h")
	for _, src := range []string{a1, a2} {
		if d := g.Wait(testenv.Msg("denied"), testenv.From(src)); d.Str("reason") != "rate_limited" {
			t.Errorf("third and fourth connections of %s::/64: %v, want rate_limited", base+":1", d)
		}
	}
	// The other /64 has a full bucket of its own.
	try(b1, "y1@h")
	try(b1, "y2@h")
	g.WaitN(4, testenv.Msg("admitted"))
	if k := g.Count(testenv.Msg("admitted"), testenv.From(b1)); k != 2 {
		t.Errorf("%s admitted %d times, want 2 (its own /64's burst)", b1, k)
	}
	if k := g.Count(testenv.Msg("denied")); k != 2 {
		t.Errorf("%d denied lines, want 2 (the shared /64's excess)", k)
	}
	for _, l := range g.Lines() {
		if l.Str("remote") != "" && !strings.HasPrefix(l.Str("remote"), "["+base+":") {
			t.Errorf("unexpected remote %q", l.Str("remote"))
		}
	}
}
