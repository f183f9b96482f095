package proxy

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/wire"
)

// The handshake watch against a fake node played by the test: every
// outcome, as the two ends, the log and the Observer see it.

// expectEnd asserts that c ends (FIN or RST) with no more bytes.
func expectEnd(t *testing.T, c *net.TCPConn, who string) {
	t.Helper()
	got, err := readToEnd(t, c)
	if len(got) != 0 || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("%s: %d more bytes (% x) then %v, want the end and nothing more", who, len(got), got[:min(len(got), 32)], err)
	}
}

func TestWatchOutcomes(t *testing.T) {
	tooLong := []byte{0x04, 0x01} // a 1025-byte frame: over the cap as soon as its header is in
	for _, tc := range []struct {
		name    string
		cookie  string // the gate's; "" for none
		play    func(t *testing.T, c, u *net.TCPConn)
		outcome string
		status  string
		errPart string // in the handshake line's error
	}{
		{name: "ok", outcome: "ok", play: func(t *testing.T, c, u *net.TCPConn) {
			handshake(t, c, u, testCookie)
			pass(t, c, u, []byte("data after the handshake"))
		}},
		{name: "ok, cookie checked at the gate", cookie: testCookie, outcome: "ok", play: func(t *testing.T, c, u *net.TCPConn) {
			handshake(t, c, u, testCookie)
			pass(t, u, c, []byte("data after the handshake"))
		}},
		{name: "wrong cookie, judged by the node", outcome: "auth_failed", errPart: "node closed", play: func(t *testing.T, c, u *net.TCPConn) {
			pass(t, u, c, append(statusFrame(t, wire.StatusOK), challengeFrame(t)...))
			pass(t, c, u, replyFrame(t, "wrong"))
			_ = u.Close() // what a node does with a wrong digest (§11.3)
			expectEnd(t, c, "client")
		}},
		{name: "wrong cookie, cut at the gate", cookie: testCookie, outcome: "auth_failed", errPart: "digest", play: func(t *testing.T, c, u *net.TCPConn) {
			pass(t, u, c, append(statusFrame(t, wire.StatusOK), challengeFrame(t)...))
			write(t, c, replyFrame(t, "wrong"))
			expectEnd(t, u, "node") // the node never sees the 'r' (§11.4)
			expectEnd(t, c, "client")
		}},
		{name: "not_allowed", outcome: "refused", status: "not_allowed", play: func(t *testing.T, c, u *net.TCPConn) {
			write(t, u, statusFrame(t, wire.StatusNotAllowed))
			expect(t, c, statusFrame(t, wire.StatusNotAllowed)) // the client is told
			expectEnd(t, c, "client")
			expectEnd(t, u, "node")
		}},
		{name: "nok", outcome: "refused", status: "nok", play: func(t *testing.T, c, u *net.TCPConn) {
			pass(t, u, c, statusFrame(t, wire.StatusNOK))
			expectEnd(t, c, "client")
			expectEnd(t, u, "node")
		}},
		{name: "alive, then true", outcome: "ok", play: func(t *testing.T, c, u *net.TCPConn) {
			pass(t, u, c, statusFrame(t, wire.StatusAlive))
			pass(t, c, u, statusFrame(t, wire.StatusTrue))
			pass(t, u, c, challengeFrame(t))
			pass(t, c, u, replyFrame(t, testCookie))
			pass(t, u, c, ackFrame(t))
		}},
		{name: "client closes before the status", outcome: "aborted", errPart: "client closed", play: func(t *testing.T, c, u *net.TCPConn) {
			_ = c.CloseWrite()
			expectEnd(t, u, "node")
		}},
		{name: "node closes after the challenge", outcome: "aborted", errPart: "node closed", play: func(t *testing.T, c, u *net.TCPConn) {
			pass(t, u, c, append(statusFrame(t, wire.StatusOK), challengeFrame(t)...))
			_ = u.Close()
			expectEnd(t, c, "client")
		}},
		{name: "client sends out of turn", outcome: "protocol_error", errPart: "out of order", play: func(t *testing.T, c, u *net.TCPConn) {
			write(t, c, replyFrame(t, testCookie)) // before the node's status
			expectEnd(t, u, "node")
			expectEnd(t, c, "client")
		}},
		{name: "node sends an unknown tag", outcome: "protocol_error", errPart: "unexpected handshake frame tag", play: func(t *testing.T, c, u *net.TCPConn) {
			write(t, u, frame2(t, []byte("zzz")))
			expectEnd(t, c, "client")
		}},
		{name: "node sends a frame over 1 KiB", outcome: "protocol_error", errPart: "over the cap", play: func(t *testing.T, c, u *net.TCPConn) {
			write(t, u, tooLong)
			expectEnd(t, c, "client")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, "127.0.0.1:0")
			s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"})))
			if tc.cookie != "" {
				s.Cookie = []byte(tc.cookie)
			}
			logs := &logBuf{}
			h := startGate(t, up.addr(), s, withLogTo(logs))
			c, u := reach(t, h, up, "127.0.0.2", "b@127.0.0.1")
			tc.play(t, c, u)
			_ = c.Close()
			_ = u.Close()

			e := logs.waitFor(t, "handshake", from(c))
			if e.str("outcome") != tc.outcome || e.str("status") != tc.status || e.str("node") != "b@127.0.0.1" || !e.has("dur") {
				t.Errorf("handshake line = %v, want outcome %q, status %q, node, dur", e, tc.outcome, tc.status)
			}
			if !strings.Contains(e.str("error"), tc.errPart) || (tc.errPart == "") != !e.has("error") {
				t.Errorf("handshake error %q, want one mentioning %q", e.str("error"), tc.errPart)
			}
			cl := logs.waitFor(t, "closed", from(c))
			wantReason := tc.outcome
			if tc.outcome == "ok" {
				wantReason = ""
			}
			if cl.str("outcome") != tc.outcome || cl.str("reason") != wantReason {
				t.Errorf("closed line = %v, want outcome %q, reason %q", cl, tc.outcome, wantReason)
			}
			if strings.Contains(logs.String(), testCookie) {
				t.Errorf("the cookie is in the log:\n%s", logs)
			}
			waitUntil(t, "the connection to end", func() bool { return h.g.Live() == 0 })
			v := h.obs.view()
			if v.total() != 1 || v.decided[policy.Admitted] != 1 {
				t.Errorf("Decided %v, want one admitted", v.decided)
			}
			var o wire.Outcome
			for k := range v.outcomes {
				o = k
			}
			if len(v.outcomes) != 1 || o.String() != tc.outcome || v.closed[wantReason] != 1 || len(v.closed) != 1 {
				t.Errorf("Handshake %v, Closed %v; want one %s", v.outcomes, v.closed, tc.outcome)
			}
		})
	}
}

