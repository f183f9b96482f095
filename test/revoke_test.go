package test

import (
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

// patternStream is an endless reproducible stream of pseudo-random bytes.
func patternStream(seed byte) io.Reader {
	return rand.NewChaCha8([32]byte{seed, 'r', 'e', 'v'})
}

// prefixSum is the sha256 of the first n bytes of patternStream(seed).
func prefixSum(seed byte, n int64) [32]byte {
	h := sha256.New()
	_, _ = io.CopyN(h, patternStream(seed), n)
	return [32]byte(h.Sum(nil))
}

type received struct {
	n   int64
	sum [32]byte
	err error
}

// A revocation in the middle of a transfer both ways loses nothing that
// distgate had already forwarded: each end receives exactly the bytes the
// closed line counts for it, a true prefix of what the other end sent,
// then the end of the connection. (design.md, Forwarding: "nothing lost
// of what was already forwarded", on every path.)
func TestRevokeMidTransfer(t *testing.T) {
	t.Parallel()
	forEachPath(t, func(t *testing.T, path string) {
		p := testenv.AppPort(t)
		up := testenv.StartFakeNode(t, "127.0.0.2:0", true)
		f := testenv.GateFile("e2e", testenv.Addr("127.0.0.1", p), up.Addr(), testenv.Allow([]string{"127.0.0.3/32"}))
		g := startOnPath(t, f, path)

		c := testenv.Dial(t, "127.0.0.3", testenv.Addr("127.0.0.1", p))
		_ = c.SetDeadline(time.Now().Add(testenv.WaitTimeout))
		sent, got, err := testenv.Handshake(c, "mid@h")
		if err != nil {
			t.Fatalf("handshake through distgate: %v", err)
		}
		u, _ := up.Next()
		for _, conn := range []*net.TCPConn{c, u} {
			_ = conn.SetDeadline(time.Now().Add(time.Minute))
		}
		// Both ends send until the connection ends under them; each
		// reads what arrives, to the end.
		for i, w := range []*net.TCPConn{c, u} {
			go func() { _, _ = io.Copy(w, patternStream(byte(i))) }()
		}
		progress := [2]chan int64{make(chan int64, 1), make(chan int64, 1)}
		results := [2]chan received{make(chan received, 1), make(chan received, 1)}
		for i, r := range []*net.TCPConn{u, c} { // u reads the client's stream (seed 0)
			go func() {
				h := sha256.New()
				buf := make([]byte, 256<<10)
				var n int64
				var err error
				told := false
				for err == nil {
					var k int
					k, err = r.Read(buf)
					h.Write(buf[:k])
					n += int64(k)
					if !told && n >= 8<<20 {
						progress[i] <- n
						told = true
					}
				}
				results[i] <- received{n, [32]byte(h.Sum(nil)), err}
			}()
		}
		for i := range progress {
			select {
			case <-progress[i]:
			case <-time.After(testenv.WaitTimeout):
				t.Fatalf("8 MiB did not arrive each way; distgate's warnings: %v", testenv.Filter(g.Lines(), testenv.Field("level", "warn")))
			}
		}

		// The source goes out of the allow list.
		g.Reload(onPath(testenv.GateFile("e2e", testenv.Addr("127.0.0.1", p), up.Addr(), testenv.Allow([]string{"127.0.0.4/32"})), path))
		cl := g.Wait(testenv.Msg("closed"), testenv.NodeIs("mid@h"))
		if cl.Str("reason") != "revoked" {
			t.Fatalf("closed line %v, want reason revoked", cl)
		}
		closedPath(t, cl, path, true)
		want := [2]int64{int64(cl.Num("bytes_in")) - int64(sent), int64(cl.Num("bytes_out")) - int64(got)}
		for i, who := range []string{"the node", "the client"} {
			r := <-results[i]
			if r.err != nil && !errors.Is(r.err, io.EOF) && !errors.Is(r.err, syscall.ECONNRESET) {
				t.Errorf("%s: reading ended with %v, want EOF or a reset", who, r.err)
			}
			if r.n != want[i] {
				t.Errorf("%s received %d bytes after the handshake; the closed line counts %d forwarded to it", who, r.n, want[i])
			} else if r.sum != prefixSum(byte(i), r.n) {
				t.Errorf("%s received %d bytes that are not a prefix of what the other end sent", who, r.n)
			}
		}
		t.Logf("revoked on path %s after %d bytes in, %d out; closed line %v", path, want[0], want[1], cl)
	})
}
