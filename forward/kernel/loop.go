package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/distgate/distgate/forward"
)

// The loop: one goroutine and one epoll instance for every pair in the
// kernel. For a direction the kernel forwards it sees only the source's
// half-close (EPOLLRDHUP) and errors (EPOLLERR), edge-triggered; data
// never wakes it. It also reads the program's backpressure events, runs
// the re-checks of pairs waiting for the kernel, the watchdog, and the
// user-space copy of directions the kernel does not forward (held data
// being written back after a pause, or a pair taken back for good).

type op uint8

// Why a pair the kernel took was moved to user space.
const (
	whyLeftover     = "leftover"     // data the program did not take (trap 3)
	whyBackpressure = "backpressure" // a receiver MaxQueued behind (trap 8)
	whyWatchdog     = "watchdog"     // no progress with data queued (trap 9)
)

const (
	opStop op = iota
	opTakeBack
)

type command struct {
	op op
	p  *pair
}

const (
	// Re-check pacing for a pair waiting for the kernel: quick at first
	// (its worker usually needs tens of microseconds), backing off for a
	// slow receiver.
	firstStep = 200 * time.Microsecond
	maxStep   = 20 * time.Millisecond
	// sweepPeriod is how often the watchdog looks at each idle pair.
	sweepPeriod = time.Minute
)

// The epoll data of the eventfd and of the ring buffer: Fd wakeID with
// Pad 0 or 1. Pair ids start at 1.
const (
	wakeID  = 0
	ringPad = 1
)

func (k *Kernel) startLoop() error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(ep)
		return fmt.Errorf("eventfd: %w", err)
	}
	fail := func(err error) error {
		_ = unix.Close(ep)
		_ = unix.Close(wake)
		return err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeID}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		return fail(fmt.Errorf("epoll add: %w", err))
	}
	rd, err := ringbuf.NewReader(k.obj.events)
	if err != nil {
		return fail(fmt.Errorf("ring buffer reader: %w", err))
	}
	// The loop's epoll says when the ring has events; reads never wait.
	rd.SetDeadline(time.Unix(1, 0))
	ev = unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeID, Pad: ringPad}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, k.obj.events.FD(), &ev); err != nil {
		_ = rd.Close()
		return fail(fmt.Errorf("epoll add: %w", err))
	}
	k.ep, k.wake, k.ring = ep, wake, rd
	k.waiting = make(map[*pair]struct{})
	go k.loop()
	return nil
}

// poke wakes the loop.
func (k *Kernel) poke() {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], 1)
	_, _ = unix.Write(k.wake, b[:])
}

// command hands c to the loop.
func (k *Kernel) command(c command) {
	k.mu.Lock()
	k.cmds = append(k.cmds, c)
	k.mu.Unlock()
	k.poke()
}

const baseInterest = unix.EPOLLRDHUP | unix.EPOLLET

// register makes p known to the loop and the watchdog. The epoll
// registrations are made under k.mu, which the loop takes to look up an
// event's pair: an edge reported at once is then never looked up before
// the pair is known, and the loop cannot end the pair (and close its
// sockets) between the two registrations.
func (k *Kernel) register(p *pair) {
	k.mu.Lock()
	for {
		k.nextID++
		if k.nextID > 1<<30 {
			k.nextID = 1
		}
		if _, used := k.pairs[k.nextID]; !used && k.nextID != wakeID {
			break
		}
	}
	p.id = k.nextID
	k.pairs[p.id] = p
	k.byCookie[p.cookie[0]] = p
	k.byCookie[p.cookie[1]] = p
	k.list = append(k.list, p)
	var err error
	for i := range 2 {
		// Edge-triggered: the half-close is reported once, and data
		// (not asked for) never wakes the loop.
		p.interest[i] = baseInterest
		ev := unix.EpollEvent{Events: p.interest[i], Fd: int32(p.id), Pad: int32(i)}
		if err = unix.EpollCtl(k.ep, unix.EPOLL_CTL_ADD, p.fd[i], &ev); err != nil {
			break
		}
	}
	k.mu.Unlock()
	if err != nil {
		// Without the watch the pair cannot stay in the kernel.
		k.command(command{op: opTakeBack, p: p})
		return
	}
	// The loop may be sleeping with no timeout (no pairs before this
	// one): wake it so the watchdog's ticks start.
	k.poke()
}

