package proxy

// Live connections: every connection that passed the checks made at accept
// is a session in g.live until it ends, so that a new ban can close it, the
// drain can stop it whatever it is doing (reading its first message,
// dialling, in the handshake watch, forwarding), a reload can revoke it once
// it is admitted, and its bytes can be counted while it lasts.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distgate/distgate/forward"
	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/wire"
)

// session is one connection from the checks at accept to its end.
type session struct {
	client *net.TCPConn
	peer   netip.AddrPort
	key    netip.Addr // policy.Key of the peer's address: what bans and limits count
	since  time.Time  // accept

	// Set once by decide, under g.mu, before the session counts as
	// admitted; read under g.mu (revocation) or after decided is seen.
	decided bool
	tag     byte
	flags   uint64
	name    string   // the name the rules were checked against: host only for a dynamic name
	mode    TLSMode  // the gate's TLS mode: which rules decide (admittedBy)
	ids     []string // terminate: the verified client certificate's names
	sni     string   // passthrough: the server name

	// pre counts the bytes written before the forwarder took the pair: the
	// first message and the handshake frames forwarded by the watch.
	preIn, preOut atomic.Int64

	mu       sync.Mutex
	node     string             // the node's name as logged: the granted one after named:
	cancel   context.CancelFunc // ends the dial in progress
	upstream *net.TCPConn       // set once dialled
	watching bool               // in the handshake watch
	outcome  wire.Outcome       // the watch's outcome, once it has one
	h        forward.Handle     // set once the forwarder has the pair; it owns both sockets then
	path     string             // how the pair is forwarded, once it is (see forwardPath)
	why      policy.Reason      // why it was stopped; Admitted while it runs
	reported progress           // bytes already handed to the Observer
}

// errStopped: the session was stopped before the forwarder got the pair.
var errStopped = errors.New("stopped before forwarding")

// Live returns the number of admitted connections currently live (in the
// handshake watch or forwarding).
func (g *Gate) Live() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for ss := range g.live {
		if ss.decided {
			n++
		}
	}
	return n
}

// track registers a connection that passed the checks at accept.
func (g *Gate) track(c *net.TCPConn, peer netip.AddrPort, start time.Time) *session {
	ss := &session{client: c, peer: peer, key: policy.Key(peer.Addr()), since: start}
	g.mu.Lock()
	g.live[ss] = struct{}{}
	g.mu.Unlock()
	return ss
}

func (g *Gate) forget(ss *session) {
	g.mu.Lock()
	delete(g.live, ss)
	g.mu.Unlock()
}

// notAdmittedBy returns the admitted sessions that s would not admit.
// Those still before their decision are decided under s anyway. g.mu is
// held.
func (g *Gate) notAdmittedBy(s *Settings) []*session {
	var out []*session
	for ss := range g.live {
		if ss.decided && ss.admittedBy(s.Rules) != policy.Admitted {
			out = append(out, ss)
		}
	}
	return out
}

// admittedBy decides an admitted session again under r, as it was decided:
// on its server name on a passthrough gate, else on its first message and
// its certificate's identity (if any). g.mu is held.
func (ss *session) admittedBy(r *policy.Rules) policy.Reason {
	if ss.mode == TLSPassthrough {
		return r.CheckSNI(ss.peer.Addr(), ss.sni)
	}
	return r.CheckAs(ss.peer.Addr(), ss.ids, ss.tag, ss.flags, []byte(ss.name))
}

// snapshot returns the live sessions.
func (g *Gate) snapshot() []*session {
	g.mu.Lock()
	defer g.mu.Unlock()
	live := make([]*session, 0, len(g.live))
	for ss := range g.live {
		live = append(live, ss)
	}
	return live
}

// drain waits for live connections for DrainTimeout, then stops every
// connection that is left, whatever it is doing, and waits for them to end.
// Connections still before their decision are denied with reason shutdown
// from then on (decide, conn.go).
func (g *Gate) drain() {
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	t := time.NewTimer(g.settings.Load().DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	// Stopped outside g.mu: a session's end takes g.mu to forget it,
	// and a Forwarder may end a pair from within Stop.
	for _, ss := range g.snapshot() {
		ss.stop(policy.Shutdown)
	}
	<-done
}

// dialing records how to end the dial about to start; false if the session
// was stopped first.
func (ss *session) dialing(cancel context.CancelFunc) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.why != policy.Admitted {
		return false
	}
	ss.cancel = cancel
	return true
}

