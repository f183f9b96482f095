package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/time/rate"

	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/wire"
)

func TestAdmittedConversation(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25,
		allow(t, []string{"127.0.0.2"}, "rem-*-app@*"))))

	c := dialFrom(t, "127.0.0.2", h.addr)
	m := hello(t, "rem-1-app@127.0.0.1")
	write(t, c, m)
	u := up.next(t)
	expect(t, u, m) // the first message reaches the node byte for byte
	handshake(t, c, u, testCookie)

	toNode := randBytes(4096)
	write(t, c, toNode)
	expect(t, u, toNode)
	toClient := randBytes(10000)
	write(t, u, toClient)
	expect(t, c, toClient)

	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := readToEnd(t, u); len(rest) != 0 || err != io.EOF {
		t.Fatalf("upstream after client's FIN: %d bytes, %v; want 0 bytes, EOF", len(rest), err)
	}
	_ = u.Close()
	if rest, err := readToEnd(t, c); len(rest) != 0 || err != io.EOF {
		t.Fatalf("client after upstream closed: %d bytes, %v; want 0 bytes, EOF", len(rest), err)
	}

	closed := h.log.waitFor(t, "closed", from(c))
	adm := h.log.waitFor(t, "admitted", from(c))
	hs := h.log.waitFor(t, "handshake", from(c))
	if hs.str("outcome") != "ok" || hs.str("node") != "rem-1-app@127.0.0.1" || !hs.has("dur") || hs.has("status") || hs.has("error") {
		t.Errorf("handshake line = %v, want outcome ok, the node, dur", hs)
	}
	want := map[string]string{"gate": "test", "node": "rem-1-app@127.0.0.1", "tag": "N",
		"flags": "0000000d07df7fbc", "upstream": up.addr(), "level": "info"}
	for k, v := range want {
		if adm.str(k) != v {
			t.Errorf("admitted %s = %q, want %q", k, adm.str(k), v)
		}
	}
	if adm["hidden"] != true {
		t.Errorf("admitted hidden = %v, want true", adm["hidden"])
	}
	if got, want := closed.num("bytes_in"), hsIn(t, "rem-1-app@127.0.0.1")+int64(len(toNode)); got != want {
		t.Errorf("closed bytes_in = %d, want %d", got, want)
	}
	if got, want := closed.num("bytes_out"), hsOut(t)+int64(len(toClient)); got != want {
		t.Errorf("closed bytes_out = %d, want %d", got, want)
	}
	if closed.has("reason") || !closed.has("dur") || closed.str("node") != "rem-1-app@127.0.0.1" ||
		closed.str("outcome") != "ok" || closed.str("path") != "user" {
		t.Errorf("closed line = %v, want node, dur, outcome ok, path user and no reason", closed)
	}
	es := h.log.entries(t)
	if len(es) != 3 || es[0].str("message") != "admitted" || es[1].str("message") != "handshake" || es[2].str("message") != "closed" {
		t.Errorf("log = %v, want admitted, handshake, closed", es)
	}

	v := h.obs.view()
	if v.decided[policy.Admitted] != 1 || v.total() != 1 {
		t.Errorf("Decided = %v, want one admitted", v.decided)
	}
	if v.active != 0 || v.peak != 1 {
		t.Errorf("Active ended at %d (peak %d), want 0 (peak 1)", v.active, v.peak)
	}
	if v.in != closed.num("bytes_in") || v.out != closed.num("bytes_out") {
		t.Errorf("Moved %d/%d, want %d/%d", v.in, v.out, closed.num("bytes_in"), closed.num("bytes_out"))
	}
	if v.outcomes[wire.OutcomeOK] != 1 || len(v.outcomes) != 1 || v.closed[""] != 1 || len(v.closed) != 1 {
		t.Errorf("Handshake %v, Closed %v; want one ok, one closed by itself", v.outcomes, v.closed)
	}
}