// unregister forgets p (loop only).
func (k *Kernel) unregister(p *pair) {
	for i := range 2 {
		if p.fd[i] >= 0 {
			_ = unix.EpollCtl(k.ep, unix.EPOLL_CTL_DEL, p.fd[i], nil)
		}
	}
	k.mu.Lock()
	delete(k.pairs, p.id)
	delete(k.byCookie, p.cookie[0])
	delete(k.byCookie, p.cookie[1])
	for i, q := range k.list {
		if q == p {
			last := len(k.list) - 1
			k.list[i] = k.list[last]
			k.list[last] = nil
			k.list = k.list[:last]
			break
		}
	}
	k.mu.Unlock()
	delete(k.waiting, p)
}

// setInterest registers what the loop needs to hear about socket i:
// always its half-close; its data while user space reads it; room to
// write while user space has bytes for it.
func (k *Kernel) setInterest(p *pair, i int) {
	want := uint32(baseInterest)
	if reads(p, i) && !p.rdEOF[i] {
		want |= unix.EPOLLIN
	}
	if writes(p, 1-i) && p.q[1-i].len() > 0 {
		want |= unix.EPOLLOUT
	}
	if want == p.interest[i] || p.fd[i] < 0 {
		return
	}
	p.interest[i] = want
	ev := unix.EpollEvent{Events: want, Fd: int32(p.id), Pad: int32(i)}
	// A modification re-polls the socket, so data or room already there
	// is reported as an edge at once.
	_ = unix.EpollCtl(k.ep, unix.EPOLL_CTL_MOD, p.fd[i], &ev)
}

// reads says whether user space reads direction s's source. A held
// direction is read too, into the queue, up to the socket's receive
// buffer: a held skb can wait on the socket's psock backlog for receive
// memory, and the bytes redirected to this socket by the other direction
// wait behind it. Unread, two held directions would each wait for the
// other's bytes forever.
func reads(p *pair, s int) bool {
	switch {
	case p.state == stopping:
		// Read and dropped, for the same reason; and once nothing more
		// is redirected (stopWait), so that the sockets' fixed receive
		// buffers are not overrun: seen without it, drops and
		// retransmission backoff of seconds on the other direction
		// (RTO 5 s, cwnd 2), which held up the wait for its ACKs.
		return true
	case p.state != running:
		return false
	}
	return p.mode[s] != dirKernel
}

// writes says whether user space writes direction s's queue to the peer:
// only once nothing the kernel redirected is still ahead of it.
func writes(p *pair, s int) bool {
	return p.state == running && p.mode[s] == dirUser
}

func (k *Kernel) tick() time.Duration {
	return min(max(k.opts.StallTimeout/4, 5*time.Millisecond), time.Second)
}

