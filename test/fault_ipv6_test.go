package test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"

	"github.com/distgate/distgate/stress/attack"
)

// IPv6 end to end: a real IPv6 node (app@::1, -proto_dist inet6_tcp) behind
// distgate on [::1], admitted by an IPv6 allow entry.
func TestIPv6EndToEnd(t *testing.T) {
	t.Parallel()
	p, pNode := freePort6(t), freePort6(t)
	startNode6(t, pNode)
	conf := fmt.Sprintf(`drain_timeout = "1s"

[[gate]]
name = "v6"
listen = "[::1]:%d"
upstream = "[::1]:%d"
`, p, pNode) + allow([]string{"::1"}, "b6@*")
	g := startGate(t, conf)

	if got := rpc6(t, "b6@::1", p); got != "'app@::1'" {
		t.Fatalf("rpc through [::1]:%d = %s, want 'app@::1'", p, got)
	}
	adm := g.wait(msg("admitted"), nodeIs("b6@::1"))
	if h, _, err := net.SplitHostPort(adm.str("remote")); err != nil || h != "::1" || adm.str("upstream") != fmt.Sprintf("[::1]:%d", pNode) {
		t.Errorf("admitted line %v, want remote [::1]:port and upstream [::1]:%d", adm, pNode)
	}
	// Another name from the same source is refused.
	if got := rpc6(t, "evil@::1", p); got != "{badrpc,nodedown}" {
		t.Errorf("evil@::1: rpc = %s, want {badrpc,nodedown}", got)
	}
	if d := g.wait(msg("denied"), nodeIs("evil@::1")); d.str("reason") != "name_not_allowed" {
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
	p := freePort6(t)
	up := startUpstream(t, "[::1]:0")
	conf := fmt.Sprintf(`drain_timeout = "1s"

[[gate]]
name = "v6"
listen = "[::1]:%d"
upstream = %q
rate = 0.001
burst = 2
`, p, up.Addr()) + allow([]string{base + "::/48"})
	g := startGate(t, conf)
	gw := addr("::1", p)

	try := func(src, name string) {
		t.Helper()
		c := dialFrom(t, src, gw)
		if _, err := c.Write(attack.Hello(name)); err != nil {
			t.Fatal(err)
		}
	}
	// The /64 of a1 and a2 gets two connections (burst 2) between them.
	try(a1, "x1@h")
	try(a2, "x2@h")
	g.waitN(2, msg("admitted"))
	try(a1, "x3@h")
	try(a2, "x4@h")
	for _, src := range []string{a1, a2} {
		if d := g.wait(msg("denied"), from(src)); d.str("reason") != "rate_limited" {
			t.Errorf("third and fourth connections of %s::/64: %v, want rate_limited", base+":1", d)
		}
	}
	// The other /64 has a full bucket of its own.
	try(b1, "y1@h")
	try(b1, "y2@h")
	g.waitN(4, msg("admitted"))
	if k := g.count(msg("admitted"), from(b1)); k != 2 {
		t.Errorf("%s admitted %d times, want 2 (its own /64's burst)", b1, k)
	}
	if k := g.count(msg("denied")); k != 2 {
		t.Errorf("%d denied lines, want 2 (the shared /64's excess)", k)
	}
	for _, l := range g.lines() {
		if l.str("remote") != "" && !strings.HasPrefix(l.str("remote"), "["+base+":") {
			t.Errorf("unexpected remote %q", l.str("remote"))
		}
	}
}