func TestDeniedSource(t *testing.T) {
	for _, reset := range []bool{false, true} {
		name := "close"
		if reset {
			name = "reset"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, "127.0.0.1:0")
			s := settings(rules(policy.RequireNone, allow(t, []string{"127.0.0.2"})))
			s.Reset = reset
			h := startGate(t, up.addr(), s)

			match := func(e entry) bool { return strings.HasPrefix(e.str("remote"), "127.0.0.3:") }
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}, Timeout: testWait}
			c, err := d.Dial("tcp", h.addr)
			switch {
			case err == nil:
				t.Cleanup(func() { _ = c.Close() })
				_ = c.SetDeadline(time.Now().Add(testWait))
				expectSilentClose(t, c, reset)
				match = from(c)
			case reset && errors.Is(err, syscall.ECONNRESET):
				// The RST came before connect(2) had returned: the client
				// saw the reset as a failed dial, which is just as silent.
			default:
				t.Fatalf("dial: %v", err)
			}
			e := h.log.waitFor(t, "denied", match)
			if e.str("reason") != "source_not_allowed" || e.has("node") {
				t.Errorf("denied line = %v, want reason source_not_allowed and no node", e)
			}
			if n := up.accepts.Load(); n != 0 {
				t.Errorf("upstream accepted %d connections, want 0", n)
			}
			if v := h.obs.view(); v.decided[policy.SourceNotAllowed] != 1 || v.total() != 1 {
				t.Errorf("Decided = %v, want one source_not_allowed", v.decided)
			}
		})
	}
}

func TestRateLimited(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2", "127.0.0.3"})))
	s.Rate, s.Burst = rate.Limit(0.001), 2 // two, then one per 1000 s
	h := startGate(t, up.addr(), s)

	admit(t, h, up, "127.0.0.2", "a@h")
	admit(t, h, up, "127.0.0.2", "b@h")
	c := dialFrom(t, "127.0.0.2", h.addr)
	expectSilentClose(t, c, false)
	if e := h.log.waitFor(t, "denied", from(c)); e.str("reason") != "rate_limited" {
		t.Errorf("third connection: reason %q, want rate_limited", e.str("reason"))
	}
	// The budget is per source.
	admit(t, h, up, "127.0.0.3", "c@h")
	if n := up.accepts.Load(); n != 3 {
		t.Errorf("upstream accepted %d, want 3", n)
	}
	if v := h.obs.view(); v.decided[policy.RateLimited] != 1 || v.decided[policy.Admitted] != 3 {
		t.Errorf("Decided = %v, want 3 admitted, 1 rate_limited", v.decided)
	}
}

func TestTooManyConns(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.0/8"})))
	s.MaxConns = 1
	h := startGate(t, up.addr(), s)

	c1, u1 := admit(t, h, up, "127.0.0.2", "a@h")
	c2 := dialFrom(t, "127.0.0.3", h.addr)
	expectSilentClose(t, c2, false)
	if e := h.log.waitFor(t, "denied", from(c2)); e.str("reason") != "too_many_conns" {
		t.Errorf("second connection: reason %q, want too_many_conns", e.str("reason"))
	}

	// Once the first ends, its slot is free again.
	_ = c1.Close()
	_ = u1.Close()
	h.log.waitFor(t, "closed", from(c1))
	waitUntil(t, "the first connection's slot to be released", func() bool { return h.g.conns.Total() == 0 })
	admit(t, h, up, "127.0.0.3", "b@h")
	if n := up.accepts.Load(); n != 2 {
		t.Errorf("upstream accepted %d, want 2", n)
	}
}

func TestTooManyConnsPerSource(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.0/8"})))
	s.MaxConnsPerSource = 1
	h := startGate(t, up.addr(), s)

	admit(t, h, up, "127.0.0.2", "a@h")
	c := dialFrom(t, "127.0.0.2", h.addr)
	expectSilentClose(t, c, false)
	if e := h.log.waitFor(t, "denied", from(c)); e.str("reason") != "too_many_conns_per_source" {
		t.Errorf("second connection from .2: reason %q, want too_many_conns_per_source", e.str("reason"))
	}
	admit(t, h, up, "127.0.0.3", "b@h") // another source still gets in
	if v := h.obs.view(); v.decided[policy.TooManyConnsPerSource] != 1 || v.decided[policy.Admitted] != 2 {
		t.Errorf("Decided = %v", v.decided)
	}
}

