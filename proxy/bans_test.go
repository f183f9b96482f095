package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/wire"
)

// Bans through a gate: failures from one source ban it, a banned source is
// refused at accept with nothing read, a new ban closes what the source has
// open, and bans end by expiry, by hand or by reload.

func banRules(after int, never ...string) policy.BanRules {
	r := policy.BanRules{After: after, Window: time.Minute, Duration: time.Minute, MaxDuration: time.Hour}
	for _, n := range never {
		r.Never = append(r.Never, netip.MustParsePrefix(n))
	}
	return r
}

// bannedNow asserts that a connection from src is refused at accept: closed
// at once without waiting for a byte (the handshake timeout is long) and
// denied with reason banned, nothing decoded.
func bannedNow(t *testing.T, h *harness, src string) {
	t.Helper()
	start := time.Now()
	c := dialFrom(t, src, h.addr)
	expectSilentClose(t, c, false)
	if took := time.Since(start); took > time.Second {
		t.Errorf("banned connection from %s closed after %v, want at once", src, took)
	}
	e := h.log.waitFor(t, "denied", from(c))
	if e.str("reason") != "banned" || e.has("node") {
		t.Errorf("denied line = %v, want reason banned and nothing decoded", e)
	}
}

func TestBanAfterFailures(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}, "ok-*@*")))
	s.HandshakeTimeout = 300 * time.Millisecond
	s.Ban = banRules(3, "127.0.0.4/32")
	var changed atomic.Int64
	h := startGate(t, up.addr(), s, withOnBans(func() { changed.Add(1) }))

	// Three kinds of failure from .3: a TLS record, the scanner probe,
	// silence.
	for _, send := range [][]byte{{0x16, 0x03, 0x01, 0x00, 0x05}, wire.ScannerProbe, nil} {
		c := dialFrom(t, "127.0.0.3", h.addr)
		if send != nil {
			write(t, c, send)
		}
		expectClosed(t, c)
		h.log.waitFor(t, "denied", from(c))
	}
	b := h.log.waitFor(t, "banned", nil)
	if b.str("remote") != "127.0.0.3" || b.num("failures") != 3 || b.str("until") == "" || b.str("gate") != "test" {
		t.Errorf("banned line = %v, want remote 127.0.0.3, failures 3, until", b)
	}
	bannedNow(t, h, "127.0.0.3")

	// Other sources carry on; a never source fails and fails and is never
	// banned.
	c, u := admit(t, h, up, "127.0.0.2", "ok-1@h")
	pass(t, c, u, []byte("ping"))
	for range 5 {
		c := dialFrom(t, "127.0.0.4", h.addr)
		write(t, c, hello(t, "evil@h"))
		expectClosed(t, c)
		if e := h.log.waitFor(t, "denied", from(c)); e.str("reason") != "name_not_allowed" {
			t.Errorf("never source: %v, want name_not_allowed", e)
		}
	}
	admit(t, h, up, "127.0.0.4", "ok-2@h")
	if _, err := h.g.Ban(netip.MustParseAddr("127.0.0.4"), 0); !errors.Is(err, policy.ErrNeverBan) {
		t.Errorf("Ban of a never source: %v, want ErrNeverBan", err)
	}

	bans := h.g.Bans()
	if len(bans) != 1 || bans[0].Source != netip.MustParsePrefix("127.0.0.3/32") || bans[0].Failures != 3 {
		t.Errorf("Bans() = %+v, want 127.0.0.3 with 3 failures", bans)
	}
	if n := len(h.log.all(t, "banned", nil)); n != 1 {
		t.Errorf("%d banned lines, want 1", n)
	}
	v := h.obs.view()
	if v.bans != 1 || v.bansActive != 1 || v.decided[policy.Banned] != 1 {
		t.Errorf("observer: %d bans, %d active, %d denied banned; want 1, 1, 1", v.bans, v.bansActive, v.decided[policy.Banned])
	}
	if changed.Load() != 1 {
		t.Errorf("OnBansChanged called %d times, want 1", changed.Load())
	}
}

