// Package kernel is the "kernel" forwarding path: after the watch, both
// sockets of a pair go into a SOCKHASH whose stream-verdict program
// redirects each side's data to the other side's send queue, and user
// space only watches, in one epoll loop for all pairs, for half-closes,
// resets, backpressure and stalls (design.md, Forwarding;
// forwarding-facts.md has the measurements and the ten traps).
//
// Where a pair's bytes go, and what Handle.Path says:
//
//   - "kernel": the program redirects both directions.
//   - the fallback's path: pairs the kernel cannot or should not take are
//     started on the forward.Forwarder given to New, before any socket
//     joins a map (a side that already got a FIN, more than EarlyLimit
//     bytes queued at the hand-off, MaxPairs reached, an insert refused).
//   - "user": a pair the kernel took and then moved to user space for good
//     (a receiver MaxQueued behind, data the program did not take after
//     the insert, the watchdog). Its sockets cannot leave the maps without
//     risking loss (see objects), so this package's own loop copies it,
//     reading the sockets' held data with recv.
//
// Measured on this kernel beyond forwarding-facts.md: removing a socket
// from the verdict map while data arrives can drop an skb; a redirected
// skb is charged to no socket, so backpressure needs user space's help;
// and a held skb can wait, uncharged, on a psock backlog behind bytes for
// the other direction.
package kernel

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/distgate/distgate/forward"
)

// Defaults for Options' zero values.
const (
	DefaultMaxPairs        = 4096
	DefaultEarlyLimit      = 64 << 10
	DefaultStallTimeout    = 10 * time.Second
	DefaultDrainTimeout    = forward.StopDrain
	DefaultMaxQueued       = 4 << 20
	DefaultMaxHeld         = 64 << 20
	DefaultSelfTestTimeout = 5 * time.Second
)

// Options tune a Kernel. The zero value is the defaults.
type Options struct {
	// MaxPairs is how many pairs may be in the kernel at once; further
	// pairs go to the fallback. Zero means DefaultMaxPairs.
	MaxPairs int
	// EarlyLimit caps, per direction, the bytes user space forwards
	// itself before insertion (the pair's early bytes plus whatever is
	// already queued on the socket; trap 2). A direction with more stays
	// in user space: draining without a cap can deadlock (trap 10). Zero
	// means DefaultEarlyLimit.
	EarlyLimit int
	// StallTimeout is how long a pair may have data queued without any
	// progress before the watchdog moves it back to user space or closes
	// it (trap 9). Zero means DefaultStallTimeout.
	StallTimeout time.Duration
	// DrainTimeout bounds how long Stop waits for bytes already
	// redirected to reach the peer's send queue (trap 4) and for the
	// peers to acknowledge them; a receiver that reads nothing for that
	// long loses them. Zero means DefaultDrainTimeout, forward.StopDrain
	// as on the user path.
	DrainTimeout time.Duration
	// MaxQueued bounds, per direction, the bytes the program has
	// redirected that have not reached the peer's send queue yet. They
	// wait in kernel memory charged to neither socket, so the sender's
	// window does not close by itself when the receiver stops reading
	// (trap 8). A pair with MaxQueued owed (plus what the kernel moves
	// before the loop reacts to the program's event) goes to user space
	// for good, where TCP's window holds the sender back. It is also the
	// fixed receive buffer of the pair's sockets (at most 8 MiB), which
	// caps the window the senders are granted. Zero means
	// DefaultMaxQueued.
	MaxQueued int
	// MaxHeld bounds, per direction of a pair moved to user space, the
	// held bytes waiting unread in the source socket; above it the pair
	// is reset with ErrOverrun. Held bytes normally close the sender's
	// window long before, but not while the same socket's psock still
	// has bytes to send for the other direction (both receivers slow, or
	// a client that sends and never reads): then held skbs wait on that
	// backlog charged to no socket and nothing else bounds them. Zero
	// means DefaultMaxHeld.
	MaxHeld int
	// SelfTestTimeout bounds New's self-test. Zero means
	// DefaultSelfTestTimeout; negative skips the self-test.
	SelfTestTimeout time.Duration
	// Events, if set, hears of each intervention as it happens (Event):
	// what an operator should see in the log and count. It is called on
	// the loop's goroutine, so it must return at once. Nil: Stats only.
	Events func(Event)
}