func TestTooManyHandshakes(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	hs := policy.NewHandshakes(1) // shared by both gates
	r := rules(policy.RequireOTP25, allow(t, []string{"127.0.0.0/8"}))
	ha := startGate(t, up.addr(), settings(r), withHandshakes(hs), withName("a"))
	hb := startGate(t, up.addr(), settings(r), withHandshakes(hs), withName("b"))

	silent := dialFrom(t, "127.0.0.2", ha.addr)
	waitUntil(t, "the silent client to hold the handshake slot", func() bool { return hs.InProgress() == 1 })
	c := dialFrom(t, "127.0.0.3", hb.addr)
	expectSilentClose(t, c, false)
	if e := hb.log.waitFor(t, "denied", from(c)); e.str("reason") != "too_many_handshakes" || e.str("gate") != "b" {
		t.Errorf("denied line = %v, want gate b, reason too_many_handshakes", e)
	}

	_ = silent.Close()
	if e := ha.log.waitFor(t, "denied", from(silent)); e.str("reason") != "bad_handshake" {
		t.Errorf("silent client that closed: reason %q, want bad_handshake", e.str("reason"))
	}
	waitUntil(t, "the handshake slot to be released", func() bool { return hs.InProgress() == 0 })
	admit(t, hb, up, "127.0.0.3", "b@h")
}

// TestBadFirstMessages covers every way the first message can fail: each is
// closed without a byte written and without a connection to the node.
func TestBadFirstMessages(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tooLong := []byte{0xff, 0xff}
	tls := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}
	for _, tc := range []struct {
		name    string
		send    []byte
		reason  string
		slow    bool   // cut off at the handshake timeout rather than at once
		reset   bool   // the gate closes with unread bytes, so the kernel sends RST
		errPart string // in the denied line's error
		node    string
	}{
		{name: "silent", reason: "handshake_timeout", slow: true},
		{name: "one byte then stall", send: []byte{0x00}, reason: "handshake_timeout", slow: true},
		{name: "half a message then stall", send: hello(t, "a@h")[:10], reason: "handshake_timeout", slow: true},
		{name: "length 0xffff", send: tooLong, reason: "bad_handshake", errPart: "over the cap"},
		{name: "TLS record", send: tls, reason: "bad_handshake", reset: true, errPart: "TLS"},
		{name: "scanner probe", send: wire.ScannerProbe, reason: "missing_flags", node: "AAAAAA@AAAAAAA"},
		{name: "name not allowed", send: hello(t, "evil@127.0.0.1"), reason: "name_not_allowed", node: "evil@127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, "127.0.0.1:0")
			s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}, "rem-*@*", "AAAAAA@*")))
			s.HandshakeTimeout = timeout
			if !tc.slow {
				s.HandshakeTimeout = testWait // a quick denial must not wait for it
			}
			h := startGate(t, up.addr(), s)

			// Timed from before the dial: the gate's clock starts at accept,
			// which cannot come before it, while the dial may return late.
			start := time.Now()
			c := dialFrom(t, "127.0.0.2", h.addr)
			if len(tc.send) > 0 {
				write(t, c, tc.send)
			}
			expectSilentClose(t, c, tc.reset)
			took := time.Since(start)
			if tc.slow && took < timeout-20*time.Millisecond {
				t.Errorf("closed after %v, before the %v handshake timeout", took, timeout)
			}
			if !tc.slow && took > time.Second {
				t.Errorf("closed after %v, want at once", took)
			}
			e := h.log.waitFor(t, "denied", from(c))
			if e.str("reason") != tc.reason {
				t.Errorf("reason %q, want %q (line %v)", e.str("reason"), tc.reason, e)
			}
			if !strings.Contains(e.str("error"), tc.errPart) {
				t.Errorf("error %q, want it to mention %q", e.str("error"), tc.errPart)
			}
			if tc.reason == "handshake_timeout" && e.has("error") {
				t.Errorf("a timeout is not an error, got error %q", e.str("error"))
			}
			if e.str("node") != tc.node {
				t.Errorf("node %q, want %q", e.str("node"), tc.node)
			}
			if tc.name == "scanner probe" && (e.str("tag") != "n" || e.str("flags") != "0003499c") {
				t.Errorf("scanner line tag %q flags %q, want n 0003499c", e.str("tag"), e.str("flags"))
			}
			if n := up.accepts.Load(); n != 0 {
				t.Errorf("upstream accepted %d connections, want 0", n)
			}
		})
	}
}