// TestBanOnWrongCookie: wrong cookies are failures, whether the gate or the
// node judges them.
func TestBanOnWrongCookie(t *testing.T) {
	for _, atGate := range []bool{true, false} {
		name := "judged by the node"
		if atGate {
			name = "cut at the gate"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, "127.0.0.1:0")
			s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2", "127.0.0.3"})))
			s.HandshakeTimeout = testWait
			s.Ban = banRules(2)
			if atGate {
				s.Cookie = []byte(testCookie)
			}
			h := startGate(t, up.addr(), s)
			for range 2 {
				c, u := reach(t, h, up, "127.0.0.3", "b@127.0.0.1")
				pass(t, u, c, append(statusFrame(t, wire.StatusOK), challengeFrame(t)...))
				write(t, c, replyFrame(t, "wrong"))
				if !atGate {
					expect(t, u, replyFrame(t, "wrong"))
					_ = u.Close()
				}
				expectClosed(t, c)
				if e := h.log.waitFor(t, "handshake", from(c)); e.str("outcome") != "auth_failed" {
					t.Errorf("handshake line = %v, want auth_failed", e)
				}
			}
			if b := h.log.waitFor(t, "banned", nil); b.str("remote") != "127.0.0.3" || b.num("failures") != 2 {
				t.Errorf("banned line = %v", b)
			}
			bannedNow(t, h, "127.0.0.3")
			admit(t, h, up, "127.0.0.2", "c@127.0.0.1")
		})
	}
}

// TestBanClosesLiveConnections: a new ban (here by hand) closes every
// connection its source has on the gate, whatever stage it is at, and no
// other; Unban lets the source in again.
func TestBanClosesLiveConnections(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2", "127.0.0.3"})))
	s.HandshakeTimeout = testWait
	s.Ban = banRules(5)
	h := startGate(t, up.addr(), s)

	fwd, fwdU := admit(t, h, up, "127.0.0.3", "fwd@h")
	inWatch, _ := reach(t, h, up, "127.0.0.3", "watch@h")
	reading := dialFrom(t, "127.0.0.3", h.addr)
	other, otherU := admit(t, h, up, "127.0.0.2", "other@h")
	waitUntil(t, "four connections", func() bool { return h.g.conns.Total() == 4 })

	b, err := h.g.Ban(netip.MustParseAddr("127.0.0.3"), time.Hour)
	if err != nil || b.Source != netip.MustParsePrefix("127.0.0.3/32") || time.Until(b.Until) < 59*time.Minute {
		t.Fatalf("Ban = %+v, %v", b, err)
	}
	for _, c := range []*net.TCPConn{fwd, inWatch, reading} {
		expectClosed(t, c)
	}
	if e := h.log.waitFor(t, "closed", from(fwd)); e.str("reason") != "banned" || e.str("outcome") != "ok" {
		t.Errorf("forwarding connection: %v, want closed reason banned, outcome ok", e)
	}
	if e := h.log.waitFor(t, "handshake", from(inWatch)); e.str("outcome") != "aborted" || e.str("reason") != "banned" {
		t.Errorf("connection in the watch: %v, want outcome aborted, reason banned", e)
	}
	if e := h.log.waitFor(t, "closed", from(inWatch)); e.str("reason") != "banned" {
		t.Errorf("connection in the watch: %v, want closed reason banned", e)
	}
	if e := h.log.waitFor(t, "denied", from(reading)); e.str("reason") != "banned" {
		t.Errorf("connection reading its first message: %v, want denied reason banned", e)
	}
	if e := h.log.waitFor(t, "banned", nil); e.num("failures") != 0 || e.str("remote") != "127.0.0.3" {
		t.Errorf("banned line = %v, want failures 0 (by hand)", e)
	}
	_ = fwdU
	pass(t, other, otherU, []byte("still here"))
	bannedNow(t, h, "127.0.0.3")
	if st := h.g.Status(); len(st.Bans) != 1 || len(st.Conns) != 1 || st.Conns[0].Node != "other@h" {
		t.Errorf("Status = %+v, want one ban and only the other source's connection", st)
	}

	if lifted, ok := h.g.Unban(netip.MustParseAddr("127.0.0.3")); !ok || lifted.Source != b.Source {
		t.Errorf("Unban = %+v, %v", lifted, ok)
	}
	if e := h.log.waitFor(t, "unbanned", nil); e.str("remote") != "127.0.0.3" {
		t.Errorf("unbanned line = %v", e)
	}
	admit(t, h, up, "127.0.0.3", "back@h")
	if _, ok := h.g.Unban(netip.MustParseAddr("127.0.0.3")); ok {
		t.Errorf("second Unban reported a ban lifted")
	}
	if v := h.obs.view(); v.closed["banned"] != 2 || v.bansActive != 0 || v.bans != 1 {
		t.Errorf("observer: closed %v, %d active, %d bans; want 2 closed banned, 0, 1", v.closed, v.bansActive, v.bans)
	}
}

