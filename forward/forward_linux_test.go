package forward

import (
	"bufio"
	"crypto/sha256"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rss returns the process's resident set size in bytes.
func rss(t testing.TB) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// settledRSS is rss after the garbage collector has given back what it can.
func settledRSS(t testing.TB) int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return rss(t)
}

// fds counts the process's open sockets and pipes.
func fds(t testing.TB) (sockets, pipes int) {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		switch {
		case strings.HasPrefix(l, "socket:"):
			sockets++
		case strings.HasPrefix(l, "pipe:"):
			pipes++
		}
	}
	return sockets, pipes
}

// TestSlowReader: an upstream that reads slowly holds the sender back
// (TCP's window), it does not make the forwarder buffer the transfer.
func TestSlowReader(t *testing.T) {
	const size = 64 << 20
	each(t, func(t *testing.T, f Forwarder) {
		ch := newChain(t, newListener(t))
		r := start(t, f, ch.pair)
		base := rss(t)
		sent := make(chan streamed, 1)
		go func() {
			s, n, err := stream(ch.client, 40, size)
			if err == nil {
				err = ch.client.CloseWrite()
			}
			sent <- streamed{s, n, err}
		}()
		h := sha256.New()
		buf := make([]byte, 256<<10)
		var n int64
		peak := base
		_ = ch.upstream.SetReadDeadline(time.Now().Add(waitTimeout))
		for i := 0; ; i++ {
			m, err := ch.upstream.Read(buf)
			h.Write(buf[:m])
			n += int64(m)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if i%16 == 0 {
				peak = max(peak, rss(t))
			}
			// Read about 256 MB/s at most: slower than loopback forwards.
			time.Sleep(time.Millisecond)
		}
		s := <-sent
		if s.err != nil || n != size || [32]byte(h.Sum(nil)) != s.sum {
			t.Fatalf("upstream read %d bytes (%v), want the %d sent", n, s.err, size)
		}
		t.Logf("RSS %d KiB before, peak %d KiB during the transfer", base>>10, peak>>10)
		if peak-base > 16<<20 {
			t.Errorf("RSS grew by %d KiB while %d MiB went to a slow reader", (peak-base)>>10, size>>20)
		}
		// One buffer being read into, at most one waiting for the slow
		// reader: the loop never needs more for this pair.
		if u, ok := f.(*User); ok {
			var n int64
			for _, l := range u.loops {
				n += l.allocs.Load()
			}
			if n > 2 {
				t.Errorf("the loop made %d buffers for one transfer, want at most 2", n)
			}
		}
		_ = ch.upstream.CloseWrite()
		eof(t, ch.client, "client")
		r.wait(t)
	})
}

// TestIdlePairs: 1 000 pairs that have each moved a message and gone
// quiet hold their two sockets each in the event loop, and no goroutine.
// The reference's figures are logged for comparison.
func TestIdlePairs(t *testing.T) {
	const pairs = 1000
	each(t, func(t *testing.T, f Forwarder) {
		ln := newListener(t)
		baseG := runtime.NumGoroutine()
		baseSockets, basePipes := fds(t)
		var runs []*run
		for range pairs {
			ch := newChain(t, ln)
			runs = append(runs, start(t, f, ch.pair))
			write(t, ch.client, []byte("ping"))
			expect(t, ch.upstream, []byte("ping"))
			write(t, ch.upstream, []byte("pong"))
			expect(t, ch.client, []byte("pong"))
		}
		// The test holds two ends of each connection, the forwarder the
		// two in between. Pipes a previous test left in Go's splice pool
		// may be closed meanwhile, so sockets and pipes are counted apart.
		sockets, pipes := fds(t)
		sockets -= baseSockets + 2*pairs
		pipes = max(pipes-basePipes, 0)
		perPair := float64(sockets+pipes) / pairs
		var extraG int
		deadline := time.Now().Add(waitTimeout)
		for {
			extraG = runtime.NumGoroutine() - baseG
			if _, ok := f.(*User); !ok || extraG <= 0 || time.Now().After(deadline) {
				break
			}
			runtime.Gosched()
		}
		t.Logf("%d idle pairs: %.1f descriptors and %.2f goroutines each", pairs, perPair, float64(extraG)/pairs)
		if _, ok := f.(*User); ok {
			// A goroutine left by an earlier test may end meanwhile.
			if sockets != 2*pairs || pipes != 0 || extraG > 0 {
				t.Errorf("%d idle pairs hold %d sockets, %d pipes and %d goroutines in all, want %d, 0 and 0", pairs, sockets, pipes, extraG, 2*pairs)
			}
		}
		for _, r := range runs {
			r.h.Stop()
			r.wait(t)
		}
	})
}
