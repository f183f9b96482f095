package proxy

// The handshake watch (design.md, The handshake watch; erlang-dist-facts.md
// §11). After the first message has gone to the node, the rest of the
// handshake is read frame by frame in both directions; each frame is judged
// by a wire.Watch before it is forwarded, until the node's 'a' has gone to
// the client. What a read returned past the last handshake frame of a side
// is handed on to the forwarder in the Pair, in order.
//
// Each direction has its own reader (pump): the node's on the connection's
// own goroutine, the client's on a second one that lives only as long as
// the watch. The handshake is lock-step, so one reader reading whichever
// side is due would do for a well-behaved pair; but a side that closes, or
// sends out of turn, while the other side is due would then go unnoticed
// until setup_timeout. Two readers see it at once, and neither has to know
// whose turn it is: that is the wire.Watch's business alone. The Watch is
// not safe for concurrent use, so the readers take turns under a mutex;
// each frame is fed before it is forwarded, which is what keeps the Watch
// right across directions (a side answers only what it has received).

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distgate/distgate/wire"
)

// watchBufSize holds the longest handshake frame with its header (1 KiB +
// 4) and room for what follows it in the same read.
const watchBufSize = 2048

var watchPool = sync.Pool{New: func() any { return new([watchBufSize]byte) }}

// errCut: the gate closed the connection (a ban, the drain, a revocation)
// while the watch was reading it.
var errCut = errors.New("cut by the gate during the handshake")

// aLongTimeAgo is a read deadline that ends a read in progress at once.
var aLongTimeAgo = time.Unix(1, 0)

// framed is one side of a connection as the watch reads it: a stream of
// handshake frames, each behind a hdr-byte length. On plain TCP both sides
// use wire.HeaderTCP; a client inside TLS uses wire.HeaderTLS (§12), and a
// frame is then re-framed for the other side as it is forwarded (send).
type framed struct {
	c   net.Conn
	hdr int
	buf *[watchBufSize]byte
	r   int // buf[r:w] is read and not yet consumed
	w   int
}

func newFramed(c net.Conn, hdr int) framed {
	return framed{c: c, hdr: hdr, buf: watchPool.Get().(*[watchBufSize]byte)}
}

// next cuts the next whole frame off what has been read: the frame as read
// (header included) and its body, or nil if no whole frame is in yet. A
// declared length over the cap is an error as soon as the header is in.
func (f *framed) next() (frame, body []byte, err error) {
	body, n, err := wire.SplitFrame(f.buf[f.r:f.w], f.hdr, wire.MaxHandshakeFrame)
	if err != nil || n == 0 {
		return nil, nil, err
	}
	frame = f.buf[f.r : f.r+n]
	f.r += n
	return frame, body, nil
}