// TestBansAcrossUpdate: bans survive a reload that keeps bans on, and are
// lifted (and logged unbanned) by one that adds the source to never or
// turns bans off.
func TestBansAcrossUpdate(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	r := rules(policy.RequireOTP25, allow(t, []string{"127.0.0.0/8"}))
	s := settings(r)
	s.Ban = banRules(3)
	h := startGate(t, up.addr(), s)
	for _, a := range []string{"127.0.0.3", "127.0.0.4"} {
		if _, err := h.g.Ban(netip.MustParseAddr(a), 0); err != nil {
			t.Fatal(err)
		}
	}

	same := *s
	h.g.Update(&same)
	if n := len(h.g.Bans()); n != 2 {
		t.Fatalf("%d bans after a reload, want 2", n)
	}
	bannedNow(t, h, "127.0.0.3")

	never := *s
	never.Ban = banRules(3, "127.0.0.3/32")
	h.g.Update(&never)
	if e := h.log.waitFor(t, "unbanned", nil); e.str("remote") != "127.0.0.3" {
		t.Errorf("unbanned line = %v, want 127.0.0.3", e)
	}
	admit(t, h, up, "127.0.0.3", "a@h")
	bannedNow(t, h, "127.0.0.4")

	off := *s
	off.Ban = policy.BanRules{}
	h.g.Update(&off)
	h.log.waitFor(t, "unbanned", func(e entry) bool { return e.str("remote") == "127.0.0.4" })
	admit(t, h, up, "127.0.0.4", "b@h")
	if n := len(h.g.Bans()); n != 0 {
		t.Errorf("%d bans with bans off, want 0", n)
	}
	if v := h.obs.view(); v.bansActive != 0 {
		t.Errorf("bans active %d, want 0", v.bansActive)
	}
}

// TestBanExpires: the gate's ticker ends a ban on time and logs it.
func TestBanExpires(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.3"})))
	s.Ban = banRules(3)
	var changed atomic.Int64
	h := startGate(t, up.addr(), s, withOnBans(func() { changed.Add(1) }))
	if _, err := h.g.Ban(netip.MustParseAddr("127.0.0.3"), time.Second); err != nil {
		t.Fatal(err)
	}
	bannedNow(t, h, "127.0.0.3")
	h.log.waitFor(t, "unbanned", nil)
	admit(t, h, up, "127.0.0.3", "a@h")
	if changed.Load() != 2 {
		t.Errorf("OnBansChanged called %d times, want 2 (ban, expiry)", changed.Load())
	}
}

// TestBanIPv6Prefix: a ban covers the source's /64, and says so.
func TestBanIPv6Prefix(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "[::1]:0")
	s := settings(rules(policy.RequireOTP25, allow(t, []string{"::1/128"})))
	s.Ban = banRules(3)
	h := startGate(t, up.addr(), s, withListen("[::1]:0"))
	if _, err := h.g.Ban(netip.MustParseAddr("::1"), 0); err != nil {
		t.Fatal(err)
	}
	if e := h.log.waitFor(t, "banned", nil); e.str("remote") != "::/64" {
		t.Errorf("banned line = %v, want remote ::/64", e)
	}
	bannedNow(t, h, "::1")
}

// TestRestoreBans: saved bans come back, except those that ended.
func TestRestoreBans(t *testing.T) {
	s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.0/8"})))
	s.Ban = banRules(3)
	g := NewGate(Config{Name: "g", Upstream: "127.0.0.1:1", Settings: s})
	now := time.Now()
	saved := []policy.Ban{
		{Source: netip.MustParsePrefix("127.0.0.3/32"), Until: now.Add(time.Hour), Failures: 3, Level: 2},
		{Source: netip.MustParsePrefix("127.0.0.4/32"), Until: now.Add(-time.Second), Failures: 3, Level: 1},
	}
	if n := g.RestoreBans(saved); n != 1 {
		t.Errorf("RestoreBans restored %d, want 1", n)
	}
	if bs := g.Bans(); len(bs) != 1 || bs[0].Source != saved[0].Source || bs[0].Level != 2 {
		t.Errorf("Bans() = %+v, want the one still running", bs)
	}
}
