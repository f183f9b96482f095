package proxy

// A gate's state for the admin socket (design.md, Admin socket): plain Go
// values; the admin protocol has its own wire types and the daemon converts.

import (
	"net/netip"
	"slices"
	"time"

	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/wire"
)

// Status is a snapshot of one gate.
type Status struct {
	Name     string
	Upstream string
	Path     string // how admitted connections are forwarded: user, kernel, or tls on a terminating gate
	// Conns are the admitted connections, oldest first.
	Conns []ConnStatus
	// Bans are the bans in force, soonest to end first.
	Bans []policy.Ban
	// LimiterSources is the number of per-source rate-limiter entries held.
	LimiterSources int
	// BanFailures and BanRecords are what the ban table holds: sources
	// with failures in the window, and sources banned or remembered so that
	// their next ban lasts longer.
	BanFailures, BanRecords int
}

// ConnStatus is one admitted connection.
type ConnStatus struct {
	Remote netip.AddrPort
	Node   string // the granted name for a client that asked for one
	// Outcome is the handshake's outcome so far: pending while the watch
	// runs, then ok (a connection still live after any other outcome is
	// about to close).
	Outcome string
	Since   time.Time // accept
	// In and Out are the bytes moved so far: client to node, node to
	// client.
	In, Out int64
	Path    string // "" until the forwarder has the pair
}

// Status returns a snapshot of the gate.
func (g *Gate) Status() Status {
	st := Status{Name: g.name, Upstream: g.upstream, Path: g.Path()}
	g.mu.Lock()
	var live []*session
	for ss := range g.live {
		if ss.decided {
			live = append(live, ss)
		}
	}
	g.mu.Unlock()
	for _, ss := range live {
		cs := ConnStatus{Remote: ss.peer, Since: ss.since, In: ss.preIn.Load(), Out: ss.preOut.Load()}
		ss.mu.Lock()
		cs.Node = ss.node
		cs.Outcome = ss.outcome.String()
		if ss.watching {
			cs.Outcome = wire.OutcomePending.String()
		}
		h := ss.h
		ss.mu.Unlock()
		if h != nil {
			in, out := h.Progress()
			cs.In += in
			cs.Out += out
			cs.Path = ss.forwardPath()
		}
		st.Conns = append(st.Conns, cs)
	}
	slices.SortFunc(st.Conns, func(a, b ConnStatus) int { return a.Since.Compare(b.Since) })
	st.Bans = g.Bans()
	st.LimiterSources = g.limiter.Len()
	st.BanFailures, st.BanRecords = g.bans.Sizes()
	return st
}