func (k *Kernel) loop() {
	defer close(k.loopDone)
	events := make([]unix.EpollEvent, 256)
	nextTick := time.Now().Add(k.tick())
	for {
		timeout := -1
		k.mu.Lock()
		busy := len(k.pairs) > 0
		k.mu.Unlock()
		if busy || len(k.waiting) > 0 {
			next := nextTick
			for p := range k.waiting {
				if p.due.Before(next) {
					next = p.due
				}
			}
			d := time.Until(next)
			timeout = max(0, int(d/time.Millisecond))
			if timeout == 0 && d > 0 {
				timeout = 1
			}
		}
		n, err := unix.EpollWait(k.ep, events, timeout)
		if err != nil && !errors.Is(err, unix.EINTR) {
			// Not expected on a valid epoll fd; do not spin on it.
			time.Sleep(time.Millisecond)
		}
		now := time.Now()
		for _, ev := range events[:max(n, 0)] {
			switch {
			case ev.Fd == wakeID && ev.Pad == ringPad:
				k.readRing(now)
			case ev.Fd == wakeID:
				var b [8]byte
				_, _ = unix.Read(k.wake, b[:])
			default:
				k.mu.Lock()
				p := k.pairs[uint32(ev.Fd)]
				k.mu.Unlock()
				if p != nil {
					k.onEvent(p, int(ev.Pad), ev.Events, now)
				}
			}
		}
		k.mu.Lock()
		cmds, exit := k.cmds, k.exit
		k.cmds = nil
		k.mu.Unlock()
		for _, c := range cmds {
			k.onCommand(c, now)
		}
		k.runWaits(now)
		if !now.Before(nextTick) {
			k.watch(now)
			nextTick = now.Add(k.tick())
		}
		if exit {
			return
		}
	}
}

func (k *Kernel) onEvent(p *pair, side int, events uint32, now time.Time) {
	if p.state == ended {
		return
	}
	if events&unix.EPOLLERR != 0 {
		// Trap 7: a reset (or an error the kernel's worker reported
		// while sending to this socket) is passed on as a reset.
		if err := sockError(p.fd[side]); err != nil {
			k.end(p, fmt.Errorf("%s: %w", sideName[side], err), endAbort)
			return
		}
	}
	if p.state == stopping {
		k.drop(p, side)
		return
	}
	if events&unix.EPOLLOUT != 0 && !k.pump(p, 1-side) {
		return
	}
	if events&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		p.eof[side] = true
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 && !k.pump(p, side) {
		return
	}
	if p.state == running {
		k.advance(p, now)
	}
}

func (k *Kernel) onCommand(c command, now time.Time) {
	p := c.p
	if p.state != running {
		return
	}
	switch c.op {
	case opStop:
		// Trap 4: stop the program taking more, let what it redirected
		// reach the send queues, then close.
		p.state = stopping
		for s := range 2 {
			_ = k.hold(p, s)
			p.q[s].reset()
		}
		for s := range 2 {
			k.setInterest(p, s)
			k.drop(p, s)
		}
		p.deadline = now.Add(k.opts.DrainTimeout)
		p.step = 0
		k.stopWait(p, now)
	case opTakeBack:
		k.takeBack(p, whyLeftover, now)
	}
}

// schedule re-checks p after its current step.
func (k *Kernel) schedule(p *pair, now time.Time) {
	if p.step == 0 {
		p.step = firstStep
	} else {
		p.step = min(2*p.step, maxStep)
	}
	p.due = now.Add(p.step)
	k.waiting[p] = struct{}{}
}

func (k *Kernel) runWaits(now time.Time) {
	var due []*pair
	for p := range k.waiting {
		if !now.Before(p.due) {
			due = append(due, p)
		}
	}
	for _, p := range due {
		delete(k.waiting, p)
		switch p.state {
		case running:
			k.advance(p, now)
		case stopping:
			k.stopWait(p, now)
		}
	}
}

