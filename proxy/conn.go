package proxy

// One connection's life, from the checks made at accept (accept.go) to its
// closed line, in the order of design.md's "The life of a connection":
// serve reads and decides (steps 5–8) on the connection's own goroutine,
// writes the first message upstream and watches the handshake to its
// outcome (step 9, watch.go), and hands the pair to the forwarder (step
// 10); closed ends it when the forwarder is done, or at once after any
// outcome but ok. Every way out before the dial succeeds is a denial
// (deny): the client is closed without a byte written and nothing is sent
// upstream.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/distgate/distgate/forward"
	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/wire"
)

// conn is one connection that passed the checks made at accept.
type conn struct {
	client *net.TCPConn
	peer   netip.AddrPort // the client's address, IPv4-mapped IPv6 unmapped
	start  time.Time      // accept: the handshake deadlines and every dur count from here
	s      *Settings      // the settings it was accepted under, then those it was decided under
	adm    admission      // what it holds of the gate; its owner gives it back
	ss     *session       // its entry among the gate's live connections, from accept
	// refused is why the forwarder would not take the pair, logged on
	// the closed line; nil for a pair that was forwarded.
	refused error
}

// serve is the life of c up to the forwarder. It owns c's admission until
// the forwarder takes the connection over, and gives it back on every way
// out before that.
func (g *Gate) serve(c *conn) {
	defer c.adm.release()

	// 5. The first message: exactly its bytes, under the handshake
	// timeout (and within the setup timeout, which bounds the whole
	// handshake), and never a byte past it (handshake.go). The buffer goes
	// back to the pool once the message is written upstream, so an idle
	// admitted connection does not hold it; frame and h.Name alias it, so
	// neither is used after that.
	buf := getFrameBuf()
	defer func() {
		if buf != nil {
			putFrameBuf(buf)
		}
	}()
	first := min(c.s.handshakeTimeout(), c.s.setupTimeout())
	frame, err := readFrame(c.client, buf, c.start.Add(first))
	c.adm.handshakeDone()
	if err != nil {
		r := policy.BadHandshake
		if cut := c.ss.reason(); cut != policy.Admitted {
			r, err = cut, nil // a ban or the drain closed it
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			r = policy.HandshakeTimeout
		}
		g.deny(c, r, nil, err)
		return
	}
	h, err := wire.Parse(frame)
	if err != nil {
		g.deny(c, policy.BadHandshake, nil, err)
		return
	}

	// 6, 7. Capability flags and the node name, against the settings in
	// force now; admitted, the connection counts as a live session.
	if r := g.decide(c, &h); r != policy.Admitted {
		g.deny(c, r, &h, nil)
		return
	}

	// 8. The upstream.
	up, err := g.dial(c)
	if err != nil {
		r := policy.UpstreamUnreachable
		if cut := c.ss.reason(); cut != policy.Admitted {
			r, err = cut, nil // stopped while dialling
		}
		g.deny(c, r, &h, err)
		return
	}
	if !c.ss.attach(up) { // a reload, a ban or the drain stopped it while dialling
		_ = up.Close()
		g.deny(c, c.ss.reason(), &h, nil)
		return
	}
	g.obs.Decided(policy.Admitted, time.Since(c.start))
	g.obs.Active(1)
	g.logAdmitted(c, &h)

	// 9. The message read is the first thing the node sees; nothing else
	// was read, so nothing else is owed. Then the rest of the handshake,
	// frame by frame both ways, to its outcome (watch.go), all of it
	// within the setup timeout.
	w := wire.NewWatch(h, c.s.Cookie)
	setup := c.start.Add(c.s.setupTimeout())
	_ = up.SetWriteDeadline(setup)
	n, err := up.Write(frame)
	c.ss.preIn.Add(int64(n))
	putFrameBuf(buf)
	buf = nil
	var wr watchResult
	if err != nil {
		_ = c.client.Close()
		_ = up.Close()
		wr.step = wire.Step{Outcome: wire.OutcomeAborted, Err: err}
	} else {
		wr = g.watch(c, up, w, setup)
	}
	g.watched(c, wr)
	if wr.step.Outcome != wire.OutcomeOK {
		g.closed(c, forward.Result{}) // the watch closed both sides
		return
	}

	// 10. Forward both ways until both sides are done, starting with what
	// the watch read past the handshake. From here the forwarder owns both
	// sockets, and the connection's admission goes with the pair: done
	// gives it back, after the closed line.
	adm := c.adm.move()
	end := func(res forward.Result) {
		defer adm.release()
		g.closed(c, res)
	}
	p := forward.Pair{Client: c.client, Upstream: up, ToUpstream: wr.toUpstream, ToClient: wr.toClient}
	if err := c.ss.forward(g.fwd, p, end); err != nil {
		// Not started: stopped first (the stopper closed both sockets) or
		// refused (the forwarder closed them). Either way it ends here.
		if !errors.Is(err, errStopped) {
			c.refused = err
		}
		end(forward.Result{})
	}
}

