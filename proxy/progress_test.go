package proxy

import (
	"testing"
	"time"

	"github.com/distgate/distgate/policy"
)

// A long-lived connection's bytes reach the Observer while it is still open,
// without any wrapper on the conns, and the totals are exact once it ends.
func TestProgressOfLiveConnection(t *testing.T) {
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.1/32"}))),
		withSummaryEvery(20*time.Millisecond))
	c, u := admit(t, h, up, "127.0.0.1", "prog@h")
	frameLen, backLen := hsIn(t, "prog@h"), hsOut(t)

	const toNode, toClient = 1 << 20, 300 << 10
	data, back := randBytes(toNode), randBytes(toClient)
	go func() { _, _ = c.Write(data) }()
	expect(t, u, data)
	go func() { _, _ = u.Write(back) }()
	expect(t, c, back)

	// Still open: the periodic report must have caught up with what moved.
	waitUntil(t, "progress while open", func() bool {
		v := h.obs.view()
		return v.in >= frameLen+toNode && v.out >= backLen+toClient
	})
	if v := h.obs.view(); v.active != 1 {
		t.Fatalf("connection should still be live, active=%d", v.active)
	}

	_ = c.Close()
	_ = u.Close()
	waitUntil(t, "connection end", func() bool { return h.obs.view().active == 0 })
	v := h.obs.view()
	if v.in != frameLen+toNode || v.out != backLen+toClient {
		t.Fatalf("totals after close: in=%d out=%d, want %d and %d", v.in, v.out, frameLen+toNode, backLen+toClient)
	}
}