// toHeld has the program hold direction s's data in its source's own
// queue; once every byte it redirected before is in the peer's send
// queue, user space forwards the direction (advance does that).
func (k *Kernel) toHeld(p *pair, s int, now time.Time) bool {
	if p.mode[s] != dirKernel {
		return true
	}
	if err := k.hold(p, s); err != nil {
		k.end(p, err, endAbort)
		return false
	}
	p.mode[s] = dirHeld
	// Read what is held up to one receive buffer: the kernel would
	// have buffered that much for a reader that stopped anyway.
	p.holdCap[s] = 256 << 10
	if v, err := unix.GetsockoptInt(p.fd[s], unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil {
		p.holdCap[s] = max(p.holdCap[s], v)
	}
	k.setInterest(p, s)
	p.step = 0
	k.schedule(p, now)
	return k.pump(p, s)
}

// takeBack moves both directions of a running pair to user space for
// good, after what the kernel redirected (trap 3 leftovers, a receiver
// MaxQueued behind, the watchdog). The sockets stay in the maps, held
// (see objects), and are read with recv.
func (k *Kernel) takeBack(p *pair, why string, now time.Time) {
	k.nTakenBack.Add(1)
	p.h.setPath("user", why)
	for s := range 2 {
		if !k.toHeld(p, s, now) {
			return
		}
	}
	k.advance(p, now)
}

// advance moves a running pair on: held directions whose redirected
// bytes have all reached the peer's send queue go on to user space; a
// source at EOF whose
// bytes have all been moved gets its peer shut down for writing (trap 6);
// with both shut, the pair is done.
func (k *Kernel) advance(p *pair, now time.Time) {
	pending := false
	for s := range 2 {
		if p.mode[s] != dirHeld {
			continue
		}
		owed, _, _, err := k.owed(p, s)
		if err != nil {
			k.end(p, fmt.Errorf("%s: %w", sideName[1-s], err), endAbort)
			return
		}
		if owed > 0 {
			pending = true
			continue
		}
		p.mode[s] = dirUser
		k.setInterest(p, s)
		if !k.pump(p, s) {
			return
		}
	}
	for s := range 2 {
		d := 1 - s
		if !(p.eof[s] || p.rdEOF[s]) || p.shut[d] {
			continue
		}
		ok, err := k.flushedEOF(p, s)
		if err != nil {
			k.end(p, fmt.Errorf("%s: %w", sideName[s], err), endAbort)
			return
		}
		if !ok {
			pending = true
			continue
		}
		if err := unix.Shutdown(p.fd[d], unix.SHUT_WR); err != nil {
			k.end(p, fmt.Errorf("%s: shutdown: %w", sideName[d], err), endAbort)
			return
		}
		p.shut[d] = true
		p.step = 0
	}
	if p.shut[client] && p.shut[upstream] {
		for s := range 2 {
			if !k.dupCheck(p, s) {
				return
			}
		}
		k.end(p, nil, endClean)
		return
	}
	if pending {
		k.schedule(p, now)
	}
}

// pump is the user-space copy of direction s (source fd[s] to peer
// fd[1-s]): it reads the source while the direction is not the kernel's
// and writes the queue to the peer when nothing redirected is ahead of
// it. false: the pair ended.
func (k *Kernel) pump(p *pair, s int) bool {
	d := 1 - s
	limit := copyBuf
	if p.mode[s] == dirHeld {
		limit = p.holdCap[s]
	}
	for p.state == running {
		if writes(p, s) && p.q[s].len() > 0 {
			b := p.q[s].front()
			n, err := writeSome(p.fd[d], b)
			if n > 0 {
				p.after[d].Add(int64(n))
				p.q[s].consume(n)
			}
			if err != nil {
				k.end(p, fmt.Errorf("%s: %w", sideName[d], err), endAbort)
				return false
			}
			if n < len(b) {
				break // the peer is full: wait for EPOLLOUT
			}
			continue
		}
		if !reads(p, s) || p.rdEOF[s] || p.q[s].len() >= limit {
			break
		}
		b := chunks.Get().(*chunk)
		n, _, err := unix.Recvfrom(p.fd[s], b[:], unix.MSG_DONTWAIT)
		if err != nil || n <= 0 {
			chunks.Put(b)
		}
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
		case err != nil:
			k.end(p, fmt.Errorf("%s: %w", sideName[s], err), endAbort)
			return false
		case n == 0:
			// With the program attached, every byte is either
			// redirected or held (passed). A held skb can still be on
			// the psock's backlog, behind bytes redirected to this
			// socket, when recv already sees the FIN and says 0: EOF
			// only once every held byte has been read.
			if p.read[s] >= k.obj.held(p.cookie[s]) {
				p.rdEOF[s] = true
			}
		default:
			// The kernel has been seen to pass the same skb twice in
			// this mode: check before any of it goes on.
			if !k.dupCheck(p, s) {
				chunks.Put(b)
				return false
			}
			p.read[s] += uint64(n)
			p.q[s].push(b, n)
			continue
		}
		break
	}
	if p.state != running {
		return p.state != ended
	}
	k.setInterest(p, s)
	k.setInterest(p, d)
	return true
}