// Event is an intervention on one pair: the watchdog moving it back to
// user space or resetting it, or an overrun resetting it.
type Event struct {
	// Kind is EventWatchdog, EventStalled, EventOverrun or EventDuplicate.
	Kind string
	// Err says what happened, for the log line.
	Err error
}

// The kinds of Event, a fixed set (metric label values).
const (
	// EventWatchdog: data sat queued without progress for StallTimeout
	// with nothing redirected missing; the pair was moved to user space,
	// nothing lost (Stats.Watchdog).
	EventWatchdog = "watchdog"
	// EventStalled: redirected bytes never reached the peer's send queue;
	// both sides were reset with ErrStalled (Stats.Watchdog and Stalled).
	EventStalled = "stalled"
	// EventOverrun: a pair in user space whose sender the kernel did not
	// hold back; both sides were reset with ErrOverrun (Stats.Overrun).
	EventOverrun = "overrun"
	// EventDuplicate: the kernel handed bytes to the program twice; both
	// sides were reset with ErrDuplicate (Stats.Duplicate).
	EventDuplicate = "duplicate"
)

// event reports an intervention to Options.Events.
func (k *Kernel) event(kind string, err error) {
	if k.opts.Events != nil {
		k.opts.Events(Event{Kind: kind, Err: err})
	}
}

