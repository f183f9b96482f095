package kernel

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/distgate/distgate/forward"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(unprivilegedChild())
	}
	goleak.VerifyTestMain(m)
}

// newKernel returns a Kernel with Goroutines as the fallback, closed at
// cleanup. Without CAP_BPF and CAP_NET_ADMIN the test is skipped.
func newKernel(t *testing.T, opts Options) (*Kernel, *forward.Goroutines) {
	t.Helper()
	if opts.SelfTestTimeout == 0 {
		opts.SelfTestTimeout = -1 // TestSelfTest runs it
	}
	fb := &forward.Goroutines{}
	k, err := New(fb, opts)
	if errors.Is(err, ErrPermission) {
		t.Skipf("kernel path not available here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.Close(); err != nil {
			t.Error(err)
		}
		_ = fb.Close()
	})
	return k, fb
}

// world is a client and a node on loopback with the forwarder's two
// sockets between them: client ↔ c, u ↔ node.
type world struct {
	*selfTestPair
	res chan forward.Result
	h   forward.Handle
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	st, err := newSelfTestPair(ln, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	w := &world{selfTestPair: st, res: make(chan forward.Result, 1)}
	t.Cleanup(func() {
		_ = st.client.Close()
		_ = st.node.Close()
	})
	return w
}

// start hands the pair to f.
func (w *world) start(t *testing.T, f forward.Forwarder, toUp, toCl []byte) forward.Handle {
	t.Helper()
	h, err := f.Start(forward.Pair{Client: w.c, Upstream: w.u, ToUpstream: toUp, ToClient: toCl},
		func(r forward.Result) { w.res <- r })
	w.c, w.u = nil, nil
	if err != nil {
		t.Fatal(err)
	}
	w.h = h
	return h
}

// result waits for done.
func (w *world) result(t *testing.T) forward.Result {
	t.Helper()
	select {
	case r := <-w.res:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("done was not called")
	}
	return forward.Result{}
}

func pathOf(h forward.Handle) string { return h.(*Handle).Path() }

// pattern is n reproducible pseudo-random bytes.
func pattern(seed uint64, n int64) io.Reader {
	return io.LimitReader(&chachaReader{r: rand.NewChaCha8(chachaSeed(seed))}, n)
}

func patternBytes(seed uint64, n int64) []byte {
	b, _ := io.ReadAll(pattern(seed, n))
	return b
}

func sum(r io.Reader) ([32]byte, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s, n, err
}

// send writes r to c in 64 KiB chunks, then half-closes if closeWrite.
func send(c *net.TCPConn, r io.Reader, closeWrite bool) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if closeWrite {
		return c.CloseWrite()
	}
	return nil
}

// expectStream reads c to EOF and compares it with want's bytes.
func expectStream(c *net.TCPConn, want io.Reader) error {
	ws, wn, err := sum(want)
	if err != nil {
		return err
	}
	gs, gn, err := sum(c)
	if err != nil {
		return fmt.Errorf("read after %d bytes: %w", gn, err)
	}
	if gn != wn || !bytes.Equal(gs[:], ws[:]) {
		return fmt.Errorf("got %d bytes (sha256 %x), want %d (%x)", gn, gs[:4], wn, ws[:4])
	}
	return nil
}

// waitFor polls cond until it holds, failing the test after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

const tcpCloseWait = 8 // include/net/tcp_states.h

func tcpState(fd int) uint8 {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0
	}
	return ti.State
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func rssKiB(t *testing.T) int64 {
	t.Helper()
	runtime.GC()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	var size, rss int64
	if _, err := fmt.Sscan(string(b), &size, &rss); err != nil {
		t.Fatal(err)
	}
	return rss * int64(os.Getpagesize()) / 1024
}

// heapBytes is the Go heap in use after a collection.
func heapBytes() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// pairOf is the pair behind a handle in the kernel; only its immutable
// fields (cookies) may be read outside the loop.
func pairOf(h forward.Handle) *pair {
	kh := h.(*Handle)
	kh.mu.Lock()
	defer kh.mu.Unlock()
	return kh.p
}
