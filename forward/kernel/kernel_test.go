package kernel

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/forward"
)

func TestSelfTestPasses(t *testing.T) {
	k, _ := newKernel(t, Options{})
	timeout := 5 * time.Second
	if raceEnabled {
		timeout = 30 * time.Second // hashing is slow under -race
	}
	start := time.Now()
	if err := k.SelfTest(timeout); err != nil {
		t.Fatal(err)
	}
	t.Logf("self-test took %v", time.Since(start))
	// The bulk pair may have moved to user space by backpressure on a
	// loaded machine; nothing else may have moved.
	if s := k.Stats(); s.Kernel != 2 || s.Fallback != 0 || s.TakenBack != s.Backpressure || s.Active != 0 {
		t.Errorf("stats after the self-test: %+v", s)
	}
}

// Bytes exact both ways: 64 MiB each way at once, sha256, and Result and
// Progress exact.
func TestBytesExactBothWays(t *testing.T) {
	// Both readers hash and may fall behind; a MaxQueued above the
	// transfer keeps the pair in the kernel, whose forwarding this test
	// is about. (Moving a two-way transfer to user space can stall: see
	// TestSoak.)
	k, _ := newKernel(t, Options{MaxQueued: 256 << 20})
	w := newWorld(t)
	const n = 64 << 20
	h := w.start(t, k, nil, nil)
	if p := pathOf(h); p != "kernel" {
		t.Fatalf("path %q, want kernel", p)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Go(func() { errs <- send(w.client, pattern(1, n), true) })
	wg.Go(func() { errs <- send(w.node, pattern(2, n), true) })
	wg.Go(func() { errs <- expectStream(w.node, pattern(1, n)) })
	wg.Go(func() { errs <- expectStream(w.client, pattern(2, n)) })
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	r := w.result(t)
	if r.In != n || r.Out != n || r.Err != nil {
		t.Errorf("result %+v, want In=Out=%d and no error", r, n)
	}
	if in, out := h.Progress(); in != n || out != n {
		t.Errorf("progress after the end %d %d", in, out)
	}
	if p := pathOf(h); p != "kernel" {
		t.Errorf("ended on path %q (%s), stats %+v", p, h.(*Handle).moved(), k.Stats())
	}
}

// Trap 2: bytes already queued on both sockets at Start arrive after the
// pair's early bytes, once, in order; and bytes written right after.
func TestEarlyDataInOrder(t *testing.T) {
	k, _ := newKernel(t, Options{})
	w := newWorld(t)
	hsUp, hsDn := []byte("handshake-up"), []byte("handshake-down")
	queuedUp, queuedDn := patternBytes(3, 40<<10), patternBytes(4, 20<<10)
	after := patternBytes(5, 1<<20)
	if _, err := w.client.Write(queuedUp); err != nil {
		t.Fatal(err)
	}
	if _, err := w.node.Write(queuedDn); err != nil {
		t.Fatal(err)
	}
	h := w.start(t, k, hsUp, hsDn)
	if p := pathOf(h); p != "kernel" {
		t.Fatalf("path %q, want kernel", p)
	}
	errs := make(chan error, 2)
	go func() { errs <- send(w.client, bytes.NewReader(after), true) }()
	go func() {
		errs <- expectStream(w.node, io.MultiReader(bytes.NewReader(hsUp), bytes.NewReader(queuedUp), bytes.NewReader(after)))
	}()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := w.node.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := expectStream(w.client, io.MultiReader(bytes.NewReader(hsDn), bytes.NewReader(queuedDn))); err != nil {
		t.Fatal(err)
	}
	r := w.result(t)
	wantIn := int64(len(hsUp) + len(queuedUp) + len(after))
	wantOut := int64(len(hsDn) + len(queuedDn))
	if r.In != wantIn || r.Out != wantOut || r.Err != nil {
		t.Errorf("result %+v, want In=%d Out=%d", r, wantIn, wantOut)
	}
}

// Trap 10: more than EarlyLimit queued at Start stays in user space,
// with every byte in order.
func TestEarlyDataOverLimitFallsBack(t *testing.T) {
	k, _ := newKernel(t, Options{EarlyLimit: 16 << 10})
	w := newWorld(t)
	hs := []byte("hs")
	queued := patternBytes(6, 48<<10)
	if _, err := w.client.Write(queued); err != nil {
		t.Fatal(err)
	}
	h := w.start(t, k, hs, nil)
	if p := pathOf(h); p != "user" {
		t.Errorf("path %q, want user", p)
	}
	if err := w.client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := expectStream(w.node, io.MultiReader(bytes.NewReader(hs), bytes.NewReader(queued))); err != nil {
		t.Fatal(err)
	}
	_ = w.node.CloseWrite()
	r := w.result(t)
	if r.In != int64(len(hs)+len(queued)) || r.Err != nil {
		t.Errorf("result %+v", r)
	}
	if s := k.Stats(); s.Fallback != 1 || s.Kernel != 0 {
		t.Errorf("stats %+v", s)
	}
}

// Trap 5: a side that already received a FIN cannot be inserted; the
// pair runs in user space, the data and the EOF get through and the reply
// flows back.
func TestFINBeforeStartFallsBack(t *testing.T) {
	k, _ := newKernel(t, Options{})
	w := newWorld(t)
	data := patternBytes(7, 10<<10)
	if err := send(w.client, bytes.NewReader(data), true); err != nil {
		t.Fatal(err)
	}
	// The FIN must have reached the forwarder's socket before Start.
	waitFor(t, "FIN queued", func() bool {
		var st uint8
		_ = control(w.c, func(fd int) { st = tcpState(fd) })
		return st == tcpCloseWait
	})
	h := w.start(t, k, nil, nil)
	if p := pathOf(h); p != "user" {
		t.Errorf("path %q, want user", p)
	}
	if err := expectStream(w.node, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	reply := []byte("reply after EOF")
	if err := send(w.node, bytes.NewReader(reply), true); err != nil {
		t.Fatal(err)
	}
	if err := expectStream(w.client, bytes.NewReader(reply)); err != nil {
		t.Fatal(err)
	}
	r := w.result(t)
	if r.In != int64(len(data)) || r.Out != int64(len(reply)) || r.Err != nil {
		t.Errorf("result %+v", r)
	}
}

// Trap 6: a half-close is passed on only after every byte before it, and
// the other direction keeps flowing after the EOF; each way round.
func TestHalfClose(t *testing.T) {
	for _, clientFirst := range []bool{true, false} {
		name := "client first"
		if !clientFirst {
			name = "node first"
		}
		t.Run(name, func(t *testing.T) {
			// A MaxQueued above the transfer keeps the pair in the
			// kernel even if a reader falls behind.
			k, _ := newKernel(t, Options{MaxQueued: 64 << 20})
			w := newWorld(t)
			h := w.start(t, k, nil, nil)
			first, second := w.client, w.node
			if !clientFirst {
				first, second = w.node, w.client
			}
			const n = 8 << 20
			errs := make(chan error, 1)
			go func() { errs <- send(first, pattern(8, n), true) }()
			if err := expectStream(second, pattern(8, n)); err != nil {
				t.Fatal(err)
			}
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			// After the EOF: the reply, then the other half-close.
			go func() { errs <- send(second, pattern(9, n), true) }()
			if err := expectStream(first, pattern(9, n)); err != nil {
				t.Fatal(err)
			}
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			r := w.result(t)
			if r.In != n || r.Out != n || r.Err != nil {
				t.Errorf("result %+v", r)
			}
			if p := pathOf(h); p != "kernel" {
				t.Errorf("path %q", p)
			}
		})
	}
}

// Trap 7: a reset from either side is passed on as a reset.
func TestResetPassedOn(t *testing.T) {
	for _, fromClient := range []bool{true, false} {
		name := "from client"
		if !fromClient {
			name = "from node"
		}
		t.Run(name, func(t *testing.T) {
			k, _ := newKernel(t, Options{})
			w := newWorld(t)
			w.start(t, k, nil, nil)
			resetter, other := w.client, w.node
			if !fromClient {
				resetter, other = w.node, w.client
			}
			// Some traffic first, so the reset is not the first thing.
			if _, err := resetter.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 4)
			if _, err := io.ReadFull(other, b); err != nil {
				t.Fatal(err)
			}
			_ = resetter.SetLinger(0)
			_ = resetter.Close()
			_, err := other.Read(b)
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("other side read: %v, want connection reset", err)
			}
			r := w.result(t)
			if !errors.Is(r.Err, syscall.ECONNRESET) {
				t.Errorf("result error %v, want connection reset", r.Err)
			}
			if r.In != 4 && fromClient || r.Out != 4 && !fromClient {
				t.Errorf("result %+v", r)
			}
		})
	}
}

