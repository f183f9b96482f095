package proxy

// Bans (design.md, Bans): a source that keeps failing is banned for a
// while. The table (policy.Bans) counts and decides; the gate feeds it the
// failures of connections from allowed sources, refuses banned sources at
// accept (accept.go), closes a newly banned source's live connections,
// expires bans once a second, logs banned and unbanned, and tells
// Config.OnBansChanged so the bans can be saved.

import (
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/distgate/distgate/policy"
)

// banEvery is how often ended bans are expired.
const banEvery = time.Second

// banFailure reports whether a denial counts towards a ban of its source:
// the source passed the checks at accept and then sent what no genuine
// client sends, or nothing at all, or a certificate the gate refuses. (Outcome auth_failed counts too; see
// Gate.watched.)
func banFailure(r policy.Reason) bool {
	switch r {
	case policy.BadHandshake, policy.MissingFlags, policy.NameNotAllowed, policy.HandshakeTimeout,
		policy.TLSFailed, policy.IdentityNotAllowed:
		return true
	}
	return false
}

// fail counts a failure of ss's source and, if that bans it, closes its
// other live connections.
func (g *Gate) fail(ss *session) {
	b, ok := g.bans.Fail(ss.peer.Addr(), time.Now())
	if ok {
		g.imposed(b, ss)
	}
}

// imposed logs and counts a new ban, closes the banned source's live
// connections (but skip, whose own end is under way) with reason banned,
// and says the bans changed. It returns the number of connections closed.
func (g *Gate) imposed(b policy.Ban, skip *session) int {
	g.obs.Banned()
	g.obs.BansActive(g.bans.Active())
	withBanSource(g.log().Info(), b.Source).Time("until", b.Until).Int("failures", b.Failures).Msg("banned")
	var hit []*session
	g.mu.Lock()
	for ss := range g.live {
		if ss != skip && ss.key == b.Source.Addr() {
			hit = append(hit, ss)
		}
	}
	g.mu.Unlock()
	n := 0
	for _, ss := range hit { // outside g.mu, as in Update
		if ss.stop(policy.Banned) {
			n++
		}
	}
	g.bansChanged()
	return n
}

// lifted logs bans that ended (expired, lifted by a reload or by hand).
func (g *Gate) lifted(bs []policy.Ban) {
	if len(bs) == 0 {
		return
	}
	for _, b := range bs {
		withBanSource(g.log().Info(), b.Source).Msg("unbanned")
	}
	g.obs.BansActive(g.bans.Active())
	g.bansChanged()
}

func (g *Gate) bansChanged() {
	if g.onBans != nil {
		g.onBans()
	}
}

// expireBans ends the bans that ran out; the gate's ticker calls it.
func (g *Gate) expireBans() { g.lifted(g.bans.Expire(time.Now())) }

// withBanSource adds the banned source as remote: the address for IPv4,
// the /64 for IPv6 (what a ban covers).
func withBanSource(ev *zerolog.Event, p netip.Prefix) *zerolog.Event {
	if ev == nil {
		return nil
	}
	var a [64]byte
	if p.Addr().Is4() {
		return ev.Bytes("remote", p.Addr().AppendTo(a[:0]))
	}
	b, _ := p.AppendText(a[:0])
	return ev.Bytes("remote", b)
}

// Ban bans addr's source (the address, or its IPv6 /64) for d (d <= 0: the
// gate's ban duration), as an operator asked, and closes its live
// connections with reason banned. It fails with policy.ErrNeverBan for a
// source the gate's ban rules never ban.
func (g *Gate) Ban(addr netip.Addr, d time.Duration) (policy.Ban, error) {
	b, err := g.bans.Ban(addr, d, time.Now())
	if err != nil {
		return policy.Ban{}, err
	}
	g.imposed(b, nil)
	return b, nil
}

// Unban lifts the ban of addr's source and forgets its failures. It
// reports the ban lifted, with false if the source was not banned.
func (g *Gate) Unban(addr netip.Addr) (policy.Ban, bool) {
	b, ok := g.bans.Unban(addr, time.Now())
	if !ok {
		g.obs.BansActive(g.bans.Active()) // an expired ban may have gone with it
		return policy.Ban{}, false
	}
	g.lifted([]policy.Ban{b})
	return b, true
}

// Bans returns the bans in force, soonest to end first.
func (g *Gate) Bans() []policy.Ban { return g.bans.List(time.Now()) }

// RestoreBans re-creates bans saved earlier (Bans' output, e.g. from a
// state file), except those that have ended or that the gate's rules never
// ban, and returns how many it restored. It is meant for start-up, before
// Serve: it does not close live connections.
func (g *Gate) RestoreBans(bs []policy.Ban) int {
	n := g.bans.Restore(bs, time.Now())
	g.obs.BansActive(g.bans.Active())
	return n
}
