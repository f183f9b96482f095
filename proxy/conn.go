package proxy

// One connection's life, from the checks made at accept (accept.go) to its
// closed line, in the order of design.md's "The life of a connection":
// serve reads and decides (steps 5–8) on the connection's own goroutine,
// writes the first message upstream and watches the handshake to its
// outcome (step 9, watch.go), and hands the pair to the forwarder (step
// 10); closed ends it when the forwarder is done, or at once after any
// outcome but ok. Every way out before the dial succeeds is a denial
// (deny): the client is closed without a byte written and nothing is sent
// upstream. A terminating gate first runs terminate (the first flight, the
// TLS handshake, the identity) and then the same steps inside TLS; a
// passthrough gate runs passthrough instead (the first flight and the
// server name decide; no first message, no watch).

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/distgate/distgate/forward"
	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/tlshello"
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
	// refused is why the forwarder would not take the pair (or why the
	// first flight could not be written upstream), logged on the closed
	// line; nil for a pair that was forwarded.
	refused error
	// tc is the TLS session with the client on a terminating gate, once
	// its handshake is done; nil otherwise. The client is then read and
	// written through tc, and client is the socket under it.
	tc *tls.Conn
	// ids are the verified client certificate's names (identities), nil
	// without one.
	ids []string
	// tls is what the connection's lines say about TLS.
	tls tlsFields
}

// side returns what the client's handshake frames are read from and
// written to, and their length header: the TLS session (4-byte frames,
// §12.1) or the socket (2-byte frames).
func (c *conn) side() (net.Conn, int) {
	if c.tc != nil {
		return c.tc, wire.HeaderTLS
	}
	return c.client, wire.HeaderTCP
}

// serve is the life of c up to the forwarder. It owns c's admission until
// the forwarder takes the connection over, and gives it back on every way
// out before that.
func (g *Gate) serve(c *conn) {
	defer c.adm.release()

	// Everything up to the first message (a TLS first flight and
	// handshake included) is bounded by the handshake timeout, and the
	// whole handshake by the setup timeout.
	first := c.start.Add(min(c.s.handshakeTimeout(), c.s.setupTimeout()))
	switch c.s.TLS {
	case TLSPassthrough:
		g.passthrough(c, first)
		return
	case TLSTerminate:
		if !g.terminate(c, first) {
			return
		}
	}

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
	side, hdr := c.side()
	frame, err := readFrame(side, hdr, buf, first)
	c.adm.handshakeDone()
	if err != nil {
		r, err := g.readFailed(c, policy.BadHandshake, err)
		g.deny(c, r, nil, err)
		return
	}
	h, err := wire.Parse(frame)
	if err != nil {
		g.deny(c, policy.BadHandshake, nil, err)
		return
	}

	// 6, 7. Capability flags and the node name (and the identity that
	// opens it), against the settings in force now; admitted, the
	// connection counts as a live session.
	if r := g.decide(c, &h); r != policy.Admitted {
		g.deny(c, r, &h, nil)
		return
	}

	// 8. The upstream.
	up, ok := g.connect(c, &h)
	if !ok {
		return
	}

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
	// the watch read past the handshake.
	g.forward(c, up, wr.toUpstream, wr.toClient)
}

// terminate is a terminating gate's part before the first message: the
// first flight must be a ClientHello (bad_handshake), the TLS handshake
// must succeed (tls_failed), and the verified certificate must be one that
// an allow entry listing the source admits (identity_not_allowed). It
// reports false if c was denied. Nothing is dialled before.
func (g *Gate) terminate(c *conn, deadline time.Time) bool {
	hb := helloPool.Get().(*[tlshello.MaxSize]byte)
	hello, err := readHello(c.client, hb, deadline)
	if err != nil {
		helloPool.Put(hb)
		r, err := g.readFailed(c, policy.BadHandshake, err)
		g.deny(c, r, nil, err)
		return false
	}
	tc, err := handshakeTLS(c.client, hello, c.s.TLSConfig, deadline)
	helloPool.Put(hb) // handshakeTLS took a copy
	if err != nil {
		r, err := g.readFailed(c, policy.TLSFailed, err)
		g.deny(c, r, nil, err)
		return false
	}
	c.tc = tc
	c.ids = identities(tc.ConnectionState())
	if len(c.ids) > 0 {
		c.tls.identity = c.ids[0] // the CN, or the first SAN without one
	}
	// Right after the handshake, before the first message: a certificate
	// no entry admits gets no further. decide checks it again with the
	// name, under the settings in force then.
	if r := g.settings.Load().Rules.CheckIdentity(c.peer.Addr(), c.ids); r != policy.Admitted {
		g.deny(c, r, nil, nil)
		return false
	}
	return true
}