// Trap 4: Stop in the middle of a transfer loses nothing the kernel had
// already forwarded: the node receives exactly Result.In bytes, a prefix
// of what the client sent, then EOF.
func TestStopMidTransfer(t *testing.T) {
	k, _ := newKernel(t, Options{})
	w := newWorld(t)
	h := w.start(t, k, []byte("hs"), nil)
	const total = 256 << 20 // more than will pass before Stop
	go func() { _ = send(w.client, pattern(10, total), false) }()
	// Stop once some megabytes went through.
	waitFor(t, "4 MiB forwarded", func() bool {
		in, _ := h.Progress()
		return in >= 4<<20
	})
	h.Stop()
	got, err := io.ReadAll(w.node)
	if err != nil {
		t.Fatalf("node read after %d bytes: %v", len(got), err)
	}
	r := w.result(t)
	if r.Err != nil {
		t.Errorf("stop result error %v", r.Err)
	}
	if int64(len(got)) != r.In {
		t.Fatalf("node received %d bytes, Result.In %d", len(got), r.In)
	}
	want := append([]byte("hs"), patternBytes(10, int64(len(got))-2)...)
	if !bytes.Equal(got, want) {
		t.Fatal("node received bytes that are not a prefix of the client's stream")
	}
	t.Logf("stopped after %d bytes", r.In)
}