// TestBytesAfterHello sends the first message and more in one write: the
// gate reads only the message before it decides, and the node gets exactly
// that; the rest is what no client sends before the node's status, so the
// watch ends with protocol_error and the node gets nothing more.
func TestBytesAfterHello(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))

	c := dialFrom(t, "127.0.0.2", h.addr)
	m := hello(t, "a@127.0.0.1")
	write(t, c, append(bytes.Clone(m), randBytes(300<<10)...))
	u := up.next(t)
	got, err := readToEnd(t, u)
	if (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) || !bytes.Equal(got, m) {
		t.Fatalf("upstream got % x then %v, want only the first message, then the end", got[:min(len(got), 64)], err)
	}
	expectClosed(t, c)
	e := h.log.waitFor(t, "handshake", from(c))
	if e.str("outcome") != "protocol_error" || !strings.Contains(e.str("error"), "client frame") {
		t.Errorf("handshake line = %v, want outcome protocol_error, a client frame", e)
	}
	if e := h.log.waitFor(t, "closed", from(c)); e.str("reason") != "protocol_error" || e.num("bytes_in") != int64(len(m)) {
		t.Errorf("closed line = %v, want reason protocol_error, bytes_in %d", e, len(m))
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	h := startGate(t, dead, settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))

	c := dialFrom(t, "127.0.0.2", h.addr)
	write(t, c, hello(t, "a@127.0.0.1"))
	expectSilentClose(t, c, false)
	e := h.log.waitFor(t, "denied", from(c))
	if e.str("reason") != "upstream_unreachable" || e.str("upstream") != dead || e.str("node") != "a@127.0.0.1" {
		t.Errorf("denied line = %v, want reason upstream_unreachable, upstream %s, node a@127.0.0.1", e, dead)
	}
	if !strings.Contains(e.str("error"), "refused") {
		t.Errorf("error %q, want connection refused", e.str("error"))
	}
	if len(h.log.all(t, "admitted", nil)) != 0 || len(h.log.all(t, "closed", nil)) != 0 {
		t.Errorf("log has admitted/closed lines for an unreachable upstream:\n%s", h.log)
	}
	v := h.obs.view()
	if v.decided[policy.UpstreamUnreachable] != 1 || v.total() != 1 || v.peak != 0 {
		t.Errorf("Decided = %v, peak active %d; want one upstream_unreachable, never active", v.decided, v.peak)
	}
	waitUntil(t, "the session to be forgotten", func() bool { return h.g.Live() == 0 })
}

func TestHalfClose(t *testing.T) {
	t.Run("client first", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, "127.0.0.1:0")
		h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))
		c, u := admit(t, h, up, "127.0.0.2", "a@h")
		sent := randBytes(50000)
		write(t, c, sent)
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if got, err := readToEnd(t, u); err != io.EOF || !bytes.Equal(got, sent) {
			t.Fatalf("upstream got %d bytes then %v, want %d then EOF", len(got), err, len(sent))
		}
		reply := randBytes(200000) // after the client's FIN, the node can still answer
		write(t, u, reply)
		_ = u.Close()
		if got, err := readToEnd(t, c); err != io.EOF || !bytes.Equal(got, reply) {
			t.Fatalf("client got %d bytes then %v, want %d then EOF", len(got), err, len(reply))
		}
		e := h.log.waitFor(t, "closed", from(c))
		in, out := hsIn(t, "a@h")+int64(len(sent)), hsOut(t)+int64(len(reply))
		if e.num("bytes_in") != in || e.num("bytes_out") != out {
			t.Errorf("closed in/out = %d/%d, want %d/%d", e.num("bytes_in"), e.num("bytes_out"), in, out)
		}
	})
	t.Run("upstream first", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, "127.0.0.1:0")
		h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))
		c, u := admit(t, h, up, "127.0.0.2", "a@h")
		reply := randBytes(70000)
		write(t, u, reply)
		if err := u.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if got, err := readToEnd(t, c); err != io.EOF || !bytes.Equal(got, reply) {
			t.Fatalf("client got %d bytes then %v, want %d then EOF", len(got), err, len(reply))
		}
		more := randBytes(90000) // after the node's FIN, the client can still send
		write(t, c, more)
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if got, err := readToEnd(t, u); err != io.EOF || !bytes.Equal(got, more) {
			t.Fatalf("upstream got %d bytes then %v, want %d then EOF", len(got), err, len(more))
		}
		e := h.log.waitFor(t, "closed", from(c))
		if e.num("bytes_in") != hsIn(t, "a@h")+int64(len(more)) || e.num("bytes_out") != hsOut(t)+int64(len(reply)) {
			t.Errorf("closed line = %v", e)
		}
	})
}

