package kernel

import (
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Sides of a pair, the index into its arrays. A direction is named by its
// source side: direction s carries bytes from fd[s] to fd[1-s].
const (
	client   = 0
	upstream = 1
)

var sideName = [2]string{"client", "upstream"}

type pstate uint8

const (
	running  pstate = iota
	stopping        // Stop: waiting for redirected bytes, then close
	ended
)

// dmode is who moves a direction's bytes.
type dmode uint8

const (
	// dirKernel: the program redirects (ctl.Mode run).
	dirKernel dmode = iota
	// dirHeld: the program holds the bytes in the source's own queue;
	// user space reads them but writes nothing until what was
	// redirected before has all reached the peer's send queue.
	dirHeld
	// dirUser: user space forwards the direction for good.
	dirUser
)

// pair is a Pair in the kernel. After register only the loop touches its
// mutable fields; fd, cookie, base and user do not change after insert.
type pair struct {
	id     uint32
	h      *Handle
	fd     [2]int
	cookie [2]uint64
	// base is each socket's sendPos when it was inserted, after the last
	// byte user space wrote to it before: the kernel's bytes are measured
	// from there (traps 4 and 6).
	base [2]uint64
	// rcvBase is what TCP had received on each socket and was no longer
	// queued when it was inserted, before any program saw it: from then
	// on the program cannot see more than TCP_INFO's bytes_received
	// minus rcvBase (see duplicated).
	rcvBase [2]uint64
	// user is what user space wrote to each socket before insertion:
	// user[upstream] is part of In, user[client] of Out.
	user [2]int64

	inEgress, inVerdict [2]bool
	ctl                 [2]ctl // as last written to the ctl map

	state pstate
	eof   [2]bool // the side's peer half-closed (its read side is at EOF)
	shut  [2]bool // the side's write side was shut down here
	// stopShut: a stopping pair's redirected bytes are all in the send
	// queues and both sending sides are shut down (stopWait).
	stopShut bool

	// Per direction (index = source side).
	mode    [2]dmode
	next    [2]dmode        // where a held direction goes
	q       [2]queue        // read from the source, not yet written to the peer
	holdCap [2]int          // how much a held direction's queue may take
	after   [2]atomic.Int64 // bytes user space wrote to fd[i] after insertion
	rdEOF   [2]bool         // a user-space read of the source returned 0
	read    [2]uint64       // bytes user space read from the source
	// interest is the epoll mask registered for each socket.
	interest [2]uint32

	// Re-checks while waiting for the kernel.
	waiting  bool
	due      time.Time
	step     time.Duration
	deadline time.Time

	// Watchdog state, per direction.
	settled    bool
	mark       [2]progressMark
	stuckSince [2]time.Time
	seen       [2]uint64 // the program's counter at the last tick
}

// progressMark is what a direction looked like at the last inspection.
type progressMark struct{ counted, pos uint64 }

// newPair takes the raw sockets out of c and u (duplicates, with the
// conns closed so Go's poller lets go of them) and reads their cookies.
// On error c and u are untouched.
func (k *Kernel) newPair(h *Handle, c, u *net.TCPConn) (*pair, error) {
	p := &pair{h: h, fd: [2]int{-1, -1}}
	for i, conn := range [2]*net.TCPConn{c, u} {
		fd, err := dupConn(conn)
		if err != nil {
			p.closeFDs()
			return nil, err
		}
		p.fd[i] = fd
		if p.cookie[i], err = socketCookie(fd); err != nil {
			p.closeFDs()
			return nil, err
		}
	}
	_ = c.Close()
	_ = u.Close()
	return p, nil
}

// userAfter is what user space wrote to side i after insertion.
func (p *pair) userAfter(i int) int64 { return p.after[i].Load() }

func (p *pair) closeFDs() {
	for i, fd := range p.fd {
		if fd >= 0 {
			_ = unix.Close(fd)
			p.fd[i] = -1
		}
	}
}

// conns turns the raw sockets back into conns for the fallback. Only for
// sockets in no map with a program (see objects). The raw descriptors are
// closed either way.
func (p *pair) conns() (c, u *net.TCPConn, err error) {
	c, err = fdConn(p.fd[client])
	p.fd[client] = -1
	if err != nil {
		p.closeFDs()
		return nil, nil, err
	}
	u, err = fdConn(p.fd[upstream])
	p.fd[upstream] = -1
	if err != nil {
		_ = c.Close()
		return nil, nil, err
	}
	return c, u, nil
}

// maxRcvbuf caps the fixed receive buffer of a pair's sockets.
const maxRcvbuf = 8 << 20

// testHookInserted, if set, runs after both sockets joined "verdict" and
// before the check for data the program did not take.
var testHookInserted func(*pair)

// insert puts the pair into the maps in the order that leaves no gap
// (see objects): control values and counters, both sockets into egress,
// then into verdict. leftover reports data the program has not taken
// after that (trap 3), which the caller must hand to user space.
func (k *Kernel) insert(p *pair) (leftover bool, err error) {
	for i := range 2 {
		if p.base[i], err = sendPosExact(p.fd[i]); err != nil {
			return false, err
		}
		if p.rcvBase[i], err = consumed(p.fd[i]); err != nil {
			return false, err
		}
	}
	// A fixed receive buffer caps the window each sender is granted.
	// While the program redirects, the queue is empty and the window
	// stays fully open; when it holds (a pause, a move to user space),
	// what was granted keeps arriving. With autotuning the grant can
	// reach tcp_rmem's maximum (32 MiB here), which then overruns the
	// socket and ends in drops and retransmission backoff (seen: seconds
	// of stall in a two-way transfer into slow readers).
	// SO_RCVBUFFORCE (CAP_NET_ADMIN, which this path has anyway) so
	// net.core.rmem_max (often 208 KiB) does not shrink it further.
	rcvbuf := min(k.opts.MaxQueued, maxRcvbuf)
	for i := range 2 {
		if err := unix.SetsockoptInt(p.fd[i], unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
			if err := unix.SetsockoptInt(p.fd[i], unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf); err != nil {
				return false, fmt.Errorf("SO_RCVBUF: %w", err)
			}
		}
	}
	o := k.obj
	for i := range 2 {
		p.ctl[i] = ctl{Peer: p.cookie[1-i], Mode: modeRun, Check: uint64(k.opts.MaxQueued)}
		if err := o.ctl.Update(p.cookie[i], p.ctl[i], ebpf.UpdateAny); err != nil {
			return false, fmt.Errorf("ctl map: %w", err)
		}
		if err := o.bytes.Update(p.cookie[i], uint64(0), ebpf.UpdateAny); err != nil {
			return false, fmt.Errorf("bytes map: %w", err)
		}
		if err := o.passed.Update(p.cookie[i], uint64(0), ebpf.UpdateAny); err != nil {
			return false, fmt.Errorf("passed map: %w", err)
		}
	}
	for i := range 2 {
		if err := o.egress.Update(p.cookie[i], uint64(p.fd[i]), ebpf.UpdateNoExist); err != nil {
			return false, fmt.Errorf("insert %s socket: %w", sideName[i], err)
		}
		p.inEgress[i] = true
	}
	for i := range 2 {
		if err := o.verdict.Update(p.cookie[i], uint64(p.fd[i]), ebpf.UpdateNoExist); err != nil {
			return false, fmt.Errorf("insert %s socket: %w", sideName[i], err)
		}
		p.inVerdict[i] = true
	}
	if testHookInserted != nil {
		testHookInserted(p)
	}
	// Data queued between the early drain and the insert sits in the
	// receive queue until the next data_ready. Setting SO_RCVLOWAT runs
	// data_ready, so the program redirects it now, in order, before
	// anything that arrives later.
	for i := range 2 {
		if err := unix.SetsockoptInt(p.fd[i], unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1); err != nil {
			return false, fmt.Errorf("SO_RCVLOWAT: %w", err)
		}
	}
	for i := range 2 {
		data, _, err := queued(p.fd[i])
		if err != nil {
			return false, fmt.Errorf("peek %s socket: %w", sideName[i], err)
		}
		leftover = leftover || data
	}
	return leftover, nil
}

// removeUnused takes a pair out of the maps when no socket of it ever
// joined "verdict": nothing was redirected, nothing held, so it can go
// to the fallback whole.
func (k *Kernel) removeUnused(p *pair) {
	for i := range 2 {
		if p.inEgress[i] {
			_ = k.obj.egress.Delete(p.cookie[i])
			p.inEgress[i] = false
		}
	}
	k.forget(p)
}

// forget deletes the pair's control values and counters. The sockets
// leave the SOCKHASHes by themselves when they are closed.
func (k *Kernel) forget(p *pair) {
	for i := range 2 {
		_ = k.obj.ctl.Delete(p.cookie[i])
		_ = k.obj.bytes.Delete(p.cookie[i])
		_ = k.obj.passed.Delete(p.cookie[i])
	}
}

// hold stops the program redirecting direction s, and arms its check on
// the held bytes (see holdLimit). Setting SO_RCVLOWAT takes the socket's
// lock, so a verdict that read the old mode has finished when it returns:
// the counter is then final.
func (k *Kernel) hold(p *pair, s int) error {
	p.ctl[s].Mode = modeHold
	p.ctl[s].Check = k.obj.held(p.cookie[s]) + k.holdLimit()
	if err := k.obj.ctl.Update(p.cookie[s], p.ctl[s], ebpf.UpdateExist); err != nil {
		return fmt.Errorf("hold %s: %w", sideName[s], err)
	}
	if err := unix.SetsockoptInt(p.fd[s], unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1); err != nil {
		return fmt.Errorf("hold %s: %w", sideName[s], err)
	}
	return nil
}

// holdLimit is Options.MaxHeld. Seen without it: five two-way 256 MiB
// transfers into slow readers, after moving to user space, held 200+ MiB
// per socket until TCP's memory pressure shrank the send buffers to
// 4.6 KiB and every pair crawled.
func (k *Kernel) holdLimit() uint64 { return uint64(k.opts.MaxHeld) }

// arm asks the program for an event once direction s's counter reaches
// at.
func (k *Kernel) arm(p *pair, s int, at uint64) {
	p.ctl[s].Check = at
	_ = k.obj.ctl.Update(p.cookie[s], p.ctl[s], ebpf.UpdateExist)
}

// owed is how many bytes redirected from side s have not reached the
// other side's send queue yet, and the counter it was measured against.
// The counter is read before the position, so owed is never too small
// for the bytes counted.
func (k *Kernel) owed(p *pair, s int) (owed, counted uint64, outq int, err error) {
	c := k.obj.counted(p.cookie[s])
	d := 1 - s
	pos, q, err := sendPos(p.fd[d])
	if err != nil {
		return 0, c, 0, err
	}
	got := int64(pos-p.base[d]) - p.after[d].Load()
	if got >= int64(c) {
		return 0, c, q, nil
	}
	return c - uint64(max(got, 0)), c, q, nil
}

// duplicated reports whether the program has seen more bytes from side s
// than TCP received on it since insertion, which only a kernel that runs
// the verdict twice on the same data can make happen (ErrDuplicate). The
// program's counters are read before TCP_INFO, and TCP counts a byte
// before the program can see it, so a pair that forwards correctly never
// looks duplicated.
func (k *Kernel) duplicated(p *pair, s int) (bool, uint64) {
	seen := k.obj.counted(p.cookie[s]) + k.obj.held(p.cookie[s])
	ti, err := unix.GetsockoptTCPInfo(p.fd[s], unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return false, 0
	}
	got := ti.Bytes_received - min(ti.Bytes_received, p.rcvBase[s])
	if seen > got {
		return true, seen - got
	}
	return false, 0
}

// dupCheck ends p with ErrDuplicate if side s looks duplicated; false:
// the pair ended.
func (k *Kernel) dupCheck(p *pair, s int) bool {
	dup, extra := k.duplicated(p, s)
	if !dup {
		return true
	}
	k.nDuplicate.Add(1)
	err := fmt.Errorf("%w: %d bytes more from the %s than TCP received; both sides reset", ErrDuplicate, extra, sideName[s])
	k.event(EventDuplicate, err)
	k.end(p, err, endAbort)
	return false
}

// flushedEOF reports whether direction s, whose source is at EOF, has
// nothing left to move: no byte queued at the source, none buffered here,
// every redirected one in the peer's send queue. Only then may the peer
// be shut down (trap 6). In kernel mode a MSG_PEEK that sees only the EOF
// also proves the program has taken every data skb (counter final).
func (k *Kernel) flushedEOF(p *pair, s int) (bool, error) {
	switch p.mode[s] {
	case dirHeld:
		return false, nil
	case dirUser:
		if !p.rdEOF[s] || p.q[s].len() > 0 {
			return false, nil
		}
	default:
		data, eof, err := queued(p.fd[s])
		if err != nil {
			return false, err
		}
		if data || !eof {
			return false, nil
		}
	}
	owed, _, _, err := k.owed(p, s)
	return err == nil && owed == 0, err
}