// passthrough is the life of c on a passthrough gate up to the forwarder:
// the first flight must be a ClientHello, read whole; the source (still
// listed after a reload) and the server name decide; the records read go
// to the node first, then everything is forwarded unchanged. There is no
// first message to read and no handshake to watch: both are inside TLS.
func (g *Gate) passthrough(c *conn, deadline time.Time) {
	hb := helloPool.Get().(*[tlshello.MaxSize]byte)
	defer helloPool.Put(hb)
	hello, err := readHello(c.client, hb, deadline)
	c.adm.handshakeDone()
	if err != nil {
		r, err := g.readFailed(c, policy.BadHandshake, err)
		g.deny(c, r, nil, err)
		return
	}
	ch, err := tlshello.Parse(hello)
	if err != nil {
		g.deny(c, policy.BadHandshake, nil, err)
		return
	}
	c.tls.sni = ch.ServerName
	if r := g.decideSNI(c, ch.ServerName); r != policy.Admitted {
		g.deny(c, r, nil, nil)
		return
	}
	up, ok := g.connect(c, nil)
	if !ok {
		return
	}
	_ = up.SetWriteDeadline(c.start.Add(c.s.setupTimeout()))
	n, err := up.Write(hello)
	c.ss.preIn.Add(int64(n))
	if err == nil {
		err = up.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		_ = c.client.Close()
		_ = up.Close()
		c.refused = err
		g.closed(c, forward.Result{})
		return
	}
	g.forward(c, up, nil, nil)
}

// readFailed turns the error of a read before the decision into its
// reason: the reason the gate cut the connection for (a ban, the drain;
// then no error), handshake_timeout for a deadline, else r.
func (g *Gate) readFailed(c *conn, r policy.Reason, err error) (policy.Reason, error) {
	if cut := c.ss.reason(); cut != policy.Admitted {
		return cut, nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return policy.HandshakeTimeout, err
	}
	return r, err
}

// connect dials the upstream for an admitted connection (step 8) and
// attaches it to the session, then counts and logs the admission. On
// failure it denies c and reports false. h is nil on a passthrough gate.
func (g *Gate) connect(c *conn, h *wire.Handshake) (*net.TCPConn, bool) {
	up, err := g.dial(c)
	if err != nil {
		r := policy.UpstreamUnreachable
		if cut := c.ss.reason(); cut != policy.Admitted {
			r, err = cut, nil // stopped while dialling
		}
		g.deny(c, r, h, err)
		return nil, false
	}
	if !c.ss.attach(up) { // a reload, a ban or the drain stopped it while dialling
		_ = up.Close()
		g.deny(c, c.ss.reason(), h, nil)
		return nil, false
	}
	g.obs.Decided(policy.Admitted, time.Since(c.start))
	g.obs.Active(1)
	g.logAdmitted(c, h)
	return up, true
}

// forward hands an admitted connection to its forwarder (step 10), with
// the bytes read past the handshake from each side, and sees to its end.
// From here the forwarder owns both sockets, and the connection's
// admission goes with the pair: done gives it back, after the closed line.
// A terminated connection is forwarded in user space between its TLS
// session and the node's socket (tlsPair, path "tls"); any other pair goes
// to the gate's forwarder.
func (g *Gate) forward(c *conn, up *net.TCPConn, toUp, toClient []byte) {
	adm := c.adm.move()
	end := func(res forward.Result) {
		defer adm.release()
		g.closed(c, res)
	}
	var err error
	if c.tc != nil {
		p := &tlsPair{tc: c.tc, client: c.client, up: up, toUp: toUp, toClient: toClient}
		err = c.ss.forward(tlsPath, func() (forward.Handle, error) {
			p.start(end)
			return p, nil
		})
	} else {
		p := forward.Pair{Client: c.client, Upstream: up, ToUpstream: toUp, ToClient: toClient}
		err = c.ss.forward(g.fwd.Path(), func() (forward.Handle, error) { return g.fwd.Start(p, end) })
	}
	if err != nil {
		// Not started: stopped first (the stopper closed both sockets) or
		// refused (the forwarder closed them). Either way it ends here.
		if !errors.Is(err, errStopped) {
			c.refused = err
		}
		end(forward.Result{})
	}
}

// decide checks the capability flags and the node name (steps 6 and 7),
// with the client certificate's identity on a terminating gate, against
// the settings in force now and, if they pass, marks c's session admitted.
// Both happen under g.mu, so an Update either sees this session admitted or
// this decision sees the new settings.
func (g *Gate) decide(c *conn, h *wire.Handshake) policy.Reason {
	g.mu.Lock()
	defer g.mu.Unlock()
	c.s = g.settings.Load()
	r := c.s.Rules.CheckAs(c.peer.Addr(), c.ids, h.Tag, h.Flags, h.Name)
	if r == policy.Admitted {
		r = g.admitted(c)
	}
	if r != policy.Admitted {
		return r
	}
	ss := c.ss
	ss.tag, ss.flags, ss.name = h.Tag, h.Flags, string(h.Name)
	ss.mu.Lock()
	ss.node = ss.name
	ss.mu.Unlock()
	return policy.Admitted
}

// decideSNI is decide for a passthrough gate: the source and the server
// name, against the settings in force now.
func (g *Gate) decideSNI(c *conn, sni string) policy.Reason {
	g.mu.Lock()
	defer g.mu.Unlock()
	c.s = g.settings.Load()
	r := c.s.Rules.CheckSNI(c.peer.Addr(), sni)
	if r == policy.Admitted {
		r = g.admitted(c)
	}
	return r
}

// admitted marks c's session admitted once its rules have passed, unless
// the drain has run or a ban or the drain came while it was being read.
// g.mu is held.
func (g *Gate) admitted(c *conn) policy.Reason {
	if g.stopped {
		return policy.Shutdown // nothing would stop it once the drain has run
	}
	if cut := c.ss.reason(); cut != policy.Admitted {
		return cut
	}
	ss := c.ss
	ss.decided, ss.mode, ss.ids, ss.sni = true, c.s.TLS, c.ids, c.tls.sni
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
	g.denied(c.peer, r, c.start, h, err, &c.tls)
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