// TestWatchDynamicName: a client that asks for a name is logged, from its
// handshake line on, under the name the node granted.
func TestWatchDynamicName(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))
	m, err := wire.Append(nil, wire.Handshake{Tag: wire.TagNew, Flags: wire.DefaultHiddenFlags | wire.FlagNameMe,
		Name: []byte("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	c := dialFrom(t, "127.0.0.2", h.addr)
	write(t, c, m)
	u := up.next(t)
	expect(t, u, m)
	if e := h.log.waitFor(t, "admitted", from(c)); e.str("node") != "127.0.0.1" {
		t.Errorf("admitted line = %v, want the host it sent", e)
	}
	pass(t, u, c, append(namedFrame(t, "35YWUT0LH1JPU@127.0.0.1"), challengeFrame(t)...))
	pass(t, c, u, replyFrame(t, testCookie))
	pass(t, u, c, ackFrame(t))
	// The client has the 'a' before the gate records the outcome it
	// forwarded: wait for it.
	var st Status
	waitUntil(t, "the outcome in Status", func() bool {
		st = h.g.Status()
		return len(st.Conns) == 1 && st.Conns[0].Outcome != "pending"
	})
	if len(st.Conns) != 1 || st.Conns[0].Node != "35YWUT0LH1JPU@127.0.0.1" || st.Conns[0].Outcome != "ok" {
		t.Errorf("Status conns = %+v, want the granted name, outcome ok", st.Conns)
	}
	_ = c.Close()
	_ = u.Close()
	for _, msg := range []string{"handshake", "closed"} {
		if e := h.log.waitFor(t, msg, from(c)); e.str("node") != "35YWUT0LH1JPU@127.0.0.1" || e.str("outcome") != "ok" {
			t.Errorf("%s line = %v, want the granted name and outcome ok", msg, e)
		}
	}
}

// TestWatchLeftoverPastAck: the node writes 'a' and its first data frames
// in one write, as a node does to a published peer (§11.1), while the
// client starts sending at once too: each side gets the other's bytes
// whole and in order, and the counts are exact.
func TestWatchLeftoverPastAck(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))
	c, u := reach(t, h, up, "127.0.0.2", "b@127.0.0.1")
	pass(t, u, c, append(statusFrame(t, wire.StatusOK), challengeFrame(t)...))
	pass(t, c, u, replyFrame(t, testCookie))

	// Two 4-byte-framed messages, as a node sends after 'a'.
	var early []byte
	for _, n := range []int{90, 197} {
		early = binary.BigEndian.AppendUint32(early, uint32(n))
		early = append(early, randBytes(n)...)
	}
	later := randBytes(64 << 10)
	write(t, u, append(ackFrame(t), early...))
	expect(t, c, append(ackFrame(t), early...))
	fromClient := randBytes(5000)
	write(t, c, fromClient)
	write(t, u, later)
	expect(t, c, later)
	expect(t, u, fromClient)

	_ = c.Close()
	_ = u.Close()
	e := h.log.waitFor(t, "closed", from(c))
	in := hsIn(t, "b@127.0.0.1") + int64(len(fromClient))
	out := hsOut(t) + int64(len(early)+len(later))
	if e.num("bytes_in") != in || e.num("bytes_out") != out || e.str("outcome") != "ok" {
		t.Errorf("closed line = %v, want bytes_in %d, bytes_out %d, outcome ok", e, in, out)
	}
}

