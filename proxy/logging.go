package proxy

// The gate's log lines (design.md, Logs): denied, admitted, handshake,
// closed, and the summary of denials that sampling did not write. (banned
// and unbanned are in bans.go.) They are written at the
// level the gate's settings carry (a disabled level builds no event at
// all), and a denial is sampled per source before anything is formatted, so
// a flood costs no formatting beyond what sampling lets through.

import (
	"hash/maphash"
	"math"
	"math/bits"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/distgate/distgate/forward"
	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/wire"
)

// denied counts a denial and logs it, subject to per-source sampling, which
// is decided before anything is formatted. tf says what the line says about
// TLS.
func (g *Gate) denied(peer netip.AddrPort, r policy.Reason, start time.Time, h *wire.Handshake, err error, tf *tlsFields) {
	g.obs.Decided(r, time.Since(start))
	if !g.sample.allow(peer.Addr()) {
		return
	}
	ev := g.log().Info()
	if ev == nil {
		return
	}
	ev = tf.add(withRemote(ev, peer).Str("reason", r.String()))
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

// logAdmitted writes the admitted line: who, what the first message said
// (h; nil on a passthrough gate, which sees none), and where it goes.
func (g *Gate) logAdmitted(c *conn, h *wire.Handshake) {
	ev := g.log().Info()
	if ev == nil {
		return
	}
	ev = c.tls.add(withRemote(ev, c.peer))
	if h != nil {
		ev = logHandshake(ev, h)
	}
	ev.Str("upstream", g.upstream).Msg("admitted")
}

// logOutcome writes the handshake line: the watch's outcome, the node's
// final name (the one granted by named: for a client that asked for one),
// the refusing status, and how long from accept. A watch the gate cut (a
// ban, the drain, a revocation) carries that reason.
func (g *Gate) logOutcome(c *conn, wr watchResult) {
	ev := g.log().Info()
	if ev == nil {
		return
	}
	o := wr.step.Outcome
	ev = c.tls.add(withRemote(ev, c.peer)).Str("node", c.ss.nodeName()).Str("outcome", o.String())
	if o == wire.OutcomeRefused {
		ev = ev.Str("status", wr.status)
	}
	if r := c.ss.reason(); r != policy.Admitted {
		ev = ev.Str("reason", r.String())
	} else if wr.step.Err != nil && o != wire.OutcomeTimeout {
		ev = ev.Err(wr.step.Err)
	}
	ev.Dur("dur", time.Since(c.start)).Msg("handshake")
}

// logClosed writes the closed line of an admitted connection: the bytes
// each way (in: client to node), how long it lived, its handshake's
// outcome, the forwarding path if it got that far and, if it did not end
// by itself, why (CloseReason: the reason it was stopped, or the outcome
// of a handshake that failed). A passthrough connection has no node name
// and no outcome: neither is logged.
func (g *Gate) logClosed(c *conn, res forward.Result, r policy.Reason, o wire.Outcome) {
	ev := g.log().Info()
	if ev == nil {
		return
	}
	ev = c.tls.add(withRemote(ev, c.peer))
	if node := c.ss.nodeName(); node != "" {
		ev = ev.Str("node", node)
	}
	ev = ev.Str("upstream", g.upstream).Int64("bytes_in", res.In).Int64("bytes_out", res.Out).Dur("dur", time.Since(c.start))
	if o != wire.OutcomePending {
		ev = ev.Str("outcome", o.String())
	}
	if why := CloseReason(r, o); why != "" {
		ev = ev.Str("reason", why)
	}
	if path := c.ss.forwardPath(); path != "" {
		ev = ev.Str("path", path)
	}
	if c.refused != nil {
		ev = ev.Err(c.refused)
	}
	ev.Msg("closed")
}

// logSuppressed writes what sampling suppressed since the last call, if
// anything, and reports it to the Observer. suppressed counts the denial
// lines not written; sources counts the distinct sources (IPv4 addresses,
// IPv6 /64s) they came from, exactly up to 1024 and estimated beyond (to
// within a few per cent), when the line says estimated.
func (g *Gate) logSuppressed() {
	n, sources, estimated := g.sample.reset()
	if n == 0 {
		return
	}
	g.obs.Suppressed(n)
	ev := g.log().Info().Int("suppressed", n).Int("sources", sources)
	if estimated {
		ev = ev.Bool("estimated", true)
	}
	ev.Msg("denials suppressed")
}

// tlsFields are what a connection's lines say about TLS (design.md, Logs):
// on a gate whose mode is not off, tls (the mode); identity (the verified
// client certificate's CN, or its first SAN when it has no CN) once a
// terminating gate has one; sni (the server name) once a passthrough gate
// has read one.
type tlsFields struct {
	mode     TLSMode
	identity string
	sni      string
}

// add adds the fields to ev. Identities and server names are strings from
// a verified certificate or a parsed ClientHello (visible ASCII);
// zerolog escapes them for JSON.
func (f *tlsFields) add(ev *zerolog.Event) *zerolog.Event {
	if f == nil || f.mode == TLSOff {
		return ev
	}
	ev = ev.Str("tls", f.mode.String())
	if f.identity != "" {
		ev = ev.Str("identity", f.identity)
	}
	if f.sni != "" {
		ev = ev.Str("sni", f.sni)
	}
	return ev
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
	// sources counts the distinct source keys with at least one
	// suppressed line this period, tracked or not.
	sources distinct
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
		s.sources.add(k) // untracked: counted each time, once in the result
		return false
	}
	if n < samplePerSource {
		s.seen[k] = n + 1
		return true
	}
	if n == samplePerSource {
		s.seen[k] = n + 1
		s.sources.add(k)
	}
	s.suppressed++
	return false
}

