package tlshello

import "testing"

// FuzzParse checks the invariants a gate relies on, for any bytes: Need and
// Parse agree; nothing over MaxSize is accepted or asked for; a Scanner fed
// exactly what it asks for reaches the same verdict as Need on the whole,
// and never asks for a byte past an accepted hello; the server name is
// visible ASCII.
func FuzzParse(f *testing.F) {
	f.Add(otp25Hello)
	f.Add(refragment(f, otp25Hello, 7))
	f.Add(refragment(f, otp25Hello, 1))
	f.Add(goHello(f, "gate.lab", 0))
	f.Add(record(clientHello(nil)))
	f.Add(record(clientHello(ext(extServerName, sni("127.0.0.1")))))
	f.Add([]byte("\x00\x15n\x00\x07\x00\x03\x49\x9cAAAAAA@AAAAAAA"))
	f.Add([]byte{})
	f.Add([]byte{0x16, 3, 1, 0x40, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		need, nerr := Need(b)
		h, err := Parse(b)
		if err == nil {
			if nerr != nil || need != 0 {
				t.Fatalf("Parse accepted what Need calls %d, %v", need, nerr)
			}
			if len(b) > MaxSize || h.Len != len(b) || b[0] != recordHandshake {
				t.Fatalf("accepted %d bytes (Len %d, first %#x)", len(b), h.Len, b[0])
			}
			for _, c := range []byte(h.ServerName) {
				if c <= 0x20 || c >= 0x7f {
					t.Fatalf("server name %q is not visible ASCII", h.ServerName)
				}
			}
		}
		if nerr == nil && need > 0 && len(b)+need > MaxSize {
			t.Fatalf("Need asks for %d more after %d bytes, over the cap", need, len(b))
		}
		// A reader that reads exactly what a Scanner asks for, from a
		// socket holding b: the same verdict as Need on the prefix it
		// stops at, and never a byte past an accepted hello.
		var s Scanner
		got, done := 0, false
		for {
			n, serr := s.Need(b[:got])
			fresh, ferr := Need(b[:got])
			if n != fresh || (serr == nil) != (ferr == nil) {
				t.Fatalf("after %d bytes: Scanner says %d, %v; Need says %d, %v", got, n, serr, fresh, ferr)
			}
			if serr != nil || n == 0 {
				done = serr == nil
				break
			}
			if got+n > len(b) {
				break // the socket has no more
			}
			got += n
		}
		if err == nil && (!done || got != len(b)) {
			t.Fatalf("the reader stopped at %d (complete %v) of an accepted %d-byte hello", got, done, len(b))
		}
	})
}