func (o Options) withDefaults() Options {
	if o.MaxPairs <= 0 {
		o.MaxPairs = DefaultMaxPairs
	}
	if o.EarlyLimit <= 0 {
		o.EarlyLimit = DefaultEarlyLimit
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.MaxQueued <= 0 {
		o.MaxQueued = DefaultMaxQueued
	}
	if o.MaxHeld <= 0 {
		o.MaxHeld = DefaultMaxHeld
	}
	if o.SelfTestTimeout == 0 {
		o.SelfTestTimeout = DefaultSelfTestTimeout
	}
	return o
}

// Stats are a Kernel's counters since New.
type Stats struct {
	// Active is the number of pairs in the kernel now.
	Active int
	// Kernel counts pairs taken into the kernel.
	Kernel uint64
	// Fallback counts pairs handed to the fallback at Start (a FIN
	// already received, early data over EarlyLimit, MaxPairs reached, a
	// refused insert).
	Fallback uint64
	// TakenBack counts pairs moved back to user space after insertion
	// (data left unredirected after insertion, the watchdog).
	TakenBack uint64
	// Backpressure counts pairs moved to user space because MaxQueued
	// bytes were owed to a receiver that did not keep up (trap 8).
	Backpressure uint64
	// Overrun counts pairs reset with ErrOverrun.
	Overrun uint64
	// Watchdog counts the watchdog's interventions: stalled pairs it
	// moved back to user space or closed.
	Watchdog uint64
	// Stalled counts pairs closed with ErrStalled.
	Stalled uint64
	// Duplicate counts pairs reset with ErrDuplicate.
	Duplicate uint64
}

// Kernel is a forward.Forwarder on the kernel's SOCKMAP redirect. It is
// safe for concurrent use. Close it to release the BPF objects; the
// fallback is the caller's and is not closed.
type Kernel struct {
	opts     Options
	fallback forward.Forwarder
	obj      *objects
	ep       int // epoll instance for every pair's sockets
	wake     int // eventfd: commands for the loop
	ring     *ringbuf.Reader

	// gate is held shared by Start and exclusively by Close, so Close
	// never misses a pair that is being started.
	gate sync.RWMutex

	mu       sync.Mutex
	closed   bool
	nextID   uint32
	pairs    map[uint32]*pair // by id, while in the kernel
	byCookie map[uint64]*pair // by either socket's cookie
	list     []*pair          // for the watchdog's sweep
	handles  map[*Handle]bool // every pair not ended, on any path
	cmds     []command        // for the loop
	exit     bool             // the loop should return
	loopDone chan struct{}
	sweep    int // the watchdog's position in list

	waiting map[*pair]struct{} // pairs with a re-check due (loop only)

	wg sync.WaitGroup // one per pair until its done has returned

	nKernel, nFallback, nTakenBack, nBackpressure, nOverrun, nWatchdog, nStalled, nDuplicate atomic.Uint64
}

var _ forward.Forwarder = (*Kernel)(nil)

// New loads the BPF maps and program, starts the loop and, unless
// opts.SelfTestTimeout is negative, runs SelfTest. Any error means this
// process cannot use the kernel path: the caller logs it and forwards in
// user space. Errors wrap ErrPermission (missing CAP_BPF/CAP_NET_ADMIN),
// ErrSelfTest, or the kernel's own error.
func New(fallback forward.Forwarder, opts Options) (*Kernel, error) {
	if fallback == nil {
		return nil, errors.New("kernel forwarder: a fallback forwarder is required")
	}
	opts = opts.withDefaults()
	obj, err := load(opts.MaxPairs)
	if err != nil {
		return nil, fmt.Errorf("kernel forwarder: %w", err)
	}
	k := &Kernel{
		opts:     opts,
		fallback: fallback,
		obj:      obj,
		pairs:    make(map[uint32]*pair),
		byCookie: make(map[uint64]*pair),
		handles:  make(map[*Handle]bool),
		loopDone: make(chan struct{}),
	}
	if err := k.startLoop(); err != nil {
		obj.close()
		return nil, fmt.Errorf("kernel forwarder: %w", err)
	}
	if opts.SelfTestTimeout > 0 {
		if err := k.SelfTest(opts.SelfTestTimeout); err != nil {
			_ = k.Close()
			return nil, fmt.Errorf("kernel forwarder: %w", err)
		}
	}
	return k, nil
}

// Path implements forward.Forwarder: "kernel". A pair handed to the
// fallback is on the fallback's path; Handle.Path tells.
func (*Kernel) Path() string { return "kernel" }

// Stats returns the counters.
func (k *Kernel) Stats() Stats {
	k.mu.Lock()
	active := len(k.pairs)
	k.mu.Unlock()
	return Stats{
		Active:       active,
		Kernel:       k.nKernel.Load(),
		Fallback:     k.nFallback.Load(),
		TakenBack:    k.nTakenBack.Load(),
		Backpressure: k.nBackpressure.Load(),
		Overrun:      k.nOverrun.Load(),
		Watchdog:     k.nWatchdog.Load(),
		Stalled:      k.nStalled.Load(),
		Duplicate:    k.nDuplicate.Load(),
	}
}

// Start implements forward.Forwarder. The returned forward.Handle is a
// *Handle. Pairs the kernel cannot take are started on the fallback
// (Handle.Path then names the fallback's path).
func (k *Kernel) Start(p forward.Pair, done func(forward.Result)) (forward.Handle, error) {
	k.gate.RLock()
	defer k.gate.RUnlock()
	k.mu.Lock()
	closed := k.closed
	k.mu.Unlock()
	if closed {
		_ = p.Client.Close()
		_ = p.Upstream.Close()
		return nil, ErrClosed
	}
	h := &Handle{k: k, done: done, path: "kernel"}
	k.track(h)
	if err := k.start(h, p); err != nil {
		k.untrack(h)
		return nil, err
	}
	return h, nil
}

// track counts h as running until its done has returned.
func (k *Kernel) track(h *Handle) {
	k.wg.Add(1)
	k.mu.Lock()
	k.handles[h] = true
	k.mu.Unlock()
}

func (k *Kernel) untrack(h *Handle) {
	k.mu.Lock()
	delete(k.handles, h)
	k.mu.Unlock()
	k.wg.Done()
}

// start is Start for a tracked handle. An error means done will not be
// called and both connections are closed.
func (k *Kernel) start(h *Handle, p forward.Pair) error {
	// Trap 2: the kernel forwards whole skbs, so what is already queued
	// must be read now and forwarded with the early bytes, or part of it
	// would be sent twice. Trap 5: a side that already got a FIN cannot
	// be inserted. Trap 10: at most EarlyLimit per direction.
	toUp, eofC, overC, errC := drain(p.Client, p.ToUpstream, k.opts.EarlyLimit)
	toCl, eofU, overU, errU := drain(p.Upstream, p.ToClient, k.opts.EarlyLimit)
	if errC != nil || errU != nil || eofC || eofU || overC || overU {
		// Let the user-space path meet the error, the EOF or the rest
		// of the data itself, after what was read here.
		return k.fallbackAtStart(h, p.Client, p.Upstream, toUp, toCl, 0, 0)
	}
	k.mu.Lock()
	full := len(k.pairs) >= k.opts.MaxPairs
	k.mu.Unlock()
	if full {
		return k.fallbackAtStart(h, p.Client, p.Upstream, toUp, toCl, 0, 0)
	}

	// Forward the early bytes now, without blocking: what does not fit
	// at once stays in user space with the pair.
	wUp, err := writeConn(p.Upstream, toUp)
	if err != nil || wUp < len(toUp) {
		return k.fallbackAtStart(h, p.Client, p.Upstream, toUp[wUp:], toCl, int64(wUp), 0)
	}
	wCl, err := writeConn(p.Client, toCl)
	if err != nil || wCl < len(toCl) {
		return k.fallbackAtStart(h, p.Client, p.Upstream, nil, toCl[wCl:], int64(wUp), int64(wCl))
	}

	pr, err := k.newPair(h, p.Client, p.Upstream)
	if err != nil {
		// Nothing is in a map: the conns are untouched.
		return k.fallbackAtStart(h, p.Client, p.Upstream, nil, nil, int64(wUp), int64(wCl))
	}
	pr.user = [2]int64{int64(wCl), int64(wUp)}
	h.mu.Lock()
	h.p = pr
	h.mu.Unlock()

	leftover, err := k.insert(pr)
	switch {
	case err != nil && !pr.inVerdict[client]:
		// Refused before any socket joined "verdict" (EOPNOTSUPP after
		// a FIN that came in just now, a full map): nothing was
		// redirected or held, so the sockets can go to user space whole.
		k.removeUnused(pr)
		c, u, cerr := pr.conns()
		h.mu.Lock()
		h.p = nil
		h.mu.Unlock()
		if cerr != nil {
			return cerr
		}
		return k.fallbackAtStart(h, c, u, nil, nil, int64(wUp), int64(wCl))
	case err != nil || leftover:
		// Trap 3: data the program did not take, or a refusal after one
		// side was already redirecting. Never abort: the loop forwards
		// the pair in user space, after what the kernel redirected.
		k.nKernel.Add(1)
		k.register(pr)
		k.command(command{op: opTakeBack, p: pr})
		return nil
	}
	k.nKernel.Add(1)
	k.register(pr)
	return nil
}

// fallbackAtStart starts the pair on the fallback; written is what this
// package already wrote to each side, added to the fallback's counts.
func (k *Kernel) fallbackAtStart(h *Handle, c, u *net.TCPConn, toUp, toCl []byte, wroteUp, wroteCl int64) error {
	k.nFallback.Add(1)
	fp := forward.Pair{Client: c, Upstream: u, ToUpstream: toUp, ToClient: toCl}
	return h.toFallback(fp, wroteUp, wroteCl)
}

// drain appends to early what c has queued (non-blocking), up to limit.
func drain(c *net.TCPConn, early []byte, limit int) (b []byte, eof, over bool, err error) {
	if len(early) > limit {
		return early, false, true, nil
	}
	// A copy: the caller's slice must not be appended to in place.
	b = append(make([]byte, 0, len(early)+4096), early...)
	cerr := control(c, func(fd int) { b, eof, over, err = readQueued(fd, b, limit) })
	if cerr != nil {
		return b, false, false, cerr
	}
	return b, eof, over, err
}

// writeConn writes b to c without blocking.
func writeConn(c *net.TCPConn, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var err error
	if cerr := control(c, func(fd int) { n, err = writeSome(fd, b) }); cerr != nil {
		return 0, cerr
	}
	return n, err
}

// Close stops every pair still running (on either path), waits for their
// done calls, then stops the loop and releases the BPF objects. The
// fallback itself is left running.
func (k *Kernel) Close() error {
	k.gate.Lock()
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		k.gate.Unlock()
		return nil
	}
	k.closed = true
	hs := make([]*Handle, 0, len(k.handles))
	for h := range k.handles {
		hs = append(hs, h)
	}
	k.mu.Unlock()
	k.gate.Unlock()
	for _, h := range hs {
		h.Stop()
	}
	k.wg.Wait()
	k.mu.Lock()
	k.exit = true
	k.mu.Unlock()
	k.poke()
	<-k.loopDone
	_ = unix.Close(k.ep)
	_ = unix.Close(k.wake)
	_ = k.ring.Close()
	k.obj.close()
	return nil
}

