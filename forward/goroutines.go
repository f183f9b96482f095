package forward

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// progressStep is how many bytes a copy moves between two updates of its
// Progress count.
const progressStep = 1 << 20

// closeWriter is how a finished direction is half-closed.
type closeWriter interface{ CloseWrite() error }

var _ closeWriter = (*net.TCPConn)(nil)

// Goroutines forwards each pair with two goroutines and io.Copy between the
// raw connections (splice on Linux). It is the simplest correct Forwarder:
// the reference the event loop is tested against, and a fallback.
type Goroutines struct {
	wg sync.WaitGroup
	mu sync.Mutex
	hs map[*goHandle]struct{}
}

// Path implements Forwarder.
func (*Goroutines) Path() string { return "user" }

// Start implements Forwarder.
func (g *Goroutines) Start(p Pair, done func(Result)) (Handle, error) {
	h := &goHandle{p: p}
	g.mu.Lock()
	if g.hs == nil {
		g.hs = make(map[*goHandle]struct{})
	}
	g.hs[h] = struct{}{}
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		r := h.run()
		g.mu.Lock()
		delete(g.hs, h)
		g.mu.Unlock()
		done(r)
	}()
	return h, nil
}

// Close implements Forwarder.
func (g *Goroutines) Close() error {
	g.mu.Lock()
	for h := range g.hs {
		h.Stop()
	}
	g.mu.Unlock()
	g.wg.Wait()
	return nil
}

type goHandle struct {
	p       Pair
	in, out atomic.Int64
	stopped atomic.Bool
}

// Stop ends both copies where they are with a deadline in the past; run
// then closes the conns the way Handle.Stop says (closeDrained). A copy
// cut in the middle of a splice counts only what reached its
// destination.
func (h *goHandle) Stop() {
	if h.stopped.CompareAndSwap(false, true) {
		now := time.Now()
		_ = h.p.Client.SetDeadline(now)
		_ = h.p.Upstream.SetDeadline(now)
	}
}

func (h *goHandle) Progress() (int64, int64) { return h.in.Load(), h.out.Load() }

func (h *goHandle) run() Result {
	errc := make(chan error, 1)
	go func() { errc <- copyHalf(h.p.Upstream, h.p.Client, h.p.ToUpstream, &h.in, &h.stopped) }()
	err := copyHalf(h.p.Client, h.p.Upstream, h.p.ToClient, &h.out, &h.stopped)
	if err2 := <-errc; err == nil {
		err = err2
	}
	if h.stopped.Load() {
		err = nil // the copies failed because Stop cut them
		closeDrained(h.p.Client, h.p.Upstream)
	} else {
		_ = h.p.Client.Close()
		_ = h.p.Upstream.Close()
	}
	return Result{In: h.in.Load(), Out: h.out.Load(), Err: err}
}

// copyHalf writes early, then copies src to dst. On EOF it half-closes dst so
// the peer sees the FIN and the other direction carries on; on an error it
// closes both so the other direction ends too, unless the pair was stopped
// (then the error is Stop's deadline, and run closes them). It is a named
// function so goroutine dumps say what it is.
func copyHalf(dst, src *net.TCPConn, early []byte, n *atomic.Int64, stopped *atomic.Bool) error {
	fail := func(err error) error {
		if !stopped.Load() || !errors.Is(err, os.ErrDeadlineExceeded) {
			_ = dst.Close()
			_ = src.Close()
		}
		return err
	}
	if len(early) > 0 {
		w, err := dst.Write(early)
		n.Add(int64(w))
		if err != nil {
			return fail(err)
		}
	}
	var err error
	for err == nil {
		// In steps, so Progress moves during a long transfer; each step
		// still splices (TCPConn.ReadFrom takes an io.LimitedReader).
		var c int64
		c, err = io.CopyN(dst, src, progressStep)
		n.Add(c)
	}
	if err == io.EOF {
		if err = dst.CloseWrite(); err == nil {
			return nil
		}
	}
	return fail(err)
}

// closeDrained closes stopped conns without losing what was written to
// them (Handle.Stop): it shuts down their sending sides, waits until the
// peers have acknowledged everything (at most StopDrain), then closes.
func closeDrained(cs ...*net.TCPConn) {
	for _, c := range cs {
		_ = c.CloseWrite()
	}
	deadline := time.Now().Add(StopDrain)
	for step := drainFirst; time.Now().Before(deadline); step = min(2*step, drainMax) {
		all := true
		for _, c := range cs {
			all = all && sendQueueEmpty(c)
		}
		if all {
			break
		}
		time.Sleep(step) // polling the send queues: nothing to wait on
	}
	for _, c := range cs {
		_ = c.Close()
	}
}