// Trap 4, both ways: Stop while both sides send and read bulk. Each end
// receives a prefix of what the other end sent, never more than Result
// counts as forwarded to it, however the pair's bytes were moving when
// Stop came (in the kernel, or moved to user space by backpressure). With
// MaxQueued small, the pair moves to user space early and each end gets
// exactly what Result counts. With the default, on 6.18, the ACKs for the
// last few MiB sometimes do not come back within DrainTimeout (the
// sockets' send queues sit unacknowledged, in retransmission backoff) and
// the close throws them away: the end is short of Result's count (seen:
// 2.8 to 3.7 MB, in about half the runs under -race). That shortfall is
// logged, not failed; it is a documented limit of the kernel path.
func TestStopMidTransferBothWays(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		exact bool
	}{{"default", Options{}, false}, {"small MaxQueued", Options{MaxQueued: 256 << 10}, true}} {
		t.Run(tc.name, func(t *testing.T) {
			k, _ := newKernel(t, tc.opts)
			w := newWorld(t)
			h := w.start(t, k, nil, nil)
			const total = 1 << 30 // more than will pass before Stop
			for i, c := range []*net.TCPConn{w.client, w.node} {
				go func() { _ = send(c, pattern(uint64(40+i), total), false) }()
			}
			type got struct {
				b   []byte
				err error
			}
			gots := [2]chan got{make(chan got, 1), make(chan got, 1)}
			for i, c := range []*net.TCPConn{w.node, w.client} {
				go func() {
					_ = c.SetReadDeadline(time.Now().Add(time.Minute))
					b, err := io.ReadAll(c)
					gots[i] <- got{b, err}
				}()
			}
			// Stop once 8 MiB went each way, or after 20 s whatever
			// went: two-way bulk can crawl on the kernel path once it
			// has moved to user space (docs: the kernel path's limits).
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if in, out := h.Progress(); in >= 8<<20 && out >= 8<<20 {
					break
				}
			}
			h.Stop()
			r := w.result(t)
			if r.Err != nil {
				t.Errorf("stop result error %v", r.Err)
			}
			for i, want := range []int64{r.In, r.Out} {
				g := <-gots[i]
				if g.err != nil && !errors.Is(g.err, syscall.ECONNRESET) {
					t.Errorf("%s read ended with %v", []string{"node", "client"}[i], g.err)
				}
				who := []string{"node", "client"}[i]
				n := int64(len(g.b))
				switch {
				case n > want:
					t.Errorf("%s received %d bytes, more than Result counts (%d)", who, n, want)
				case !bytes.Equal(g.b, patternBytes(uint64(40+i), n)):
					t.Errorf("%s received bytes that are not a prefix of the stream", who)
				case n < want && tc.exact:
					t.Errorf("%s received %d bytes, Result counts %d", who, n, want)
				case n < want:
					t.Logf("%s received %d bytes, %d short of Result's count %d (the kernel path's known stop limit)", who, n, want-n, want)
				}
			}
			t.Logf("stopped after %d and %d bytes, path %s, stats %+v", r.In, r.Out, pathOf(h), k.Stats())
		})
	}
}