// decide checks the capability flags and the node name (steps 6 and 7)
// against the settings in force now and, if they pass, marks c's session
// admitted. Both happen under g.mu, so an Update either sees this session
// admitted or this decision sees the new settings.
func (g *Gate) decide(c *conn, h *wire.Handshake) policy.Reason {
	g.mu.Lock()
	defer g.mu.Unlock()
	c.s = g.settings.Load()
	r := c.s.Rules.Check(c.peer.Addr(), h.Tag, h.Flags, h.Name)
	if r == policy.Admitted && g.stopped {
		r = policy.Shutdown // nothing would stop it once the drain has run
	}
	if r != policy.Admitted {
		return r
	}
	if cut := c.ss.reason(); cut != policy.Admitted {
		return cut // a ban or the drain came while it was being read
	}
	ss := c.ss
	ss.decided, ss.tag, ss.flags, ss.name = true, h.Tag, h.Flags, string(h.Name)
	ss.mu.Lock()
	ss.node = ss.name
	ss.mu.Unlock()
	return policy.Admitted
}

// dial connects to the upstream under the dial timeout; stopping the
// session ends the dial at once.
func (g *Gate) dial(c *conn) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.s.dialTimeout())
	defer cancel()
	if !c.ss.dialing(cancel) {
		return nil, errStopped
	}
	var nc net.Conn
	var err error
	if g.dialer != nil {
		nc, err = g.dialer(ctx, g.upstream)
	} else {
		// No keep-alive on the node's leg: it is loopback (check warns
		// otherwise), and the distribution's own ticks find a dead node.
		d := net.Dialer{KeepAlive: -1}
		nc, err = d.DialContext(ctx, "tcp", g.upstream)
	}
	if err != nil {
		return nil, err
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		_ = nc.Close()
		return nil, errors.New("upstream dialer returned a non-TCP connection")
	}
	return tc, nil
}

// deny closes c without writing a byte (with RST if the settings say so),
// counts the decision and logs it subject to sampling, and counts it
// towards a ban of the source if it is a failure (bans.go). h is nil when
// nothing was decoded; err, if any, says what went wrong reading or
// dialling.
func (g *Gate) deny(c *conn, r policy.Reason, h *wire.Handshake, err error) {
	if c.s.Reset {
		_ = c.client.SetLinger(0) // close sends RST
	}
	_ = c.client.Close()
	g.denied(c.peer, r, c.start, h, err)
	if banFailure(r) {
		g.fail(c.ss)
	}
}

// watched records the handshake's outcome: on the session, in the
// handshake line and the metrics, and as a failure of the source if the
// cookie was wrong.
func (g *Gate) watched(c *conn, wr watchResult) {
	o := wr.step.Outcome
	c.ss.watched(o, wr.named)
	g.obs.Handshake(o)
	g.logOutcome(c, wr)
	if o == wire.OutcomeAuthFailed {
		g.fail(c.ss)
	}
}

// closed ends an admitted connection: the bytes it moved that the periodic
// count has not reported yet, one less active, and the closed line. res
// counts what the forwarder moved; what was written before it (the first
// message, the handshake) is added here. Its caller gives the admission
// back afterwards.
func (g *Gate) closed(c *conn, res forward.Result) {
	res.In += c.ss.preIn.Load()
	res.Out += c.ss.preOut.Load()
	g.obs.Moved(c.ss.settle(res.In, res.Out))
	r, o := c.ss.ended()
	g.obs.Closed(r, o)
	g.obs.Active(-1)
	g.logClosed(c, res, r, o)
}