// reset starts a new period and returns what was suppressed in the last
// one: the lines, and the distinct source keys they came from (an estimate
// if estimated).
func (s *sampler) reset() (suppressed, sources int, estimated bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	suppressed = s.suppressed
	sources, estimated = s.sources.count()
	clear(s.seen)
	s.suppressed = 0
	s.sources.reset()
	return suppressed, sources, estimated
}

// distinct counts distinct source keys in bounded memory: exactly up to
// exactSources keys, then with a HyperLogLog sketch of 2^hllBits one-byte
// registers (4 KiB; standard error 1.04/sqrt(4096), about 1.6%) that every
// key seen so far is folded into. A flood from a million addresses costs the
// same memory as one from a thousand. The zero value is ready; it is not
// safe for concurrent use (sampler's mutex guards it).
type distinct struct {
	exact map[netip.Addr]struct{}
	hll   *[1 << hllBits]uint8 // nil until the exact set overflows
	seed  maphash.Seed
}

const (
	exactSources = 1024
	hllBits      = 12
)

func (d *distinct) add(k netip.Addr) {
	if d.hll != nil {
		d.sketch(k)
		return
	}
	if d.exact == nil {
		d.exact = make(map[netip.Addr]struct{})
	}
	if _, ok := d.exact[k]; ok {
		return
	}
	if len(d.exact) < exactSources {
		d.exact[k] = struct{}{}
		return
	}
	// Over the exact bound: from now on, every key goes into the sketch,
	// starting with those held exactly.
	d.hll = new([1 << hllBits]uint8)
	if d.seed == (maphash.Seed{}) {
		d.seed = maphash.MakeSeed()
	}
	for e := range d.exact {
		d.sketch(e)
	}
	d.sketch(k)
}

// sketch folds k into the registers: the top hllBits bits of its hash pick
// a register, which keeps the longest run of leading zeros (plus one) seen
// in the remaining bits.
func (d *distinct) sketch(k netip.Addr) {
	b := k.As16()
	h := maphash.Bytes(d.seed, b[:])
	i := h >> (64 - hllBits)
	r := uint8(bits.LeadingZeros64(h<<hllBits|1<<(hllBits-1))) + 1
	if r > d.hll[i] {
		d.hll[i] = r
	}
}

// count returns the number of distinct keys added, and whether it is an
// estimate.
func (d *distinct) count() (int, bool) {
	if d.hll == nil {
		return len(d.exact), false
	}
	const m = float64(1 << hllBits)
	sum, zeros := 0.0, 0
	for _, r := range d.hll {
		sum += math.Ldexp(1, -int(r))
		if r == 0 {
			zeros++
		}
	}
	e := 0.7213 / (1 + 1.079/m) * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros)) // small range: linear counting
	}
	// Never below what was counted exactly before the sketch took over.
	return max(int(math.Round(e)), exactSources), true
}

// reset empties the count, keeping the memory: the exact set shrinks back
// to nothing and the sketch is dropped until the next overflow.
func (d *distinct) reset() {
	clear(d.exact)
	d.hll = nil
}