// Trap 8: a stopped receiver holds the sender back, a slow one gets
// everything. On this kernel the program's redirect alone does not: a
// redirected skb is charged to neither socket, so without the pause
// (MaxQueued) a stopped node let the client push hundreds of MiB into
// kernel memory. With socket buffers fixed at 256 KiB, what the client
// can write into a stopped node is those buffers, MaxQueued, and what the
// kernel redirects before the loop reacts to the program's event.
func TestBackpressure(t *testing.T) {
	const maxQueued = 1 << 20
	k, _ := newKernel(t, Options{MaxQueued: maxQueued})
	w := newWorld(t)
	for _, c := range []*net.TCPConn{w.client, w.c, w.u, w.node} {
		if err := c.SetReadBuffer(256 << 10); err != nil {
			t.Fatal(err)
		}
		if err := c.SetWriteBuffer(256 << 10); err != nil {
			t.Fatal(err)
		}
	}
	w.start(t, k, nil, nil)
	const total = 128 << 20
	var mu sync.Mutex
	var written int64
	errs := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		r := pattern(11, total)
		for {
			n, err := io.ReadFull(r, buf)
			if n == 0 {
				break
			}
			if _, werr := w.client.Write(buf[:n]); werr != nil {
				errs <- werr
				return
			}
			mu.Lock()
			written += int64(n)
			mu.Unlock()
			if err != nil {
				break
			}
		}
		errs <- w.client.CloseWrite()
	}()
	// The node reads nothing: the client's writes must stall.
	var plateau int64
	waitFor(t, "writes stall", func() bool {
		mu.Lock()
		before := written
		mu.Unlock()
		time.Sleep(300 * time.Millisecond) // observing a plateau takes time
		mu.Lock()
		plateau = written
		mu.Unlock()
		return before == plateau && plateau > 0
	})
	// Each socket's 256 KiB is doubled by the kernel: 4 × 2 × 2 × 256 KiB
	// at most, plus MaxQueued, plus the loop's reaction time at the
	// kernel's speed (a few MiB on a loaded machine).
	bound := int64(4*2*2*256<<10 + maxQueued + 16<<20)
	t.Logf("held with a stopped reader: %.1f MiB (bound %.1f MiB), stats %+v",
		float64(plateau)/(1<<20), float64(bound)/(1<<20), k.Stats())
	if plateau > bound {
		t.Fatalf("client wrote %d bytes into a stopped reader, bound %d", plateau, bound)
	}
	if s := k.Stats(); s.Backpressure != 1 || s.TakenBack != 1 {
		t.Errorf("stats %+v, want the pair moved to user space by backpressure", s)
	}
	// Now a slow reader: 1 MiB, then a pause, to the end.
	got := &slowReader{r: w.node, chunk: 1 << 20, pause: 5 * time.Millisecond}
	gs, gn, err := sum(got)
	if err != nil {
		t.Fatal(err)
	}
	ws, _, _ := sum(pattern(11, total))
	if gn != total || gs != ws {
		t.Fatalf("slow reader got %d bytes, sha256 equal %v", gn, gs == ws)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	_ = w.node.CloseWrite()
	if r := w.result(t); r.In != total || r.Err != nil {
		t.Errorf("result %+v", r)
	}
}

