package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/wire"
)

// Gate guards one public distribution port in front of one upstream node.
// Create it with NewGate, run it with Serve, change its policy with Update.
// All methods are safe for concurrent use.
type Gate struct {
	name     string
	upstream string
	log      zerolog.Logger
	obs      Observer
	hs       *Handshakes

	// SummaryEvery is how often the denial-sampling summary is logged and the
	// limiter size reported. Zero means 10 s. Set before Serve.
	SummaryEvery time.Duration
	// Dial connects to the upstream. Nil means a net.Dialer with the
	// settings' dial timeout. It must return a *net.TCPConn to keep splice.
	Dial func(ctx context.Context, addr string) (net.Conn, error)

	settings atomic.Pointer[Settings]
	limiter  *policy.Limiter
	conns    policy.Conns
	sample   sampler

	ready   chan struct{} // closed once Serve accepts
	mu      sync.Mutex    // guards live and stopped, and serializes decisions against Update
	live    map[*session]struct{}
	stopped bool // the drain timeout has passed: admit no more
	wg      sync.WaitGroup
}

// NewGate returns a gate named name that splices admitted connections to
// upstream. hs is the handshake cap shared by all gates (nil: no cap); obs
// may be nil.
func NewGate(name, upstream string, s *Settings, log zerolog.Logger, obs Observer, hs *Handshakes) *Gate {
	if obs == nil {
		obs = nopObserver{}
	}
	g := &Gate{
		name:     name,
		upstream: upstream,
		log:      log.With().Str("gate", name).Logger(),
		obs:      obs,
		hs:       hs,
		limiter:  policy.NewLimiter(s.Rate, s.Burst, 0),
		live:     make(map[*session]struct{}),
		ready:    make(chan struct{}),
	}
	g.settings.Store(s)
	return g
}

// Name returns the gate's name.
func (g *Gate) Name() string { return g.name }

// Upstream returns the address admitted connections are spliced to.
func (g *Gate) Upstream() string { return g.upstream }

// Update applies new settings to new connections at once and closes every
// live connection that they would no longer admit (reason revoked). It
// returns the number of connections closed.
func (g *Gate) Update(s *Settings) int {
	g.limiter.Set(s.Rate, s.Burst)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.settings.Store(s)
	n := 0
	for ss := range g.live {
		if s.Rules.Check(ss.src, ss.tag, ss.flags, []byte(ss.node)) != policy.Admitted && ss.stop(policy.Revoked) {
			n++
		}
	}
	return n
}

// Ready is closed once Serve has taken over its listener and accepts. Serve
// is called at most once per Gate.
func (g *Gate) Ready() <-chan struct{} { return g.ready }

// Live returns the number of admitted connections currently spliced.
func (g *Gate) Live() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.live)
}

// Serve accepts connections on ln until ctx ends, then closes ln, lets live
// connections run for the settings' DrainTimeout, closes what remains, and
// returns once every goroutine it started has finished. ln must yield
// *net.TCPConn; on Linux a *net.TCPListener is taken over and accepted from
// with accept4 (see accept_linux.go). Serve returns nil after a shutdown, or
// the accept error that stopped it. It is called at most once per Gate.
func (g *Gate) Serve(ctx context.Context, ln net.Listener) error {
	a := newAcceptor(ln)
	stopAccept := context.AfterFunc(ctx, func() { _ = a.close() })
	defer stopAccept()
	close(g.ready)

	summaryDone := make(chan struct{})
	summaryStop := make(chan struct{})
	go g.summaries(summaryStop, summaryDone)

	err := g.acceptLoop(ctx, a)

	g.drain()
	close(summaryStop)
	<-summaryDone
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (g *Gate) acceptLoop(ctx context.Context, a acceptor) error {
	var backoff time.Duration
	// EMFILE, ENFILE, ECONNABORTED and the like: back off instead of
	// spinning, as net/http does, and keep serving once it passes.
	wait := func(err error) {
		backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
		g.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept")
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
	}
	for {
		p, err := a.accept()
		if errors.Is(err, errNotTCP) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return err
			}
			wait(err)
			continue
		}
		s, start, ok := g.accept(&p)
		if !ok {
			backoff = 0
			continue
		}
		// A bare socket becomes a *net.TCPConn here, which takes one more
		// descriptor: when there is none, hold the connection (it is no
		// worse off than in the listen backlog) and back off.
		for {
			_, err = p.conn()
			if err == nil || ctx.Err() != nil || !(errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) {
				break
			}
			wait(err)
		}
		if err != nil {
			g.hs.release(p.peer.Addr())
			g.conns.Release(p.peer.Addr())
			p.drop(true)
			g.log.Warn().Err(err).Msg("accept")
			continue
		}
		backoff = 0
		g.wg.Add(1)
		go g.handle(p.c, p.peer, s, start)
	}
}