// Handle is a running pair. Its methods are safe for concurrent use.
type Handle struct {
	k    *Kernel
	done func(forward.Result)

	mu    sync.Mutex
	p     *pair          // while in the kernel
	fb    forward.Handle // once on the fallback
	off   [2]int64       // In, Out moved before the fallback took over
	path  string
	why   string // see takeBack
	stop  bool
	ended bool
	res   forward.Result
}

var _ forward.Handle = (*Handle)(nil)

// Path is the path the pair is on, or ended on: "kernel"; the fallback's
// path for a pair the kernel did not take; "user" for a pair the kernel
// took and then forwarded in user space (data it did not take at once,
// the watchdog). Read it after done for the `closed` log line.
func (h *Handle) Path() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.path
}

// Stop implements forward.Handle. Bytes the program already redirected
// are given up to DrainTimeout to reach the peer's send queue and be
// acknowledged (see stopWait).
func (h *Handle) Stop() {
	h.mu.Lock()
	if h.ended || h.stop {
		h.mu.Unlock()
		return
	}
	h.stop = true
	fb, p := h.fb, h.p
	h.mu.Unlock()
	switch {
	case fb != nil:
		fb.Stop()
	case p != nil:
		h.k.command(command{op: opStop, p: p})
	}
	// Neither: the pair is between paths; the hand-over sees h.stop.
}