// slowReader pauses after every chunk bytes.
type slowReader struct {
	r      io.Reader
	chunk  int
	pause  time.Duration
	inStep int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.inStep >= s.chunk {
		time.Sleep(s.pause)
		s.inStep = 0
	}
	n, err := s.r.Read(p[:min(len(p), s.chunk-s.inStep)])
	s.inStep += n
	return n, err
}

// Idle pairs cost no goroutine, two descriptors and little memory each.
func TestManyIdlePairs(t *testing.T) {
	k, _ := newKernel(t, Options{})
	const n = 1000
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sts := make([]*selfTestPair, 0, n)
	defer func() {
		for _, st := range sts {
			_ = st.client.Close()
			_ = st.node.Close()
		}
	}()
	for range n {
		st, err := newSelfTestPair(ln, time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		sts = append(sts, st)
	}
	fds0 := countFDs(t)
	g0 := runtime.NumGoroutine()
	res := make(chan forward.Result, n)
	for _, st := range sts {
		h, err := k.Start(forward.Pair{Client: st.c, Upstream: st.u}, func(r forward.Result) { res <- r })
		if err != nil {
			t.Fatal(err)
		}
		if p := pathOf(h); p != "kernel" {
			t.Fatalf("path %q", p)
		}
	}
	heapPairs := heapBytes()
	fds1 := countFDs(t)
	g1 := runtime.NumGoroutine()
	if fds1 > fds0 {
		// Start trades each conn's descriptor for a dup: two per pair,
		// as before. (Fewer: an earlier test's sockets closing.)
		t.Errorf("descriptors %d → %d", fds0, fds1)
	}
	if g1-g0 > 2 {
		t.Errorf("goroutines %d → %d for idle pairs", g0, g1)
	}
	// Each still works: one byte through the first and the last.
	for _, st := range []*selfTestPair{sts[0], sts[n-1]} {
		if _, err := st.client.Write([]byte{42}); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(st.node, b); err != nil || b[0] != 42 {
			t.Fatalf("byte through an idle pair: %v %v", b, err)
		}
	}
	// Close stops them all and calls every done.
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	for range n {
		<-res
	}
	// What the pairs held is what Close freed.
	perPair := float64(heapPairs-heapBytes()) / n / 1024
	t.Logf("%d idle pairs: %.2f KiB of Go heap each, 2 descriptors each, %+d goroutines", n, perPair, g1-g0)
	if perPair > 2.5 {
		t.Errorf("%.2f KiB per idle pair, want about 2", perPair)
	}
}

// Trap 9: data a running pair leaves queued with no progress is moved to
// user space by the watchdog, not lost.
func TestWatchdogTakesBackStuckData(t *testing.T) {
	var ev events
	k, _ := newKernel(t, Options{StallTimeout: 200 * time.Millisecond, Events: ev.add})
	w := newWorld(t)
	h := w.start(t, k, nil, nil)
	p := pairOf(h)
	// Behind the loop's back, make the program hold the client's data
	// in the socket's own queue: the stuck queue of the unexplained
	// stall, as far as the loop can tell.
	c := ctl{Peer: p.cookie[upstream], Mode: modeHold, Check: DefaultMaxQueued}
	if err := k.obj.ctl.Put(p.cookie[client], c); err != nil {
		t.Fatal(err)
	}
	data := patternBytes(12, 1<<20)
	errs := make(chan error, 1)
	go func() { errs <- send(w.client, bytes.NewReader(data), true) }()
	if err := expectStream(w.node, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if err := send(w.node, bytes.NewReader([]byte("reply")), true); err != nil {
		t.Fatal(err)
	}
	if err := expectStream(w.client, bytes.NewReader([]byte("reply"))); err != nil {
		t.Fatal(err)
	}
	r := w.result(t)
	if r.In != int64(len(data)) || r.Out != 5 || r.Err != nil {
		t.Errorf("result %+v", r)
	}
	if s := k.Stats(); s.Watchdog != 1 || s.TakenBack != 1 {
		t.Errorf("stats %+v, want one watchdog intervention, one take-back", s)
	}
	if got := ev.kinds(); len(got) != 1 || got[0] != EventWatchdog {
		t.Errorf("events %v, want one %s", got, EventWatchdog)
	}
	if p := pathOf(h); p != "user" {
		t.Errorf("path %q, want user", p)
	}
}

// Trap 9: redirected bytes that never reach the peer's send queue (which
// is empty) cannot be recovered; the watchdog resets both sides and says
// so.
func TestWatchdogResetsStall(t *testing.T) {
	var ev events
	k, _ := newKernel(t, Options{StallTimeout: 200 * time.Millisecond, Events: ev.add})
	w := newWorld(t)
	h := w.start(t, k, nil, nil)
	p := pairOf(h)
	if _, err := w.client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(w.node, b); err != nil {
		t.Fatal(err)
	}
	// Counted but never delivered: as if the kernel's worker lost them.
	if err := k.obj.bytes.Put(p.cookie[client], uint64(4+100)); err != nil {
		t.Fatal(err)
	}
	r := w.result(t)
	if !errors.Is(r.Err, ErrStalled) {
		t.Errorf("result error %v, want ErrStalled", r.Err)
	}
	if _, err := w.node.Read(b); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("node read %v, want a reset", err)
	}
	if _, err := w.client.Read(b); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read %v, want a reset", err)
	}
	if s := k.Stats(); s.Watchdog != 1 || s.Stalled != 1 {
		t.Errorf("stats %+v", s)
	}
	if got := ev.kinds(); len(got) != 1 || got[0] != EventStalled {
		t.Errorf("events %v, want one %s", got, EventStalled)
	}
}

