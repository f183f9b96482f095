package proxy

// Live connections: each admitted connection is a session in g.live from
// its decision to its end, so that a reload can revoke it, the drain can
// stop it, and its bytes can be counted while it lasts.

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/distgate/distgate/forward"
	"github.com/distgate/distgate/policy"
)

// session is one admitted connection, tracked so a reload or a drain can
// stop it.
type session struct {
	client *net.TCPConn
	src    netip.Addr
	tag    byte
	flags  uint64
	node   string

	mu       sync.Mutex
	upstream *net.TCPConn   // set once dialled
	h        forward.Handle // set once the forwarder has the pair; it owns both sockets then
	why      policy.Reason  // why it was stopped; Admitted while it runs
	reported progress       // bytes already handed to the Observer
}

// errStopped: the session was stopped before the forwarder got the pair.
var errStopped = errors.New("stopped before forwarding")

// Live returns the number of admitted connections currently live.
func (g *Gate) Live() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.live)
}

func (g *Gate) forget(ss *session) {
	g.mu.Lock()
	delete(g.live, ss)
	g.mu.Unlock()
}

// notAdmittedBy returns the live sessions that s would not admit. g.mu is
// held.
func (g *Gate) notAdmittedBy(s *Settings) []*session {
	var out []*session
	for ss := range g.live {
		if s.Rules.Check(ss.src, ss.tag, ss.flags, []byte(ss.node)) != policy.Admitted {
			out = append(out, ss)
		}
	}
	return out
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

// drain waits for live connections for DrainTimeout, then stops them and
// waits for them to end. Connections still before their decision are
// denied with reason shutdown from then on (decide, conn.go).
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

// attach records the upstream leg; false if the session was stopped first.
func (ss *session) attach(up *net.TCPConn) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.why != policy.Admitted {
		return false
	}
	ss.upstream = up
	return true
}

// forward hands p to f unless the session was stopped first (errStopped:
// then the stopper closes both sockets). It holds ss.mu across Start, so a
// stop either comes first and closes the sockets itself, or comes after
// and goes through the Handle: the sockets are never closed under the
// forwarder's feet.
func (ss *session) forward(f forward.Forwarder, p forward.Pair, done func(forward.Result)) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.why != policy.Admitted {
		return errStopped
	}
	h, err := f.Start(p, done)
	if err != nil {
		return err
	}
	ss.h = h
	return nil
}

// stop ends the session for reason r: through the forwarder once it has the
// pair, else by closing the sockets, which ends the dial or the write in
// progress. It reports false if the session was stopped already.
func (ss *session) stop(r policy.Reason) bool {
	ss.mu.Lock()
	if ss.why != policy.Admitted {
		ss.mu.Unlock()
		return false
	}
	ss.why = r
	h, up := ss.h, ss.upstream
	ss.mu.Unlock()
	if h != nil {
		h.Stop()
		return true
	}
	_ = ss.client.Close()
	if up != nil {
		_ = up.Close()
	}
	return true
}

func (ss *session) reason() policy.Reason {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.why
}

// Byte counts for long-lived connections. Nothing in the gate sees the
// bytes as they pass (the forwarder moves them between the raw sockets, and
// a Forwarder's own counts may move only when a direction ends); an Erlang
// distribution link can live for months, though, and a counter that moves
// only when it ends would be useless. So once per summary period the gate
// reads each live client socket's TCP counters from the kernel (TCP_INFO:
// bytes received from the client, bytes the client acknowledged), which
// works whatever the forwarding path, and reports what moved since the last
// look. When the connection ends, the exact totals from the forwarder
// settle the account: what was reported already is subtracted, never below
// zero.

// progress is what has been reported for one session so far; guarded by the
// session's mu.
type progress struct{ in, out int64 }

// reportProgress reports the bytes live sessions moved since the last call.
func (g *Gate) reportProgress() {
	for _, ss := range g.snapshot() {
		in, out, ok := tcpCounters(ss.client)
		if !ok {
			continue
		}
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