// TestWatchSetupTimeout: the whole handshake, from accept, must end within
// setup_timeout: the clock does not restart after the first message.
func TestWatchSetupTimeout(t *testing.T) {
	t.Parallel()
	const setup = 600 * time.Millisecond
	const slow = 300 * time.Millisecond
	up := newUpstream(t, "127.0.0.1:0")
	s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"})))
	s.SetupTimeout = setup
	s.HandshakeTimeout = testWait
	h := startGate(t, up.addr(), s)

	start := time.Now()
	c := dialFrom(t, "127.0.0.2", h.addr)
	time.Sleep(slow) // a slow first message: well within the handshake timeout
	m := hello(t, "b@127.0.0.1")
	write(t, c, m)
	u := up.next(t)
	expect(t, u, m)
	pass(t, u, c, append(statusFrame(t, wire.StatusOK), challengeFrame(t)...))
	// The client never replies.
	expectEnd(t, c, "client")
	expectEnd(t, u, "node")
	took := time.Since(start)
	if took < setup-20*time.Millisecond || took > setup+slow {
		t.Errorf("cut %v after the dial, want about the %v setup timeout from accept", took, setup)
	}
	e := h.log.waitFor(t, "handshake", from(c))
	if e.str("outcome") != "timeout" || e.has("error") {
		t.Errorf("handshake line = %v, want outcome timeout and no error", e)
	}
	if e := h.log.waitFor(t, "closed", from(c)); e.str("reason") != "timeout" {
		t.Errorf("closed line = %v, want reason timeout", e)
	}
}

// TestWatchCookieNeverLogged: with the cookie at the gate, neither a right
// nor a wrong reply puts it (or the right digest) in any line.
func TestWatchCookieNeverLogged(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"})))
	s.Cookie = []byte(testCookie)
	h := startGate(t, up.addr(), s)
	c, u := admit(t, h, up, "127.0.0.2", "ok@127.0.0.1")
	_ = c.Close()
	_ = u.Close()
	c, u = reach(t, h, up, "127.0.0.2", "bad@127.0.0.1")
	pass(t, u, c, append(statusFrame(t, wire.StatusOK), challengeFrame(t)...))
	write(t, c, replyFrame(t, "guess"))
	expectEnd(t, c, "client")
	h.log.waitFor(t, "closed", from(c))
	d := wire.Digest([]byte(testCookie), nodeChallenge)
	for _, secret := range []string{testCookie, hex.EncodeToString(d[:])} {
		if strings.Contains(h.log.String(), secret) {
			t.Errorf("the log holds a secret:\n%s", h.log)
		}
	}
}

// TestWatchGarbage: both sides write random bytes at once after the first
// message. Whatever the watch makes of them, every connection ends with
// one handshake line and one closed line, nothing is held, and (TestMain)
// no goroutine is left.
func TestWatchGarbage(t *testing.T) {
	t.Parallel()
	const rounds = 60
	up := newUpstream(t, "127.0.0.1:0")
	s := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"})))
	s.SetupTimeout = testWait
	h := startGate(t, up.addr(), s, withLogTo(io.Discard))
	for i := range rounds {
		c, u := reach(t, h, up, "127.0.0.2", "g@h")
		a, b := randBytes(1+i*37%3000), randBytes(1+i*53%3000)
		if i%3 == 0 {
			// Well-framed but random bodies, which get past the framing.
			a, b = frame2(t, a[:min(len(a), 1024)]), frame2(t, b[:min(len(b), 1024)])
		}
		go func() { _, _ = c.Write(a) }()
		go func() { _, _ = u.Write(b) }()
		_, _ = readToEnd(t, c)
		_ = c.Close()
		_ = u.Close()
	}
	waitUntil(t, "every connection to end", func() bool {
		v := h.obs.view()
		n := 0
		for _, k := range v.outcomes {
			n += k
		}
		return n == rounds && v.active == 0 && h.g.conns.Total() == 0
	})
	if v := h.obs.view(); v.outcomes[wire.OutcomeOK] != 0 {
		t.Errorf("outcomes %v: random bytes passed for a handshake", v.outcomes)
	}
}