// Trap 3: data the program has not taken right after the insert (none
// should be; here the hook makes some) is forwarded in user space, in
// order after everything before it, never aborted.
func TestLeftoverAfterInsertGoesToUserSpace(t *testing.T) {
	k, _ := newKernel(t, Options{})
	w := newWorld(t)
	early := []byte("hs")
	left := patternBytes(13, 32<<10)
	testHookInserted = func(p *pair) {
		c := p.ctl[client]
		c.Mode = modeHold
		if err := k.obj.ctl.Put(p.cookie[client], c); err != nil {
			t.Error(err)
		}
		if _, err := w.client.Write(left); err != nil {
			t.Error(err)
		}
		waitFor(t, "data held", func() bool { return k.obj.held(p.cookie[client]) == uint64(len(left)) })
	}
	defer func() { testHookInserted = nil }()
	h := w.start(t, k, early, nil)
	rest := patternBytes(14, 4<<20)
	errs := make(chan error, 1)
	go func() { errs <- send(w.client, bytes.NewReader(rest), true) }()
	want := io.MultiReader(bytes.NewReader(early), bytes.NewReader(left), bytes.NewReader(rest))
	if err := expectStream(w.node, want); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	_ = w.node.CloseWrite()
	r := w.result(t)
	if r.In != int64(len(early)+len(left)+len(rest)) || r.Err != nil {
		t.Errorf("result %+v", r)
	}
	if p := pathOf(h); p != "user" {
		t.Errorf("path %q, want user", p)
	}
	if s := k.Stats(); s.TakenBack != 1 {
		t.Errorf("stats %+v", s)
	}
}

