package proxy

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/distgate/distgate/forward"
	"github.com/distgate/distgate/policy"
)

// DefaultSummaryEvery is how often a gate logs the denial-sampling summary
// and reports its limiter size and its live connections' bytes when
// Config.SummaryEvery is zero.
const DefaultSummaryEvery = 10 * time.Second

// Config is what a Gate is built from. Name, Upstream and Settings are
// required; every other field has a working zero value.
type Config struct {
	// Name labels the gate's log lines and metrics.
	Name string
	// Upstream is the host:port of the node that admitted connections are
	// forwarded to.
	Upstream string
	// Settings are the first settings; Update replaces them. Must not be nil.
	Settings *Settings
	// Log receives the gate's lines, with a "gate" field added. Its level
	// is replaced by Settings.LogLevel (and again by each Update). The zero
	// Logger writes nothing.
	Log zerolog.Logger
	// Observer receives the gate's events for metrics. Nil means none.
	Observer Observer
	// Handshakes caps the connections reading their first message, shared
	// by all gates of a process. Nil means no cap.
	Handshakes *policy.Handshakes
	// Forwarder moves the bytes of admitted connections. Nil means a
	// "user" path of the gate's own (forward.NewUserPath: the event loop,
	// or goroutines where it cannot run), which Serve closes before it
	// returns. A Forwarder given here belongs to the caller, who closes it
	// once every gate using it has returned from Serve.
	Forwarder forward.Forwarder
	// Dial connects to the upstream. Nil means a net.Dialer under the
	// settings' dial timeout. It must return a *net.TCPConn: forwarding
	// works on raw TCP sockets.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// SummaryEvery is how often the denial-sampling summary is logged, the
	// limiter size reported and live connections' bytes counted. Zero means
	// DefaultSummaryEvery.
	SummaryEvery time.Duration
	// OnBansChanged, if set, is called after every change to the gate's
	// bans: a new ban, one that ended or was lifted (by a reload, by hand,
	// on expiry). It is how a state file learns to save them (Bans). It
	// runs on the goroutine that made the change, holding no lock of the
	// gate's, so it must be cheap: note the change and return.
	OnBansChanged func()
}

// Gate guards one public distribution port in front of one upstream node.
// Create it with NewGate, run it with Serve, change its policy with Update.
// All methods are safe for concurrent use.
type Gate struct {
	name     string
	upstream string
	baseLog  zerolog.Logger                 // with the gate's name; the level comes from the settings
	logp     atomic.Pointer[zerolog.Logger] // baseLog at the current settings' level
	obs      Observer
	hs       *policy.Handshakes
	fwd      forward.Forwarder // set before Serve accepts (the gate's own is started there)
	ownFwd   bool              // fwd is the gate's own: Serve starts and closes it
	path     string            // fwd's path, for Status before and while Serve runs
	dialer   func(ctx context.Context, addr string) (net.Conn, error)
	every    time.Duration

	settings atomic.Pointer[Settings]
	limiter  *policy.Limiter
	conns    policy.Conns
	bans     *policy.Bans
	onBans   func()
	sample   sampler

	ready   chan struct{}         // closed once Serve accepts
	mu      sync.Mutex            // guards live and stopped, and serializes decisions against Update
	live    map[*session]struct{} // every connection past the checks at accept (sessions.go)
	stopped bool                  // the drain timeout has passed: admit no more
	wg      sync.WaitGroup        // one per connection that passed the accept checks, until it ends
}

// NewGate returns a gate built from c (see Config).
func NewGate(c Config) *Gate {
	g := &Gate{
		name:     c.Name,
		upstream: c.Upstream,
		baseLog:  c.Log.With().Str("gate", c.Name).Logger(),
		obs:      c.Observer,
		hs:       c.Handshakes,
		fwd:      c.Forwarder,
		dialer:   c.Dial,
		every:    c.SummaryEvery,
		limiter:  policy.NewLimiter(c.Settings.Rate, c.Settings.Burst, 0),
		bans:     policy.NewBans(c.Settings.Ban, 0),
		onBans:   c.OnBansChanged,
		live:     make(map[*session]struct{}),
		ready:    make(chan struct{}),
	}
	if g.obs == nil {
		g.obs = nopObserver{}
	}
	if g.fwd == nil {
		// Started by Serve: a gate that never serves holds no loop.
		g.ownFwd, g.path = true, "user"
	} else {
		g.path = g.fwd.Path()
	}
	if g.every <= 0 {
		g.every = DefaultSummaryEvery
	}
	g.setLevel(c.Settings.LogLevel)
	g.settings.Store(c.Settings)
	return g
}