// attach records the upstream leg; false if the session was stopped first.
func (ss *session) attach(up *net.TCPConn) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.cancel = nil
	if ss.why != policy.Admitted {
		return false
	}
	ss.upstream = up
	ss.watching = true
	return true
}

// watched records the handshake's outcome and the node's final name.
func (ss *session) watched(o wire.Outcome, node []byte) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.watching = false
	ss.outcome = o
	if node != nil {
		ss.node = string(node)
	}
}

// forward starts forwarding the pair with start unless the session was
// stopped first (errStopped: then the stopper closes both sockets); path
// names how. It holds ss.mu across start, so a stop either comes first and
// closes the sockets itself, or comes after and goes through the Handle:
// the sockets are never closed under the forwarder's feet.
func (ss *session) forward(path string, start func() (forward.Handle, error)) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.why != policy.Admitted {
		return errStopped
	}
	h, err := start()
	if err != nil {
		return err
	}
	ss.h, ss.path = h, path
	return nil
}

// stop ends the session for reason r: through the forwarder once it has the
// pair, else by ending the dial in progress and closing the sockets, which
// ends the read, the watch or the write in progress. It reports false if
// the session was stopped already.
func (ss *session) stop(r policy.Reason) bool {
	ss.mu.Lock()
	if ss.why != policy.Admitted {
		ss.mu.Unlock()
		return false
	}
	ss.why = r
	h, up, cancel := ss.h, ss.upstream, ss.cancel
	ss.mu.Unlock()
	if h != nil {
		h.Stop()
		return true
	}
	if cancel != nil {
		cancel()
	}
	_ = ss.client.Close()
	if up != nil {
		_ = up.Close()
	}
	return true
}

// ended returns why the session was stopped (Admitted if it was not) and
// its handshake's outcome.
func (ss *session) ended() (policy.Reason, wire.Outcome) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.why, ss.outcome
}

// pather is a Handle that knows the path its own pair is on: on the kernel
// path a pair the kernel cannot take, or takes back, is forwarded in user
// space.
type pather interface{ Path() string }

// forwardPath returns how the pair is forwarded, or was once it has ended;
// "" if the forwarder never got it.
func (ss *session) forwardPath() string {
	ss.mu.Lock()
	h, path := ss.h, ss.path
	ss.mu.Unlock()
	if p, ok := h.(pather); ok {
		return p.Path()
	}
	return path
}

func (ss *session) reason() policy.Reason {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.why
}

// Byte counts for long-lived connections. Nothing in the gate sees the
// bytes as they pass (the forwarder moves them between the raw sockets),
// and an Erlang distribution link can live for months: a counter that
// moved only when it ends would be useless. So once per summary period the
// gate asks each live pair's Handle how far it has got (Progress: the
// forwarder's own counts, or the kernel's on the kernel path) and reports
// what moved since the last look. When the connection ends, the exact
// totals from the forwarder settle the account: what was reported already
// is subtracted, never below zero.

// progress is what has been reported for one session so far; guarded by the
// session's mu.
type progress struct{ in, out int64 }

// reportProgress reports the bytes live sessions moved since the last call.
// A terminated connection's counts are plaintext, the node's side
// (design.md, TLS distribution): its pair's own counts, which move with
// every read, plus what the handshake moved; the client socket's counters
// would count TLS records.
func (g *Gate) reportProgress() {
	for _, ss := range g.snapshot() {
		ss.mu.Lock()
		h := ss.h
		forwarding := h != nil && ss.why == policy.Admitted
		ss.mu.Unlock()
		if !forwarding {
			continue
		}
		in, out := h.Progress()
		in += ss.preIn.Load()
		out += ss.preOut.Load()
		ss.mu.Lock()
		if ss.h == nil || ss.why != policy.Admitted {
			ss.mu.Unlock()
			continue
		}
		dIn, dOut := max(in-ss.reported.in, 0), max(out-ss.reported.out, 0)
		ss.reported.in += dIn
		ss.reported.out += dOut
		ss.mu.Unlock()
		if dIn > 0 || dOut > 0 {
			g.obs.Moved(dIn, dOut)
		}
	}
}

// settle returns what remains to report once the session's exact totals are
// known, and marks them reported.
func (ss *session) settle(in, out int64) (dIn, dOut int64) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	dIn, dOut = max(in-ss.reported.in, 0), max(out-ss.reported.out, 0)
	ss.reported.in += dIn
	ss.reported.out += dOut
	return dIn, dOut
}

// nodeName returns the node's name as logged.
func (ss *session) nodeName() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.node
}