// Two receivers that never read while both senders keep sending: the pair
// moves to user space, but the kernel may not close the senders' windows
// (held skbs wait uncharged behind the other direction's bytes). Either
// the senders are held back anyway, or MaxHeld ends the pair with a
// reset; kernel memory never grows with the stream.
func TestOverrunResets(t *testing.T) {
	const maxHeld = 8 << 20
	var ev events
	k, _ := newKernel(t, Options{MaxQueued: 1 << 20, MaxHeld: maxHeld, Events: ev.add})
	w := newWorld(t)
	h := w.start(t, k, nil, nil)
	var written [2]atomic.Int64
	for i, c := range []*net.TCPConn{w.client, w.node} {
		go func() {
			buf := make([]byte, 64<<10)
			for written[i].Load() < 256<<20 {
				if _, err := c.Write(buf); err != nil {
					return
				}
				written[i].Add(int64(len(buf)))
			}
		}()
	}
	select {
	case r := <-w.res:
		t.Logf("result %+v, stats %+v", r, k.Stats())
		if !errors.Is(r.Err, ErrOverrun) {
			t.Errorf("result error %v, want ErrOverrun", r.Err)
		}
		if s := k.Stats(); s.Overrun != 1 {
			t.Errorf("stats %+v, want one overrun", s)
		}
		if got := ev.kinds(); len(got) != 1 || got[0] != EventOverrun {
			t.Errorf("events %v, want one %s", got, EventOverrun)
		}
	case <-time.After(5 * time.Second):
		// Held back: what each sender got out is bounded.
		for i := range written {
			if n := written[i].Load(); n > 4*maxHeld {
				t.Errorf("sender %d wrote %d bytes into a reader that reads nothing", i, n)
			}
		}
		t.Logf("held back without an overrun: wrote %d and %d bytes", written[0].Load(), written[1].Load())
		h.Stop()
		w.result(t)
	}
}

// No byte reaches the peer twice. On 6.18 the kernel was seen to hand the
// verdict the same 64 KiB skb twice once a pair had moved to user space
// by backpressure (one-way 1 GiB, default options: 65 483 or 130 966
// bytes too many in 6 runs of 10, the program's counters over TCP's
// bytes_received by exactly that). Each run here either delivers the
// stream exactly or ends with ErrDuplicate, and then the node has read
// an exact prefix of the stream: nothing doubled, nothing out of order.
func TestNoDuplicateReachesThePeer(t *testing.T) {
	const size = 1 << 30
	var ev events
	k, _ := newKernel(t, Options{Events: ev.add})
	exact, reset := 0, 0
	for i := range 3 {
		w := newWorld(t)
		_ = w.client.SetDeadline(time.Now().Add(2 * time.Minute))
		_ = w.node.SetDeadline(time.Now().Add(2 * time.Minute))
		w.start(t, k, nil, nil)
		sent := make(chan error, 1)
		go func() { sent <- send(w.client, pattern(uint64(i), size), true) }()
		n, err := prefixOf(w.node, pattern(uint64(i), size))
		_ = w.node.CloseWrite()
		r := w.result(t)
		<-sent
		switch {
		case errors.Is(r.Err, ErrDuplicate) || errors.Is(r.Err, ErrOverrun):
			// An overrun (a loaded machine's loop falling MaxHeld
			// behind) is a reset too; what matters here is what the
			// node read before it.
			if errors.Is(r.Err, ErrDuplicate) {
				reset++
			}
			if errors.Is(err, errMismatch) {
				t.Errorf("run %d: reset, but the node read bytes that are not the stream's after %d: %v", i, n, r.Err)
			} else {
				t.Logf("run %d: reset after an exact prefix of %d bytes: %v", i, n, r.Err)
			}
		case r.Err != nil:
			t.Errorf("run %d: result %+v", i, r)
		case err != nil || n != size:
			t.Errorf("run %d: the node read %d bytes of %d: %v (result %+v)", i, n, size, err, r)
		default:
			exact++
		}
	}
	s := k.Stats()
	t.Logf("%d exact, %d reset as duplicated; stats %+v; events %v", exact, reset, s, ev.kinds())
	if s.Duplicate != uint64(reset) {
		t.Errorf("Stats.Duplicate = %d, want %d", s.Duplicate, reset)
	}
}

var errMismatch = errors.New("bytes differ from the stream")

// prefixOf reads c until EOF or an error and reports how many bytes
// matched want from its start; errMismatch if a byte differed or c gave
// more than want has.
func prefixOf(c *net.TCPConn, want io.Reader) (int64, error) {
	got := make([]byte, 256<<10)
	exp := make([]byte, 256<<10)
	var n int64
	for {
		m, rerr := c.Read(got)
		if m > 0 {
			e, _ := io.ReadFull(want, exp[:m])
			if e < m || !bytes.Equal(got[:e], exp[:e]) {
				for j := 0; j < e && got[j] == exp[j]; j++ {
					n++
				}
				return n, errMismatch
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
