package proxy

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/distgate/distgate/policy"
)

// Broken peers: a RST from either side while bytes are in flight both ways,
// a client that vanishes in the middle of its first message. Each ends the
// connection on both legs, logs it once, gives back every slot it held, and
// leaves no goroutine behind. These tests run alone (not in parallel) so the
// goroutine check sees only their own.

// leakCheck registers, before anything else the test sets up, a cleanup that
// therefore runs after all the others: once the gate and the fake node are
// gone, no goroutine the test started may be left.
func leakCheck(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// idle waits until the gate holds nothing: no live session, no counted
// connection, no handshake slot.
func idle(t *testing.T, h *harness, hs *policy.Handshakes) {
	t.Helper()
	waitUntil(t, "the gate to let go of everything", func() bool {
		return h.g.Live() == 0 && h.g.conns.Total() == 0 && hs.InProgress() == 0
	})
}

// inFlight fills both directions with more than the socket buffers hold,
// so both directions are in the middle of forwarding when the RST comes.
func inFlight(t *testing.T, c, u *net.TCPConn) {
	t.Helper()
	big := randBytes(4 << 20)
	errc := make(chan error, 2)
	for _, w := range []*net.TCPConn{c, u} {
		go func() { _, err := w.Write(big); errc <- err }()
	}
	// Read a little of each so the copies have certainly started moving.
	for _, r := range []*net.TCPConn{c, u} {
		if _, err := io.ReadFull(r, make([]byte, 64<<10)); err != nil {
			t.Fatalf("read while both directions are busy: %v", err)
		}
	}
	t.Cleanup(func() {
		// The writers end when the RST (or the test's close) ends their conns.
		for range 2 {
			<-errc
		}
	})
}

// reset closes c with a RST (SO_LINGER 0).
func reset(t *testing.T, c *net.TCPConn) {
	t.Helper()
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// drainEnd reads c until it ends and fails unless it ends with a FIN or a
// RST (bytes already in flight may still arrive first).
func drainEnd(t *testing.T, c *net.TCPConn, who string) {
	t.Helper()
	_, err := io.Copy(io.Discard, c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Errorf("%s: read ended with %v, want EOF or ECONNRESET", who, err)
	}
	_ = c.Close()
}

// TestResetMidTransfer resets one leg while both directions are busy, and
// while only the resetting side's direction is: then the other copy sits
// in a read from a healthy peer and only the gate closing it ends it.
func TestResetMidTransfer(t *testing.T) {
	for _, tc := range []struct {
		side string
		busy bool
	}{{"client", true}, {"upstream", true}, {"client", false}, {"upstream", false}} {
		name := tc.side + " reset, both directions busy"
		if !tc.busy {
			name = tc.side + " reset, other direction idle"
		}
		side := tc.side
		t.Run(name, func(t *testing.T) {
			leakCheck(t)
			up := newUpstream(t, "127.0.0.1:0")
			hs := policy.NewHandshakes(8)
			h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))),
				withHandshakes(hs))
			c, u := admit(t, h, up, "127.0.0.2", "a@h")
			if tc.busy {
				inFlight(t, c, u)
			} else if side == "client" {
				write(t, c, randBytes(100<<10))
			} else {
				write(t, u, randBytes(100<<10))
			}
			remote := c.LocalAddr().String()

			if side == "client" {
				reset(t, c)
				drainEnd(t, u, "upstream")
			} else {
				reset(t, u)
				drainEnd(t, c, "client")
			}
			e := h.log.waitFor(t, "closed", func(e entry) bool { return e.str("remote") == remote })
			if e.str("reason") != "" || e.num("bytes_in") < int64(len(hello(t, "a@h"))) {
				t.Errorf("closed line = %v, want no reason and the bytes moved", e)
			}
			idle(t, h, hs)
			if err := h.stop(); err != nil {
				t.Errorf("Serve: %v", err)
			}
			if n := len(h.log.all(t, "closed", nil)); n != 1 {
				t.Errorf("%d closed lines, want 1", n)
			}
			if v := h.obs.view(); v.active != 0 || v.decided[policy.Admitted] != 1 {
				t.Errorf("observer: %+v, want one admission and nothing active", v)
			}
		})
	}
}

func TestVanishMidHandshake(t *testing.T) {
	leakCheck(t)
	up := newUpstream(t, "127.0.0.1:0")
	hs := policy.NewHandshakes(8)
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2", "127.0.0.3"}))),
		withHandshakes(hs))
	m := hello(t, "a@h")
	for _, cut := range []int{0, 1, 2, 5, len(m) - 1} {
		c := dialFrom(t, "127.0.0.2", h.addr)
		write(t, c, m[:cut])
		if cut == 0 {
			// Nothing sent: make sure the gate has it in its handshake.
			waitUntil(t, "the handshake slot to be taken", func() bool { return hs.InProgress() == 1 })
		}
		remote := c.LocalAddr().String()
		reset(t, c)
		e := h.log.waitFor(t, "denied", func(e entry) bool { return e.str("remote") == remote })
		if e.str("reason") != "bad_handshake" {
			t.Errorf("cut after %d bytes: %v, want reason bad_handshake", cut, e)
		}
		idle(t, h, hs)
	}
	// The same with a FIN instead of a RST, after part of the message
	// (from another source: denial lines are sampled at 5 per source).
	c := dialFrom(t, "127.0.0.3", h.addr)
	write(t, c, m[:7])
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectSilentClose(t, c, false)
	if e := h.log.waitFor(t, "denied", from(c)); e.str("reason") != "bad_handshake" {
		t.Errorf("half a message then FIN: %v, want reason bad_handshake", e)
	}
	idle(t, h, hs)
	if err := h.stop(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if n := up.accepts.Load(); n != 0 {
		t.Errorf("the node got %d connections, want none", n)
	}
}
