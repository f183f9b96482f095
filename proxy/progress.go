package proxy

// Byte counts for long-lived connections. The copy loop is a plain io.Copy
// between the raw conns (splice), so nothing counts bytes as they pass; an
// Erlang distribution link can live for months, though, and a counter that
// moves only when it ends would be useless. So once per summary period the
// gate reads each live client socket's TCP counters from the kernel
// (TCP_INFO: bytes received from the client, bytes the client acknowledged)
// and reports what moved since the last look. When the connection ends, the
// exact totals from io.Copy settle the account: what was reported already is
// subtracted, never below zero.

import "github.com/distgate/distgate/policy"

// progress is what has been reported for one session so far; guarded by the
// session's mu.
type progress struct{ in, out int64 }

// reportProgress reports the bytes live sessions moved since the last call.
func (g *Gate) reportProgress() {
	g.mu.Lock()
	live := make([]*session, 0, len(g.live))
	for ss := range g.live {
		live = append(live, ss)
	}
	g.mu.Unlock()
	for _, ss := range live {
		in, out, ok := tcpCounters(ss.client)
		if !ok {
			continue
		}
		ss.mu.Lock()
		if ss.upstream == nil || ss.why != policy.Admitted {
			ss.mu.Unlock()
			continue
		}
		dIn, dOut := max(in-ss.reported.in, 0), max(out-ss.reported.out, 0)
		ss.reported.in += dIn
		ss.reported.out += dOut
		ss.mu.Unlock()
		if dIn > 0 || dOut > 0 {
			g.obs.Moved(dIn, dOut)
		}
	}
}

// settle returns what remains to report once the session's exact totals are
// known, and marks them reported.
func (ss *session) settle(in, out int64) (dIn, dOut int64) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	dIn, dOut = max(in-ss.reported.in, 0), max(out-ss.reported.out, 0)
	ss.reported.in += dIn
	ss.reported.out += dOut
	return dIn, dOut
}