// TestWriteThenClose: a client that writes data and closes at once, the
// moment it has the node's 'a' (so the data may come while the watch is
// still winding down), still gets every byte to the node.
func TestWriteThenClose(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))
	c, u := admit(t, h, up, "127.0.0.2", "a@h")
	sent := randBytes(64 << 10)
	write(t, c, sent)
	remote := c.LocalAddr().String()
	_ = c.Close()
	if got, err := readToEnd(t, u); err != io.EOF || !bytes.Equal(got, sent) {
		t.Fatalf("upstream got %d bytes then %v, want %d then EOF", len(got), err, len(sent))
	}
	_ = u.Close()
	e := h.log.waitFor(t, "closed", func(e entry) bool { return e.str("remote") == remote })
	if e.num("bytes_in") != hsIn(t, "a@h")+int64(len(sent)) {
		t.Errorf("bytes_in = %d, want %d", e.num("bytes_in"), hsIn(t, "a@h")+int64(len(sent)))
	}
}

func TestUpdateRevokes(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2", "127.0.0.3"}))))
	c2, _ := admit(t, h, up, "127.0.0.2", "a@h")
	c3, u3 := admit(t, h, up, "127.0.0.3", "b@h")
	if n := h.g.Live(); n != 2 {
		t.Fatalf("Live() = %d, want 2", n)
	}

	newRules := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.3"})))
	if n := h.g.Update(newRules); n != 1 {
		t.Errorf("Update closed %d, want 1", n)
	}
	// At once again: the revoked session may still be winding down, but it
	// was closed already and must not be counted twice.
	if n := h.g.Update(newRules); n != 0 {
		t.Errorf("repeated Update closed %d, want 0", n)
	}
	expectClosed(t, c2)
	e := h.log.waitFor(t, "closed", from(c2))
	if e.str("reason") != "revoked" {
		t.Errorf("closed line for the removed source = %v, want reason revoked", e)
	}

	// The one still allowed carries on.
	write(t, c3, []byte("ping"))
	expect(t, u3, []byte("ping"))
	write(t, u3, []byte("pong"))
	expect(t, c3, []byte("pong"))
	if n := h.g.Live(); n != 1 {
		t.Errorf("Live() = %d, want 1", n)
	}
	if n := h.g.Update(newRules); n != 0 {
		t.Errorf("second Update closed %d, want 0", n)
	}
	// And the new rules apply to new connections at once.
	c := dialFrom(t, "127.0.0.2", h.addr)
	expectSilentClose(t, c, false)
	if e := h.log.waitFor(t, "denied", from(c)); e.str("reason") != "source_not_allowed" {
		t.Errorf("after Update: reason %q, want source_not_allowed", e.str("reason"))
	}
}

