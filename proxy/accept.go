package proxy

// The accept loop, and the checks made on the peer address alone (steps 1–4
// of the life of a connection in design.md): allowlist, concurrency caps,
// rate limit, handshake cap. They run right in the loop, on what accept
// returned, so a denied connection costs one accept and one close and no
// goroutine. A connection that passes gets an admission and its own
// goroutine, which carries on in conn.go.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/distgate/distgate/policy"
)

// acceptLoop accepts until the acceptor is closed (ctx ended) or fails for
// good, and returns that error.
func (g *Gate) acceptLoop(ctx context.Context, a acceptor) error {
	bo := backoff{ctx: ctx, g: g}
	for {
		p, err := a.accept()
		if errors.Is(err, errNotTCP) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return err
			}
			bo.wait(err)
			continue
		}
		g.take(ctx, &p, &bo)
	}
}

// take decides on one accepted connection with the checks that need no
// read and, if it passes them, starts its life (serve, conn.go) on a
// goroutine of its own, which takes the admission over.
func (g *Gate) take(ctx context.Context, p *pending, bo *backoff) {
	start := time.Now()
	s := g.settings.Load()
	adm, r := g.admit(p.peer.Addr(), s, start)
	if r != policy.Admitted {
		p.drop(s.Reset)
		g.denied(p.peer, r, start, nil, nil, &tlsFields{mode: s.TLS})
		bo.reset()
		return
	}
	defer adm.release() // given back here unless the goroutine below took it

	// A bare socket becomes a *net.TCPConn here, which takes one more
	// descriptor: when there is none, hold the connection (it is no worse
	// off than in the listen backlog) and back off.
	c, err := p.conn()
	for err != nil && ctx.Err() == nil && (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) {
		bo.wait(err)
		c, err = p.conn()
	}
	if err != nil {
		p.drop(true)
		g.log().Warn().Err(err).Msg("accept")
		return
	}
	bo.reset()
	// Tracked from here on, so that a ban or the end of the drain can cut
	// it whatever it is doing.
	ss := g.track(c, p.peer, start)
	adm.live = ss
	go g.serve(&conn{client: c, peer: p.peer, start: start, s: s, adm: adm.move(), ss: ss, tls: tlsFields{mode: s.TLS}})
}

// admit runs steps 1–4 on src under s: the allowlist and the bans, the
// gate's and the source's concurrency caps, the source's rate, and the
// handshake cap shared by all gates. The ban table is asked only about
// allowed sources, so a flood from elsewhere never touches it. Slots are
// taken here and nowhere else; on Admitted the returned admission holds
// them, otherwise nothing is held.
func (g *Gate) admit(src netip.Addr, s *Settings, now time.Time) (admission, policy.Reason) {
	if !s.Rules.SourceAllowed(src) {
		return admission{}, policy.SourceNotAllowed
	}
	if g.bans.Banned(src, now) {
		return admission{}, policy.Banned
	}
	if r := g.conns.Acquire(src, s.MaxConns, s.MaxConnsPerSource); r != policy.Admitted {
		return admission{}, r
	}
	r := policy.Admitted
	if !g.limiter.Allow(src, now) {
		r = policy.RateLimited
	} else if !g.hs.Acquire(src) {
		r = policy.TooManyHandshakes
	}
	if r != policy.Admitted {
		g.conns.Release(src)
		return admission{}, r
	}
	g.wg.Add(1)
	return admission{g: g, src: src, handshake: true}, policy.Admitted
}

// admission is everything a connection holds of its gate, from the checks
// at accept to its end: its place in the gate's and its source's
// concurrency counts (policy.Conns), a handshake slot (policy.Handshakes)
// until its first message has been read, its entry among the live sessions,
// and its place among the connections Serve waits for.
//
// Only admit takes these. release gives back whatever is still held and
// forgets it, and move hands everything to a new owner, leaving the old one
// holding nothing; so each owner defers one release, and nothing is given
// back twice. An admission is never copied (only moved) and is used by one
// goroutine at a time.
type admission struct {
	g         *Gate // nil once given back (or moved away)
	src       netip.Addr
	handshake bool     // holds a handshake slot
	live      *session // registered in g.live (track)
}

// handshakeDone gives back the handshake slot, once the first message has
// been read (or could not be).
func (a *admission) handshakeDone() {
	if a.handshake {
		a.handshake = false
		a.g.hs.Release(a.src)
	}
}

// release gives back everything a still holds. It may be called any number
// of times.
func (a *admission) release() {
	g := a.g
	if g == nil {
		return
	}
	a.handshakeDone()
	if a.live != nil {
		g.forget(a.live)
	}
	g.conns.Release(a.src)
	*a = admission{}
	g.wg.Done()
}

// move returns what a holds and leaves a holding nothing.
func (a *admission) move() admission {
	m := *a
	*a = admission{}
	return m
}

// backoff paces the accept loop after an error such as EMFILE, ENFILE or
// ECONNABORTED, as net/http does, instead of spinning; the loop keeps
// serving once the error passes.
type backoff struct {
	ctx context.Context
	g   *Gate
	d   time.Duration
}

// wait logs err and sleeps for a delay that doubles from 5 ms to 1 s, or
// until the context ends.
func (b *backoff) wait(err error) {
	b.d = min(max(2*b.d, 5*time.Millisecond), time.Second)
	b.g.log().Warn().Err(err).Dur("retry_in", b.d).Msg("accept")
	select {
	case <-time.After(b.d):
	case <-b.ctx.Done():
	}
}

// reset starts the next error's backoff from the shortest delay.
func (b *backoff) reset() { b.d = 0 }