// accept runs the checks that need no read (steps 1–4 of the design) right in
// the accept loop, on the peer address accept returned, so a denied
// connection costs one accept and one close and no goroutine. It reports
// whether the connection goes on to the handshake read, with the settings
// and the time it was decided under; it then holds a concurrency count and a
// handshake slot.
func (g *Gate) accept(p *pending) (*Settings, time.Time, bool) {
	start := time.Now()
	s := g.settings.Load()
	src := p.peer.Addr()
	r := policy.Admitted
	switch {
	case !s.Rules.SourceAllowed(src):
		r = policy.SourceNotAllowed
	default:
		if r = g.conns.Acquire(src, s.MaxConns, s.MaxConnsPerSource); r != policy.Admitted {
			break
		}
		if !g.limiter.Allow(src, start) {
			r = policy.RateLimited
		} else if !g.hs.acquire(src) {
			r = policy.TooManyHandshakes
		}
		if r != policy.Admitted {
			g.conns.Release(src)
		}
	}
	if r != policy.Admitted {
		p.drop(s.Reset)
		g.denied(p.peer, r, start, nil, nil)
		return nil, start, false
	}
	return s, start, true
}

// handle reads the first message, decides, dials and splices.
func (g *Gate) handle(c *net.TCPConn, peer netip.AddrPort, s *Settings, start time.Time) {
	defer g.wg.Done()
	src := peer.Addr()
	defer g.conns.Release(src)

	// The buffer goes back to the pool once the message is written
	// upstream: an idle admitted connection should not hold it. frame and
	// h.Name alias it, so neither is used after that.
	buf := getFrameBuf()
	defer func() {
		if buf != nil {
			putFrameBuf(buf)
		}
	}()
	frame, err := readFrame(c, buf, start.Add(s.handshakeTimeout()))
	g.hs.release(src)
	if err != nil {
		r := policy.BadHandshake
		if errors.Is(err, os.ErrDeadlineExceeded) {
			r = policy.HandshakeTimeout
		}
		g.deny(c, s, peer, r, start, nil, err)
		return
	}
	h, err := wire.Parse(frame)
	if err != nil {
		g.deny(c, s, peer, policy.BadHandshake, start, nil, err)
		return
	}

	// Decide and register under g.mu, so an Update either sees this session
	// or this decision sees the new settings.
	g.mu.Lock()
	s = g.settings.Load()
	r := s.Rules.Check(src, h.Tag, h.Flags, h.Name)
	if r == policy.Admitted && g.stopped {
		r = policy.Shutdown // nothing would stop it once the drain has run
	}
	if r != policy.Admitted {
		g.mu.Unlock()
		g.deny(c, s, peer, r, start, &h, nil)
		return
	}
	ss := &session{client: c, src: src, tag: h.Tag, flags: h.Flags, node: string(h.Name), start: start}
	g.live[ss] = struct{}{}
	g.mu.Unlock()
	defer g.forget(ss)

	up, err := g.dial(s)
	if err != nil {
		g.deny(c, s, peer, policy.UpstreamUnreachable, start, &h, err)
		return
	}
	if !ss.attach(up) { // a reload or the drain stopped it while dialling
		_ = up.Close()
		g.deny(c, s, peer, ss.reason(), start, &h, nil)
		return
	}
	g.obs.Decided(policy.Admitted, time.Since(start))
	g.obs.Active(1)
	logHandshake(withRemote(g.log.Info(), peer), &h).Str("upstream", g.upstream).Msg("admitted")
	// The message read is the first thing the node sees; nothing else was
	// read, so nothing else is owed.
	var in, out int64
	n, err := up.Write(frame)
	putFrameBuf(buf)
	buf = nil
	if err == nil {
		in = int64(n)
		var n2 int64
		n2, out = pipe(c, up)
		in += n2
	} else {
		_ = c.Close()
		_ = up.Close()
	}
	g.obs.Moved(ss.settle(in, out))
	g.obs.Active(-1)
	ev := withRemote(g.log.Info(), peer).Str("node", ss.node).Str("upstream", g.upstream).
		Int64("bytes_in", in).Int64("bytes_out", out).Dur("dur", time.Since(start))
	if r := ss.reason(); r != policy.Admitted {
		ev = ev.Str("reason", r.String())
	}
	ev.Msg("closed")
}