// drop reads and throws away what a stopping pair's socket receives, so
// its psock backlog keeps moving the bytes redirected to it.
func (k *Kernel) drop(p *pair, s int) {
	var b [16 << 10]byte
	for range 64 {
		n, _, err := unix.Recvfrom(p.fd[s], b[:], unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return
		}
	}
	// More is coming: the next edge brings the loop back.
}

// readRing handles the program's events: a socket's counter crossed the
// point where MaxQueued bytes could be owed to its peer (trap 8).
func (k *Kernel) readRing(now time.Time) {
	var rec ringbuf.Record
	for k.ring.ReadInto(&rec) == nil {
		if len(rec.RawSample) < 8 {
			continue
		}
		c := binary.NativeEndian.Uint64(rec.RawSample)
		k.mu.Lock()
		p := k.byCookie[c]
		k.mu.Unlock()
		if p == nil || p.state != running {
			continue
		}
		s := client
		if p.cookie[upstream] == c {
			s = upstream
		}
		if p.mode[s] == dirKernel {
			k.checkQueued(p, s, now)
		} else {
			k.checkHeld(p, s)
		}
	}
}

// checkHeld resets the pair if more than holdLimit held bytes wait unread
// in direction s's source, and otherwise re-arms the check.
func (k *Kernel) checkHeld(p *pair, s int) {
	held := k.obj.held(p.cookie[s])
	unread := held - min(held, p.read[s])
	if unread > k.holdLimit() {
		k.nOverrun.Add(1)
		err := fmt.Errorf("%w: %d bytes held unread from the %s", ErrOverrun, unread, sideName[s])
		k.event(EventOverrun, err)
		k.end(p, err, endAbort)
		return
	}
	k.arm(p, s, held+k.holdLimit()-unread)
}

// checkQueued pauses direction s if MaxQueued bytes are owed to the
// peer's send queue, and otherwise re-arms the program's check where
// they could be.
func (k *Kernel) checkQueued(p *pair, s int, now time.Time) {
	if p.mode[s] != dirKernel {
		return
	}
	limit := uint64(k.opts.MaxQueued)
	owed, c, _, err := k.owed(p, s)
	if err != nil {
		return // an error edge reaches the loop as an event
	}
	if owed < limit {
		k.arm(p, s, c+limit-owed)
		return
	}
	// The receiver does not keep up: the pair goes to user space for
	// good, where held bytes are charged to the source socket and TCP's
	// window holds the sender back. (Going back to the kernel later was
	// tried: holding while the same socket's psock still has bytes to
	// send for the other direction puts held skbs on that backlog,
	// uncharged, and two slow readers then ended in drops and seconds of
	// retransmission backoff.)
	k.nBackpressure.Add(1)
	k.takeBack(p, whyBackpressure, now)
}

// stopWait ends a stopping pair in two steps, both bounded by its
// deadline. First the redirected bytes must all be in the send queues;
// then both sockets' sending sides are shut down (each peer reads what it
// was sent, then EOF), and the pair ends once the peers have acknowledged
// everything. Closing earlier would lose bytes already forwarded: a
// socket closed with unread data in its receive queue sends a reset and
// throws its send queue away, and with both sides sending, data keeps
// arriving between any discard and the close (measured: 0.8 to 4.2 MB
// short in TestStopMidTransferBothWays).
func (k *Kernel) stopWait(p *pair, now time.Time) {
	if !p.stopShut {
		all := true
		for s := range 2 {
			if p.shut[1-s] {
				continue
			}
			if owed, _, _, err := k.owed(p, s); err == nil && owed > 0 {
				all = false
			}
		}
		if !all && now.Before(p.deadline) {
			k.schedule(p, now)
			return
		}
		if !all {
			k.end(p, nil, endStop)
			return
		}
		for i := range 2 {
			// Fails only on a socket already reset: nothing is owed.
			_ = unix.Shutdown(p.fd[i], unix.SHUT_WR)
		}
		p.stopShut = true
		p.step = 0
	}
	if (acked(p.fd[client]) && acked(p.fd[upstream])) || !now.Before(p.deadline) {
		k.end(p, nil, endStop)
		return
	}
	k.schedule(p, now)
}