// TestShutdownDrains runs alone: it checks goroutines, which parallel tests
// would disturb.
func TestShutdownDrains(t *testing.T) {
	up := newUpstream(t, "127.0.0.1:0")
	before := goleak.IgnoreCurrent()
	const drain = 400 * time.Millisecond
	s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"})))
	s.DrainTimeout = drain
	// Hold the connection's end once forwarding is done, to see that Serve
	// waits for it.
	held, release := make(chan struct{}), make(chan struct{})
	obs := newTestObs()
	obs.onMoved = func() { close(held); <-release }
	h := startGate(t, up.addr(), s, withObserver(obs))
	c, u := admit(t, h, up, "127.0.0.2", "a@h")

	served := make(chan error, 1)
	var stacks []byte
	cancelled := time.Now()
	go func() {
		err := h.stop()
		buf := make([]byte, 1<<20)
		stacks = buf[:runtime.Stack(buf, true)]
		served <- err
	}()

	// The listener closes at once...
	waitUntil(t, "the listener to close", func() bool {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
		c, err := d.Dial("tcp", h.addr)
		if err == nil {
			_ = c.Close()
			return false
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	// ...while the live connection still works...
	write(t, c, []byte("ping"))
	expect(t, u, []byte("ping"))
	write(t, u, []byte("pong"))
	expect(t, c, []byte("pong"))
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) with a live connection before the drain timeout", err)
	default:
	}
	// ...until the drain timeout.
	expectClosed(t, c)
	if took := time.Since(cancelled); took < drain {
		t.Errorf("live connection closed %v after shutdown began, before the %v drain timeout", took, drain)
	}
	<-held
	select {
	case <-served:
		t.Fatal("Serve returned while a connection's goroutine was still running")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-served; err != nil {
		t.Errorf("Serve returned %v, want nil", err)
	}
	// Nothing of the gate's, nor of its own forwarder, may still run.
	for _, f := range []string{"distgate/forward.", "proxy.readFrame(", "proxy.(*Gate)."} {
		if bytes.Contains(stacks, []byte(f)) {
			t.Errorf("Serve returned while a goroutine was still in %s:\n%s", f, stacks)
		}
	}
	if len(h.log.all(t, "closed", from(c))) != 1 {
		t.Errorf("no closed line when Serve returned")
	}
	e := h.log.waitFor(t, "closed", from(c))
	if e.str("reason") != "shutdown" || e.num("bytes_in") != hsIn(t, "a@h")+4 || e.num("bytes_out") != hsOut(t)+4 {
		t.Errorf("closed line = %v, want reason shutdown and the bytes moved", e)
	}
	if v := h.obs.view(); v.active != 0 {
		t.Errorf("Active ended at %d, want 0", v.active)
	}
	goleak.VerifyNone(t, before)
}

// TestDenialSampling: a flood from one source writes five denial lines per
// period and one summary with the rest.
func TestDenialSampling(t *testing.T) {
	t.Parallel()
	const period = 1500 * time.Millisecond
	up := newUpstream(t, "127.0.0.1:0")
	start := time.Now()
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))),
		withSummaryEvery(period))
	for range 50 {
		c := dialFrom(t, "127.0.0.3", h.addr)
		expectSilentClose(t, c, false)
		_ = c.Close()
	}
	waitUntil(t, "50 decisions", func() bool { return h.obs.view().decided[policy.SourceNotAllowed] == 50 })
	if took := time.Since(start); took >= period {
		t.Fatalf("50 denials took %v, longer than the %v summary period this test relies on", took, period)
	}
	sum := h.log.waitFor(t, "denials suppressed", nil) // written by the ticker, not at shutdown
	if n := len(h.log.all(t, "denied", nil)); n != 5 {
		t.Errorf("%d denied lines, want 5", n)
	}
	if sum.num("suppressed") != 45 || sum.num("sources") != 1 || sum.str("gate") != "test" {
		t.Errorf("summary = %v, want suppressed 45, sources 1", sum)
	}
	v := h.obs.view()
	if v.suppressed != 45 || v.total() != 50 || v.active != 0 || v.in != 0 || v.out != 0 {
		t.Errorf("observer saw %+v, want 50 denials, 45 suppressed, nothing moved", v)
	}
	if n := up.accepts.Load(); n != 0 {
		t.Errorf("upstream accepted %d, want 0", n)
	}
	// A new period logs again.
	c := dialFrom(t, "127.0.0.3", h.addr)
	expectSilentClose(t, c, false)
	h.log.waitFor(t, "denied", from(c))
}