// dial connects to the upstream under the dial timeout.
func (g *Gate) dial(s *Settings) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.dialTimeout())
	defer cancel()
	var c net.Conn
	var err error
	if g.Dial != nil {
		c, err = g.Dial(ctx, g.upstream)
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

func (g *Gate) forget(ss *session) {
	g.mu.Lock()
	delete(g.live, ss)
	g.mu.Unlock()
}

// deny closes c without writing a byte, counts the decision and logs it
// subject to per-source sampling. h is nil when nothing was decoded; err, if
// any, says what went wrong reading or dialling.
func (g *Gate) deny(c *net.TCPConn, s *Settings, peer netip.AddrPort, r policy.Reason, start time.Time, h *wire.Handshake, err error) {
	g.closeDenied(c, s)
	g.denied(peer, r, start, h, err)
}

// denied counts a denial and logs it, subject to per-source sampling, which
// is decided before anything is formatted.
func (g *Gate) denied(peer netip.AddrPort, r policy.Reason, start time.Time, h *wire.Handshake, err error) {
	g.obs.Decided(r, time.Since(start))
	if !g.sample.allow(peer.Addr()) {
		return
	}
	ev := g.log.Info()
	if ev == nil {
		return
	}
	ev = withRemote(ev, peer).Str("reason", r.String())
	if h != nil {
		ev = logHandshake(ev, h)
	}
	if r == policy.UpstreamUnreachable {
		ev = ev.Str("upstream", g.upstream)
	}
	if err != nil && r != policy.HandshakeTimeout {
		ev = ev.Err(err)
	}
	ev.Msg("denied")
}

func (g *Gate) closeDenied(c *net.TCPConn, s *Settings) {
	if s.Reset {
		_ = c.SetLinger(0) // close sends RST
	}
	_ = c.Close()
}

// drain waits for live connections for DrainTimeout, then stops them.
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
	for ss := range g.live {
		ss.stop(policy.Shutdown)
	}
	g.mu.Unlock()
	<-done
}

// summaries logs what sampling suppressed and reports the limiter size, once
// per SummaryEvery, until stop closes.
func (g *Gate) summaries(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	every := g.SummaryEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			g.summary()
			return
		case <-t.C:
			g.summary()
		}
	}
}

func (g *Gate) summary() {
	g.reportProgress()
	g.obs.LimiterSources(g.limiter.Len())
	n, sources := g.sample.reset()
	if n == 0 {
		return
	}
	g.obs.Suppressed(n)
	g.log.Info().Int("suppressed", n).Int("sources", sources).Msg("denials suppressed")
}

// session is one admitted connection, tracked so a reload or a drain can
// stop it.
type session struct {
	client *net.TCPConn
	src    netip.Addr
	tag    byte
	flags  uint64
	node   string
	start  time.Time

	mu       sync.Mutex
	upstream *net.TCPConn
	why      policy.Reason // why it was stopped; Admitted while it runs
	reported progress      // bytes already handed to the Observer
}

// stop closes both sides; the copy loop then ends. It reports false if the
// session was stopped already.
func (ss *session) stop(r policy.Reason) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.why != policy.Admitted {
		return false
	}
	ss.why = r
	_ = ss.client.Close()
	if ss.upstream != nil {
		_ = ss.upstream.Close()
	}
	return true
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

func (ss *session) reason() policy.Reason {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.why
}
