package testenv

import (
	"io"
	"net"
	"testing"
	"time"
)

// Dialer returns a dialer that binds its connections to the local address
// src ("" means any), with a 5 s timeout. Distinct 127.0.0.x sources are
// how tests tell clients apart.
func Dialer(src string) *net.Dialer {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return d
}

// Dial connects to addr from src for a test; cleanup closes the
// connection.
func Dial(t testing.TB, src, addr string) *net.TCPConn {
	t.Helper()
	c, err := Dialer(src).Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %q: %v", addr, src, err)
	}
	tc := c.(*net.TCPConn)
	t.Cleanup(func() { _ = tc.Close() })
	return tc
}

// ReadToEnd reads from c until the peer closes it or limit passes. It
// returns the bytes read, how long it took, and nil for a clean close
// (EOF).
func ReadToEnd(c net.Conn, limit time.Duration) (int64, time.Duration, error) {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	n, err := io.Copy(io.Discard, c)
	return n, time.Since(start), err
}
