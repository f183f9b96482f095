package proxy

import (
	"io"
	"net"
	"testing"

	"github.com/distgate/distgate/policy"
)

// BenchmarkAdmitPath measures a whole admitted connection: accept, exact read,
// decision, dial, the first message written upstream, and teardown.
func BenchmarkAdmitPath(b *testing.B) {
	up := newUpstream(b, "127.0.0.1:0")
	h := startGate(b, up.addr(), settings(rules(policy.RequireOTP25, allow(b, []string{"127.0.0.2"}))), withLogTo(io.Discard))
	m := hello(b, "a@127.0.0.1")
	got := make([]byte, len(m))
	for b.Loop() {
		c := benchDial(b, "127.0.0.2", h.addr)
		if _, err := c.Write(m); err != nil {
			b.Fatal(err)
		}
		u := <-up.conns
		if _, err := io.ReadFull(u, got); err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
		_ = u.Close()
	}
	b.StopTimer()
	waitUntil(b, "every session to end", func() bool { return h.g.Live() == 0 })
}

// BenchmarkDeny measures a connection denied by source: one accept, one
// close, one sampled log decision.
func BenchmarkDeny(b *testing.B) {
	up := newUpstream(b, "127.0.0.1:0")
	h := startGate(b, up.addr(), settings(rules(policy.RequireOTP25, allow(b, []string{"127.0.0.2"}))), withLogTo(io.Discard))
	var buf [1]byte
	for b.Loop() {
		c := benchDial(b, "127.0.0.3", h.addr)
		if n, err := c.Read(buf[:]); n != 0 || err != io.EOF {
			b.Fatalf("denied client read %d, %v", n, err)
		}
		_ = c.Close()
	}
}

// benchDial is dialFrom without a cleanup per connection.
func benchDial(b *testing.B, src, addr string) *net.TCPConn {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: testWait}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	return c.(*net.TCPConn)
}
