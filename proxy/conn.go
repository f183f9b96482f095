package proxy

// One connection's life, from the checks made at accept (accept.go) to its
// closed line, in the order of design.md's "The life of a connection":
// serve reads and decides (steps 5–8) on the connection's own goroutine,
// writes the first message upstream (step 9) and hands the pair to the
// forwarder (step 10); closed ends it when the forwarder is done. Every way
// out before that is a denial (deny): the client is closed without a byte
// written and nothing is sent upstream.

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
	start  time.Time      // accept: the handshake deadline and every dur count from here
	s      *Settings      // the settings it was accepted under, then those it was decided under
	adm    admission      // what it holds of the gate; its owner gives it back
	ss     *session       // set once it is admitted and live
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
	// timeout, and never a byte past it (handshake.go). The buffer goes
	// back to the pool once the message is written upstream, so an idle
	// admitted connection does not hold it; frame and h.Name alias it, so
	// neither is used after that.
	buf := getFrameBuf()
	defer func() {
		if buf != nil {
			putFrameBuf(buf)
		}
	}()
	frame, err := readFrame(c.client, buf, c.start.Add(c.s.handshakeTimeout()))
	c.adm.handshakeDone()
	if err != nil {
		r := policy.BadHandshake
		if errors.Is(err, os.ErrDeadlineExceeded) {
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
	// force now; admitted, the connection becomes a live session.
	if r := g.decide(c, &h); r != policy.Admitted {
		g.deny(c, r, &h, nil)
		return
	}

	// 8. The upstream.
	up, err := g.dial(c.s)
	if err != nil {
		g.deny(c, policy.UpstreamUnreachable, &h, err)
		return
	}
	if !c.ss.attach(up) { // a reload or the drain stopped it while dialling
		_ = up.Close()
		g.deny(c, c.ss.reason(), &h, nil)
		return
	}
	g.obs.Decided(policy.Admitted, time.Since(c.start))
	g.obs.Active(1)
	g.logAdmitted(c, &h)

	// 9. The message read is the first thing the node sees; nothing else
	// was read, so nothing else is owed.
	n, err := up.Write(frame)
	putFrameBuf(buf)
	buf = nil
	if err != nil {
		_ = c.client.Close()
		_ = up.Close()
		g.closed(c, forward.Result{})
		return
	}

	// The handshake watch goes here: it reads the rest of the handshake
	// in both directions, frame by frame, until the node's 'a' has been
	// forwarded, and hands on in the Pair whatever a read returned past it.

	// 10. Forward both ways until both sides are done. From here the
	// forwarder owns both sockets, and the connection's admission goes
	// with the pair: done gives it back, after the closed line.
	sent := int64(n)
	adm := c.adm.move()
	end := func(res forward.Result) {
		defer adm.release()
		res.In += sent
		g.closed(c, res)
	}
	if err := c.ss.forward(g.fwd, forward.Pair{Client: c.client, Upstream: up}, end); err != nil {
		// Not started: stopped first (the stopper closed both sockets) or
		// refused (the forwarder closed them). Either way it ends here.
		if !errors.Is(err, errStopped) {
			c.refused = err
		}
		end(forward.Result{})
	}
}

// decide checks the capability flags and the node name (steps 6 and 7)
// against the settings in force now and, if they pass, registers c as a live
// session. Both happen under g.mu, so an Update either sees this session or
// this decision sees the new settings.
func (g *Gate) decide(c *conn, h *wire.Handshake) policy.Reason {
	g.mu.Lock()
	defer g.mu.Unlock()
	c.s = g.settings.Load()
	src := c.peer.Addr()
	r := c.s.Rules.Check(src, h.Tag, h.Flags, h.Name)
	if r == policy.Admitted && g.stopped {
		r = policy.Shutdown // nothing would stop it once the drain has run
	}
	if r != policy.Admitted {
		return r
	}
	c.ss = &session{client: c.client, src: src, tag: h.Tag, flags: h.Flags, node: string(h.Name)}
	g.live[c.ss] = struct{}{}
	c.adm.live = c.ss
	return policy.Admitted
}

// dial connects to the upstream under the dial timeout.
func (g *Gate) dial(s *Settings) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.dialTimeout())
	defer cancel()
	var c net.Conn
	var err error
	if g.dialer != nil {
		c, err = g.dialer(ctx, g.upstream)
	} else {
		// No keep-alive on the node's leg: it is loopback (check warns
		// otherwise), and the distribution's own ticks find a dead node.
		d := net.Dialer{KeepAlive: -1}
		c, err = d.DialContext(ctx, "tcp", g.upstream)
	}
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		_ = c.Close()
		return nil, errors.New("upstream dialer returned a non-TCP connection")
	}
	return tc, nil
}

// deny closes c without writing a byte (with RST if the settings say so),
// counts the decision and logs it subject to sampling. h is nil when
// nothing was decoded; err, if any, says what went wrong reading or
// dialling.
func (g *Gate) deny(c *conn, r policy.Reason, h *wire.Handshake, err error) {
	if c.s.Reset {
		_ = c.client.SetLinger(0) // close sends RST
	}
	_ = c.client.Close()
	g.denied(c.peer, r, c.start, h, err)
}

// closed ends an admitted connection: the bytes it moved that the periodic
// count has not reported yet, one less active, and the closed line. Its
// caller gives the admission back afterwards.
func (g *Gate) closed(c *conn, res forward.Result) {
	g.obs.Moved(c.ss.settle(res.In, res.Out))
	g.obs.Active(-1)
	g.logClosed(c, res)
}
