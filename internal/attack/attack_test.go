package attack

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

// serve accepts on 127.0.0.1 and hands each connection to f.
func serve(t *testing.T, f func(*net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f(c.(*net.TCPConn))
		}
	}()
	return ln.Addr().String()
}

// A flood tells how the server ended each connection.
func TestFloodOutcomes(t *testing.T) {
	ctx := context.Background()
	one := func(i int) []byte { return []byte{byte(i)} }
	cases := []struct {
		name string
		send func(int) []byte
		srv  func(*net.TCPConn)
		want func(FloodResult) bool
	}{
		// The server reads the byte sent first: closing over unread data
		// would be a RST.
		{"FIN", one, func(c *net.TCPConn) { _, _ = c.Read(make([]byte, 1)); _ = c.Close() }, func(r FloodResult) bool { return r.Closed == r.Conns }},
		{"RST", nil, func(c *net.TCPConn) { _ = c.SetLinger(0); _ = c.Close() }, func(r FloodResult) bool { return r.Reset == r.Conns }},
		{"bytes", nil, func(c *net.TCPConn) { _, _ = c.Write([]byte("x")); _ = c.Close() }, func(r FloodResult) bool { return r.GotBytes == r.Conns }},
		{"silent", nil, func(c *net.TCPConn) { time.Sleep(2 * time.Second); _ = c.Close() }, func(r FloodResult) bool { return r.Timeouts == r.Conns }},
	}
	for _, tc := range cases {
		addr := serve(t, tc.srv)
		r := Flood(ctx, FloodConfig{Target: addr, Sources: []string{"127.0.0.2", "127.0.0.3"}, Conns: 40, Workers: 8,
			Hold: 200 * time.Millisecond, Send: tc.send})
		if r.Conns != 40 || r.DialErrs != 0 || !tc.want(r) || len(r.Held) != 40 {
			t.Errorf("%s: %+v", tc.name, r)
		}
	}
	// For bounds the flood in time.
	addr := serve(t, func(c *net.TCPConn) { _ = c.Close() })
	r := Flood(ctx, FloodConfig{Target: addr, Conns: 1 << 30, Workers: 4, For: 300 * time.Millisecond})
	if r.Elapsed > 5*time.Second || r.Conns == 0 || r.Closed != r.Conns {
		t.Errorf("a flood bounded at 300ms: %+v", r)
	}
}

func TestMedianAndPercentile(t *testing.T) {
	if m, ok := Median([]float64{5, 1, 3}); !ok || m != 3 {
		t.Errorf("median odd = %v, %v; want 3", m, ok)
	}
	if m, ok := Median([]float64{4, 1, 3, 2}); !ok || m != 2.5 {
		t.Errorf("median even = %v, %v; want 2.5", m, ok)
	}
	if _, ok := Median(nil); ok {
		t.Error("median of nothing reported ok")
	}
	ds := []time.Duration{5, 1, 4, 2, 3}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.2, 1}, {0.5, 3}, {0.99, 5}, {1, 5}} {
		if got := Percentile(ds, c.p); got != c.want {
			t.Errorf("Percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if Percentile([]int64(nil), 0.5) != 0 {
		t.Error("Percentile of nothing is not 0")
	}
}

// A stream to the fake node comes back intact, and both ends agree on its
// sha256.
func TestStream(t *testing.T) {
	f := testenv.StartFakeNode(t, "127.0.0.1:0", false)
	r := Stream(context.Background(), StreamConfig{Target: f.Addr(), Name: "s@h", Seed: 7, Max: 3<<20 + 5, Chunk: 100 << 10})
	if !r.Complete || r.Sent != 3<<20+5 || r.Echoed != r.Sent || r.Mismatch >= 0 || r.PreSent == 0 || r.PreGot == 0 {
		t.Fatalf("stream: %+v", r)
	}
	rec, ok := f.WaitDone("s@h", testenv.WaitTimeout)
	if !ok || rec.N != r.Sent || rec.Sum != r.Sum {
		t.Errorf("the fake node's record %+v, the stream's sum %x", rec, r.Sum)
	}
}
