package proxy

// The gate's log lines (design.md, Logs): denied, admitted, closed, and the
// summary of denials that sampling did not write. They are written at the
// level the gate's settings carry (a disabled level builds no event at
// all), and a denial is sampled per source before anything is formatted, so
// a flood costs no formatting beyond what sampling lets through.

import (
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/distgate/distgate/forward"
	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/wire"
)

// denied counts a denial and logs it, subject to per-source sampling, which
// is decided before anything is formatted.
func (g *Gate) denied(peer netip.AddrPort, r policy.Reason, start time.Time, h *wire.Handshake, err error) {
	g.obs.Decided(r, time.Since(start))
	if !g.sample.allow(peer.Addr()) {
		return
	}
	ev := g.log().Info()
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

// logAdmitted writes the admitted line: who, what the first message said,
// and where it goes.
func (g *Gate) logAdmitted(c *conn, h *wire.Handshake) {
	logHandshake(withRemote(g.log().Info(), c.peer), h).Str("upstream", g.upstream).Msg("admitted")
}

// logClosed writes the closed line of an admitted connection: the bytes
// each way (in: client to node), how long it lived and, if it did not end
// by itself, why it was stopped.
func (g *Gate) logClosed(c *conn, res forward.Result) {
	ev := withRemote(g.log().Info(), c.peer).Str("node", c.ss.node).Str("upstream", g.upstream).
		Int64("bytes_in", res.In).Int64("bytes_out", res.Out).Dur("dur", time.Since(c.start))
	if r := c.ss.reason(); r != policy.Admitted {
		ev = ev.Str("reason", r.String())
	}
	if c.refused != nil {
		ev = ev.Err(c.refused)
	}
	ev.Msg("closed")
}

// logSuppressed writes what sampling suppressed since the last call, if
// anything, and reports it to the Observer.
func (g *Gate) logSuppressed() {
	n, sources := g.sample.reset()
	if n == 0 {
		return
	}
	g.obs.Suppressed(n)
	g.log().Info().Int("suppressed", n).Int("sources", sources).Msg("denials suppressed")
}

// withRemote adds the peer's address:port without allocating a string.
func withRemote(ev *zerolog.Event, peer netip.AddrPort) *zerolog.Event {
	var a [64]byte
	return ev.Bytes("remote", peer.AppendTo(a[:0]))
}

// logHandshake adds what the first message said. Names reaching here passed
// wire.Parse, so they are visible ASCII; zerolog escapes quotes and
// backslashes for JSON.
func logHandshake(ev *zerolog.Event, h *wire.Handshake) *zerolog.Event {
	var f [8]byte
	fb := f[:]
	tag := "N"
	if h.Tag == wire.TagOld {
		tag, fb = "n", f[4:]
	}
	for i := range fb {
		fb[len(fb)-1-i] = byte(h.Flags >> (8 * i))
	}
	return ev.Bytes("node", h.Name).Str("tag", tag).Hex("flags", fb).Bool("hidden", h.Hidden())
}

// Denial log sampling: within one summary period, each source key gets at most
// samplePerSource denial lines, and at most sampleSources keys are tracked
// (denials from further sources are only counted). A flood therefore writes at
// most samplePerSource*sampleSources lines per period per gate, plus one
// summary line.
const (
	samplePerSource = 5
	sampleSources   = 256
)

// sampler decides which denial lines are written. It is safe for concurrent
// use; the zero value is ready.
type sampler struct {
	mu         sync.Mutex
	seen       map[netip.Addr]uint16
	suppressed int
	sources    int // sources with at least one suppressed line this period
}

// allow reports whether a denial from a should be logged, counting it as
// suppressed otherwise. It does not allocate once the map has grown.
func (s *sampler) allow(a netip.Addr) bool {
	k := policy.Key(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = make(map[netip.Addr]uint16, sampleSources)
	}
	n, ok := s.seen[k]
	if !ok && len(s.seen) >= sampleSources {
		s.suppressed++
		return false
	}
	if n < samplePerSource {
		s.seen[k] = n + 1
		return true
	}
	if n == samplePerSource {
		s.seen[k] = n + 1
		s.sources++
	}
	s.suppressed++
	return false
}

// reset starts a new period and returns what was suppressed in the last one.
func (s *sampler) reset() (suppressed, sources int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	suppressed, sources = s.suppressed, s.sources
	clear(s.seen)
	s.suppressed, s.sources = 0, 0
	return suppressed, sources
}