func TestIPv6(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "[::1]:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"::1/128"}))),
		withListen("[::1]:0"))
	c, u := admit(t, h, up, "::1", "a@::1")
	pass(t, u, c, []byte("pong"))
	e := h.log.waitFor(t, "admitted", from(c))
	if !strings.HasPrefix(e.str("remote"), "[::1]:") || e.str("node") != "a@::1" {
		t.Errorf("admitted line = %v, want remote [::1]:port", e)
	}
}

// TestOldTagAdmitted: a legacy 'n' message with the OTP 25 low-word flags
// passes otp25 and is logged with tag n and 4 flag bytes.
func TestOldTagAdmitted(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))
	m, err := wire.Append(nil, wire.Handshake{Tag: wire.TagOld, Version: 5,
		Flags: wire.DefaultHiddenFlags & 0xffffffff, Name: []byte("old@h")})
	if err != nil {
		t.Fatal(err)
	}
	c := dialFrom(t, "127.0.0.2", h.addr)
	write(t, c, m)
	expect(t, up.next(t), m)
	e := h.log.waitFor(t, "admitted", from(c))
	if e.str("tag") != "n" || e.str("flags") != "07df7fbc" || e.str("node") != "old@h" {
		t.Errorf("admitted line = %v, want tag n, flags 07df7fbc", e)
	}
}

// TestShutdownCutsUndecided: at the end of the drain, connections still
// being decided are cut with reason shutdown, whatever they are waiting for
// and however long their own timeouts are: Serve returns within the drain
// timeout plus a second. Reading the first message and dialling are
// denials; in the handshake watch the connection was admitted already, so
// it gets a handshake line (aborted) and a closed line.
func TestShutdownCutsUndecided(t *testing.T) {
	const long = 20 * time.Second
	for _, stage := range []string{"first message", "dial", "watch"} {
		t.Run(stage, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, "127.0.0.1:0")
			s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2", "127.0.0.3"})))
			s.HandshakeTimeout, s.DialTimeout, s.SetupTimeout = long, long, long+time.Second
			s.DrainTimeout = 0
			var opts []gateOpt
			dialling := make(chan struct{}, 1)
			if stage == "dial" {
				opts = append(opts, withDial(func(ctx context.Context, addr string) (net.Conn, error) {
					dialling <- struct{}{}
					<-ctx.Done() // a dial that hangs until it is given up
					return nil, ctx.Err()
				}))
			}
			h := startGate(t, up.addr(), s, opts...)
			c := dialFrom(t, "127.0.0.2", h.addr)
			switch stage {
			case "first message":
				write(t, c, []byte{0})
				waitUntil(t, "the client to be accepted", func() bool { return h.g.conns.Total() == 1 })
			case "dial":
				write(t, c, hello(t, "b@h"))
				<-dialling
			case "watch":
				write(t, c, hello(t, "b@h"))
				expect(t, up.next(t), hello(t, "b@h")) // the node says nothing back
			}

			start := time.Now()
			if err := h.stop(); err != nil {
				t.Errorf("Serve: %v", err)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("Serve returned %v after its context ended, with a 0s drain timeout", took)
			}
			expectClosed(t, c)
			if stage == "watch" {
				if e := h.log.waitFor(t, "handshake", from(c)); e.str("outcome") != "aborted" || e.str("reason") != "shutdown" {
					t.Errorf("handshake line = %v, want outcome aborted, reason shutdown", e)
				}
				if e := h.log.waitFor(t, "closed", from(c)); e.str("reason") != "shutdown" || e.str("outcome") != "aborted" {
					t.Errorf("closed line = %v, want reason shutdown, outcome aborted", e)
				}
				if v := h.obs.view(); v.closed["shutdown"] != 1 || v.outcomes[wire.OutcomeAborted] != 1 {
					t.Errorf("observer: closed %v, outcomes %v", v.closed, v.outcomes)
				}
				return
			}
			e := h.log.waitFor(t, "denied", from(c))
			if e.str("reason") != "shutdown" || e.has("error") {
				t.Errorf("denied line = %v, want reason shutdown and no error", e)
			}
			if n := len(h.log.all(t, "admitted", nil)); n != 0 {
				t.Errorf("%d admitted lines, want none", n)
			}
		})
	}
}