type endMode uint8

const (
	endClean endMode = iota // both directions finished
	endStop                 // Stop: no reset unless data is unread
	endAbort                // an error: reset both sides
)

// end closes a pair and reports it. Its sockets leave the SOCKHASHes as
// they close; nothing they hold matters any more.
func (k *Kernel) end(p *pair, err error, mode endMode) {
	in, out := k.result(p, mode == endClean)
	k.unregister(p)
	k.forget(p)
	for i := range 2 {
		p.q[i].reset()
		switch mode {
		case endAbort:
			setLingerZero(p.fd[i])
		case endStop:
			// A close with unread data sends a reset, which would
			// throw away the send queue just drained into.
			discard(p.fd[i])
		}
	}
	p.closeFDs()
	p.state = ended
	go p.h.finish(forward.Result{In: in, Out: out, Err: err})
}

// result is In and Out: what user space wrote to each side plus the
// redirected bytes that reached its send queue. After a clean end every
// counted byte did (both EOFs waited for it); otherwise the send queue
// position is read with no ACK in between, so the count is exact.
func (k *Kernel) result(p *pair, clean bool) (in, out int64) {
	var got [2]int64 // by source side
	for s := range 2 {
		c := k.obj.counted(p.cookie[s])
		got[s] = int64(c)
		if clean {
			continue
		}
		d := 1 - s
		pos, err := sendPosExact(p.fd[d])
		if err != nil {
			continue
		}
		got[s] = min(int64(c), max(0, int64(pos-p.base[d])-p.after[d].Load()))
	}
	in = p.user[upstream] + p.userAfter(upstream) + got[client]
	out = p.user[client] + p.userAfter(client) + got[upstream]
	return in, out
}

// watch is the watchdog's tick (trap 9). A direction the kernel forwards
// is stuck when data sits in its source's queue although the program
// should have taken it, or when bytes it redirected are owed to the
// peer's send queue while that queue is empty (so nothing but the
// kernel's own worker is in the way). A slow or stopped receiver is not a
// stall: its send queue is full. A direction stuck with no progress for
// StallTimeout is moved to user space when nothing redirected is missing,
// or reset with ErrStalled when something is. The tick also re-checks
// MaxQueued, in case an event was lost.
func (k *Kernel) watch(now time.Time) {
	counts := k.readCounters()
	k.mu.Lock()
	var inspect []*pair
	for c, n := range counts {
		p := k.byCookie[c]
		if p == nil {
			continue
		}
		s := client
		if p.cookie[upstream] == c {
			s = upstream
		}
		if p.seen[s] != n {
			p.seen[s] = n
			p.settled = false
		}
	}
	for _, p := range k.list {
		if !p.settled {
			inspect = append(inspect, p)
		}
	}
	// Idle pairs are looked at now and then too: data stuck in a
	// queue moves no counter.
	if n := len(k.list); n > 0 {
		sweep := max(16, int(int64(n)*int64(k.tick())/int64(sweepPeriod)))
		for range min(sweep, n) {
			k.sweep = (k.sweep + 1) % n
			if p := k.list[k.sweep]; p.settled {
				inspect = append(inspect, p)
			}
		}
	}
	k.mu.Unlock()
	for _, p := range inspect {
		k.inspect(p, now)
	}
}

