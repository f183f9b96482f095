// Package forward moves the bytes of an admitted connection once the
// handshake watch is over: the node's 'a' has been forwarded and both sides
// may now send at once. The proxy decides and watches; a Forwarder only
// copies, passes half-closes and resets on, and says when both sides are
// done. Paths (design.md, Forwarding): "user" (distgate's own loop) and
// "kernel" (SOCKMAP redirect). User is the "user" path, an epoll event
// loop; Goroutines is its reference and the fallback where User cannot
// run.
package forward

import (
	"net"
	"time"
)

// StopDrain bounds how long a stopped pair waits for its peers to
// acknowledge what was already written to them (Handle.Stop); a peer that
// reads nothing for that long loses them. A reading peer on loopback
// acknowledges within milliseconds; with both sides sending 1 GiB at
// once on two loaded cores, the kernel path took up to 0.86 s (60 runs of
// kernel.TestStopMidTransferBothWays). It adds at most this much to
// SIGTERM's drain_timeout.
const StopDrain = 5 * time.Second

// A stopped pair's send queues are looked at after drainFirst, then at
// doubling intervals up to drainMax, until they are empty or StopDrain has
// passed.
const (
	drainFirst = time.Millisecond
	drainMax   = 20 * time.Millisecond
)

// Pair is one admitted connection handed to a Forwarder. The Forwarder owns
// both connections from Start on (also when Start fails after taking them,
// see Start) and closes them.
type Pair struct {
	Client   *net.TCPConn
	Upstream *net.TCPConn
	// ToUpstream and ToClient are bytes already read from one side that the
	// other side has not been sent yet (a read that returned more than the
	// last handshake frame). They are written first, in order, before
	// anything read later from the same side.
	ToUpstream []byte
	ToClient   []byte
}

// Result is how a Pair ended.
type Result struct {
	// In is the number of bytes written to the upstream (client to node),
	// Out the number written to the client, both counting the Pair's
	// early bytes.
	In, Out int64
	// Err is the first error that ended the pair (a reset, a write that
	// failed). Nil when both sides closed cleanly or the pair was stopped.
	Err error
}

// Handle is a running Pair.
type Handle interface {
	// Stop ends the pair: nothing more is read or written, and what was
	// already written to a socket (and counted in Result) still reaches
	// its peer. Each socket's sending side is shut down after those bytes
	// (the peer reads them, then EOF) and the sockets are closed once the
	// peers have acknowledged them, or after StopDrain for a peer that
	// does not read. A plain close would not do: a socket closed with
	// unread data in its receive queue sends a reset at once and throws
	// its send queue away. done is called after the close, once. Stop may
	// be called from any goroutine, more than once.
	Stop()
	// Progress returns the bytes moved so far (In, Out as in Result).
	Progress() (in, out int64)
}

// Forwarder moves bytes for many Pairs. Implementations are safe for
// concurrent use.
type Forwarder interface {
	// Start takes p over and forwards until both directions are done or
	// Stop is called; then it closes both connections and calls done
	// exactly once, from a goroutine of its own choosing (never inside
	// Start). If Start returns an error, done is not called and both
	// connections are closed.
	Start(p Pair, done func(Result)) (Handle, error)
	// Path names the path for logs: "user" or "kernel".
	Path() string
	// Close stops the forwarder's own machinery after every pair has
	// ended. Pairs still running are stopped first.
	Close() error
}

// NewUserPath returns the "user" path: the event loop (NewUser), or,
// where it cannot run (outside Linux), Goroutines together with the reason.
// The Forwarder is never nil.
func NewUserPath() (Forwarder, error) {
	u, err := NewUser()
	if err != nil {
		return &Goroutines{}, err
	}
	return u, nil
}