// Progress implements forward.Handle, from the program's byte counters
// while the pair is in the kernel.
func (h *Handle) Progress() (in, out int64) {
	h.mu.Lock()
	ended, res, fb, off, p := h.ended, h.res, h.fb, h.off, h.p
	h.mu.Unlock()
	switch {
	case ended:
		return res.In, res.Out
	case fb != nil:
		in, out = fb.Progress()
		return off[0] + in, off[1] + out
	case p != nil:
		return p.user[upstream] + p.userAfter(upstream) + int64(h.k.obj.counted(p.cookie[client])),
			p.user[client] + p.userAfter(client) + int64(h.k.obj.counted(p.cookie[upstream]))
	}
	return off[0], off[1]
}

func (h *Handle) setPath(path, why string) {
	h.mu.Lock()
	h.path, h.why = path, why
	h.mu.Unlock()
}

// moved says why a pair the kernel took went to user space ("" if not).
func (h *Handle) moved() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.why
}

// toFallback starts fp on the fallback, with in and out already moved.
// If the fallback refuses, its error is returned (it has closed the
// conns) and done is not called.
func (h *Handle) toFallback(fp forward.Pair, in, out int64) error {
	h.mu.Lock()
	h.p = nil
	h.off = [2]int64{in, out}
	h.path = h.k.fallback.Path()
	stop := h.stop
	h.mu.Unlock()
	if stop {
		// Stopped during the hand-over: close instead.
		_ = fp.Client.Close()
		_ = fp.Upstream.Close()
		go h.finish(forward.Result{In: in, Out: out})
		return nil
	}
	fb, err := h.k.fallback.Start(fp, func(r forward.Result) {
		r.In += in
		r.Out += out
		h.finish(r)
	})
	if err != nil {
		return fmt.Errorf("fallback %s: %w", h.k.fallback.Path(), err)
	}
	h.mu.Lock()
	h.fb = fb
	stop = h.stop && !h.ended
	h.mu.Unlock()
	if stop {
		fb.Stop()
	}
	return nil
}

// finish records r and calls done, once.
func (h *Handle) finish(r forward.Result) {
	h.mu.Lock()
	if h.ended {
		h.mu.Unlock()
		return
	}
	h.ended = true
	h.res = r
	h.p = nil
	h.mu.Unlock()
	h.done(r)
	h.k.untrack(h)
}