// Name returns the gate's name.
func (g *Gate) Name() string { return g.name }

// Upstream returns the address admitted connections are forwarded to.
func (g *Gate) Upstream() string { return g.upstream }

// Path names how the gate forwards admitted connections: its forwarder's
// path ("user" or "kernel"; a pair the kernel path does not take says so
// on its closed line), or "tls" on a gate that terminates TLS, whose
// pairs are always forwarded in user space.
func (g *Gate) Path() string {
	if g.settings.Load().TLS == TLSTerminate {
		return tlsPath
	}
	return g.path
}

// Ready is closed once Serve has taken over its listener and accepts. Serve
// is called at most once per Gate.
func (g *Gate) Ready() <-chan struct{} { return g.ready }

// Update applies new settings to new connections at once, sets the log
// level, applies the ban rules (lifting the bans of sources they no longer
// ban; bans and failure counts survive otherwise), and closes every live
// connection that the new settings would no longer admit (reason revoked).
// It returns the number of connections closed.
func (g *Gate) Update(s *Settings) int {
	g.limiter.Set(s.Rate, s.Burst)
	lifted := g.bans.Set(s.Ban)
	g.mu.Lock()
	g.setLevel(s.LogLevel)
	g.settings.Store(s)
	revoked := g.notAdmittedBy(s)
	g.mu.Unlock()
	g.lifted(lifted) // logged at the new level
	n := 0
	for _, ss := range revoked {
		if ss.stop(policy.Revoked) {
			n++
		}
	}
	return n
}

// setLevel makes the gate log at lvl from now on. A disabled level stays
// cheap: zerolog hands out a nil event, so nothing is formatted.
func (g *Gate) setLevel(lvl zerolog.Level) {
	l := g.baseLog.Level(lvl)
	g.logp.Store(&l)
}

// log returns the gate's logger at the current level.
func (g *Gate) log() *zerolog.Logger { return g.logp.Load() }

// Serve accepts connections on ln until ctx ends, then closes ln, lets live
// connections run for the settings' DrainTimeout, stops what remains, and
// returns once every goroutine it started has finished (those of the gate's
// own forwarder included). ln must yield *net.TCPConn; on Linux a
// *net.TCPListener is taken over and accepted from with accept4 (see
// acceptor_linux.go). Serve returns nil after a shutdown, or the accept error
// that stopped it. It is called at most once per Gate.
func (g *Gate) Serve(ctx context.Context, ln net.Listener) error {
	if g.ownFwd {
		g.fwd, _ = forward.NewUserPath()
	}
	a := newAcceptor(ln)
	stopAccept := context.AfterFunc(ctx, func() { _ = a.close() })
	defer stopAccept()
	close(g.ready)

	summaryDone := make(chan struct{})
	summaryStop := make(chan struct{})
	go g.summaries(summaryStop, summaryDone)

	err := g.acceptLoop(ctx, a)

	g.drain()
	if g.ownFwd {
		// Every pair has ended (drain waited for each one's end); this
		// waits for the forwarder's goroutines to return.
		_ = g.fwd.Close()
	}
	close(summaryStop)
	<-summaryDone
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// summaries does the gate's periodic work: once per SummaryEvery, and once
// more when stop closes, count live connections' bytes, report the limiter
// size, log what denial sampling suppressed; once a second, end the bans
// that ran out.
func (g *Gate) summaries(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(g.every)
	defer t.Stop()
	bt := time.NewTicker(banEvery)
	defer bt.Stop()
	for {
		select {
		case <-stop:
			g.summary()
			return
		case <-t.C:
			g.summary()
		case <-bt.C:
			g.expireBans()
		}
	}
}

func (g *Gate) summary() {
	g.reportProgress()
	g.obs.LimiterSources(g.limiter.Len())
	g.logSuppressed()
}