// readCounters reads the program's byte counters for every socket.
func (k *Kernel) readCounters() map[uint64]uint64 {
	out := make(map[uint64]uint64)
	keys := make([]uint64, 1024)
	vals := make([]uint64, 1024)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := k.obj.bytes.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			out[keys[i]] = vals[i]
		}
		if err == nil {
			continue
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out
		}
		break
	}
	// No batch lookups on this kernel: one lookup per socket.
	k.mu.Lock()
	cookies := make([]uint64, 0, len(k.byCookie))
	for c := range k.byCookie {
		cookies = append(cookies, c)
	}
	k.mu.Unlock()
	for _, c := range cookies {
		var v uint64
		if k.obj.bytes.Lookup(c, &v) == nil {
			out[c] = v
		}
	}
	return out
}

func (k *Kernel) inspect(p *pair, now time.Time) {
	if p.state != running {
		return
	}
	quiet := true
	var stalled, leftover bool
	// Both directions held, each waiting for bytes the kernel owes the
	// other way: seen to wait forever in two-way transfers (held skbs
	// blocking each psock backlog for the other's bytes). No progress
	// for StallTimeout there is a stall even with full send queues.
	bothHeld := p.mode[client] == dirHeld && p.mode[upstream] == dirHeld
	for s := range 2 {
		d := 1 - s
		if p.mode[s] == dirUser {
			// User space moves this direction itself.
			quiet = quiet && p.q[s].len() == 0
			p.stuckSince[s] = time.Time{}
			continue
		}
		data := false
		if p.mode[s] == dirKernel {
			var err error
			if data, _, err = queued(p.fd[s]); err != nil {
				continue // the error edge reaches the loop as an event
			}
		}
		var owed uint64
		var pos uint64
		emptyQ := false
		if !p.shut[d] {
			var outq int
			var err error
			if owed, _, outq, err = k.owed(p, s); err != nil {
				continue
			}
			pos, _, _ = sendPos(p.fd[d])
			emptyQ = outq == 0
		}
		if p.mode[s] == dirKernel && owed >= uint64(k.opts.MaxQueued) {
			k.checkQueued(p, s, now)
			if p.state != running {
				return
			}
		}
		if m := (progressMark{p.seen[s], pos}); m != p.mark[s] {
			p.mark[s] = m
			p.stuckSince[s] = time.Time{}
		}
		if data || owed > 0 || p.mode[s] == dirHeld {
			quiet = false
		}
		if !data && !(owed > 0 && (emptyQ || bothHeld)) {
			p.stuckSince[s] = time.Time{}
			continue
		}
		if p.stuckSince[s].IsZero() {
			p.stuckSince[s] = now
			continue
		}
		if now.Sub(p.stuckSince[s]) >= k.opts.StallTimeout {
			if owed > 0 && (emptyQ || bothHeld) {
				stalled = true
			} else {
				leftover = true
			}
		}
	}
	p.settled = quiet
	// A lost ring event must not leave a held queue unwatched.
	for s := range 2 {
		if p.state == running && p.mode[s] != dirKernel {
			k.checkHeld(p, s)
		}
	}
	switch {
	case p.state != running:
	case stalled:
		// Redirected bytes that never reach the send queue cannot be
		// recovered; a stream with a hole is worse than a reset.
		k.nWatchdog.Add(1)
		k.nStalled.Add(1)
		k.event(EventStalled, fmt.Errorf("%w: redirected bytes did not reach the send queue for %v; both sides reset", ErrStalled, k.opts.StallTimeout))
		k.end(p, ErrStalled, endAbort)
	case leftover:
		k.nWatchdog.Add(1)
		k.event(EventWatchdog, fmt.Errorf("data queued without progress for %v; pair moved to user space, nothing lost", k.opts.StallTimeout))
		k.takeBack(p, whyWatchdog, now)
	default:
		// Bytes the kernel duplicated and redirected itself are past
		// recall; the reset at least stops the stream there.
		// A direction the watchdog is timing as stuck is left to it.
		for s := range 2 {
			if p.state == running && p.stuckSince[s].IsZero() && !k.dupCheck(p, s) {
				return
			}
		}
	}
}