// fill reads more from the side, after what is already held.
func (f *framed) fill() error {
	if f.r > 0 {
		f.w = copy(f.buf[:], f.buf[f.r:f.w])
		f.r = 0
	}
	if f.w == len(f.buf) {
		// Cannot happen: a frame is at most half the buffer, and only one
		// partial frame is ever held. A guard against a zero-length read
		// spinning for ever.
		return errors.New("handshake read buffer full")
	}
	for {
		n, err := f.c.Read(f.buf[f.w:])
		f.w += n
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// send writes one frame to the side, behind the side's own header: the
// frame as it was read when the headers are the same size, else its body
// re-framed. It returns the bytes written.
func (f *framed) send(frame, body []byte, hdr int) (int, error) {
	if hdr == f.hdr {
		return f.c.Write(frame)
	}
	var b [wire.HeaderTLS + wire.MaxHandshakeFrame]byte
	out, err := wire.AppendFrame(b[:0], f.hdr, body)
	if err != nil {
		return 0, err
	}
	return f.c.Write(out)
}

// rest returns a copy of what was read past the last frame consumed (nil if
// nothing), and gives the buffer back. The side is not read again.
func (f *framed) rest() []byte {
	var b []byte
	if f.w > f.r {
		b = append([]byte(nil), f.buf[f.r:f.w]...)
	}
	f.release()
	return b
}

func (f *framed) release() {
	if f.buf != nil {
		watchPool.Put(f.buf)
		f.buf = nil
	}
}

// watcher is one connection's watch in progress.
type watcher struct {
	client, node framed

	mu  sync.Mutex
	w   *wire.Watch
	end wire.Step // the step that gave the outcome
}

// watchResult is how a watch ended.
type watchResult struct {
	step wire.Step
	// named is the node name granted by named: (nil if none).
	named []byte
	// status is the node's last status word ("" before it).
	status string
	// toUpstream and toClient are what was read past the handshake (ok
	// only), for the forwarder.
	toUpstream, toClient []byte
}

// watch follows the handshake of a connection whose first message has been
// written to up, until an outcome or the deadline. It returns with both
// sockets' deadlines cleared after ok, and both sockets closed after any
// other outcome. The bytes it forwards are added to the session's counts.
//
// On a terminating gate the client's side is its TLS session, with 4-byte
// frames, and each frame is re-framed as it is forwarded (framed.send).
// Deadlines are set on the sockets: a TLS session reads and writes through
// its socket, and a read it gives up on a deadline (a temporary error)
// leaves it usable.
func (g *Gate) watch(c *conn, up *net.TCPConn, w *wire.Watch, deadline time.Time) watchResult {
	side, hdr := c.side()
	wt := &watcher{
		client: newFramed(side, hdr),
		node:   newFramed(up, wire.HeaderTCP),
		w:      w,
	}
	_ = c.client.SetDeadline(deadline)
	_ = up.SetDeadline(deadline)

	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		wt.pump(&wt.client, &wt.node, true, &c.ss.preIn)
	}()
	wt.pump(&wt.node, &wt.client, false, &c.ss.preOut)
	<-clientDone

	res := watchResult{step: wt.end, status: w.Status()}
	if n := w.NamedNode(); n != nil {
		res.named = append([]byte(nil), n...)
	}
	if res.step.Outcome == wire.OutcomeOK {
		res.toUpstream, res.toClient = wt.client.rest(), wt.node.rest()
		_ = c.client.SetDeadline(time.Time{})
		_ = up.SetDeadline(time.Time{})
		return res
	}
	wt.client.release()
	wt.node.release()
	_ = c.client.Close()
	_ = up.Close()
	return res
}

// pump reads frames from src and forwards to dst each one the Watch lets
// through, until the watch has an outcome, given by this side or the
// other. Whatever src holds past its last frame when the watch is over is
// left in its buffer (rest).
func (wt *watcher) pump(src, dst *framed, fromClient bool, sent *atomic.Int64) {
	for {
		// Judge, then forward, every whole frame already read.
		for {
			wt.mu.Lock()
			if wt.w.Done() {
				wt.mu.Unlock()
				return
			}
			frame, body, err := src.next()
			if err == nil && frame == nil {
				wt.mu.Unlock()
				break // read more
			}
			var st wire.Step
			switch {
			case err != nil:
				st = wt.w.FrameError(fmt.Errorf("%s frame: %w", sideName(fromClient), err))
			case fromClient:
				st = wt.w.FromClient(body)
			default:
				st = wt.w.FromNode(body)
			}
			wt.mu.Unlock()
			if st.Forward {
				n, err := dst.send(frame, body, src.hdr)
				if err == nil && !fromClient {
					// Counted as the node sent it: a frame re-framed for
					// a TLS client is 2 bytes longer in plaintext.
					n = len(frame)
				}
				sent.Add(int64(n))
				if err != nil && !st.Done() {
					st = wt.closed(!fromClient, err)
				}
			}
			if st.Done() {
				wt.finish(st)
				return
			}
		}
		if err := src.fill(); err != nil {
			if st := wt.closed(fromClient, err); st.Done() {
				wt.finish(st)
			}
			return
		}
	}
}

// closed reports that the client's (or the node's) side failed with err,
// a read or a write, and returns the step that gives: pending (Done false)
// if the watch was over already, and that side's read was only ended for it.
func (wt *watcher) closed(client bool, err error) wire.Step {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	if wt.w.Done() {
		return wire.Step{}
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return wt.w.Timeout()
	case errors.Is(err, net.ErrClosed):
		// The gate closed it: the watch was cut, and neither side is to
		// blame (a close after 'r' must not count as a wrong cookie).
		st := wt.w.ClientClosed()
		st.Err = errCut
		return st
	case client:
		return wt.w.ClientClosed()
	default:
		return wt.w.NodeClosed()
	}
}

// finish records the step that gave the outcome, once, and ends the read
// in progress on each side so that the other reader sees the outcome too.
func (wt *watcher) finish(st wire.Step) {
	wt.mu.Lock()
	if !wt.end.Done() {
		wt.end = st
	}
	wt.mu.Unlock()
	_ = wt.client.c.SetReadDeadline(aLongTimeAgo)
	_ = wt.node.c.SetReadDeadline(aLongTimeAgo)
}

func sideName(client bool) string {
	if client {
		return "client"
	}
	return "node"
}
