package proxy

import (
	"time"

	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/wire"
)

// Observer receives a gate's events for metrics. Implementations must be safe
// for concurrent use and cheap: they run on the accept and connection paths.
type Observer interface {
	// Decided is called once per connection when it is admitted (reason
	// policy.Admitted) or denied, with the time from accept to the decision.
	Decided(r policy.Reason, d time.Duration)
	// Moved adds bytes forwarded client→node (in) and node→client (out):
	// for a live connection once per summary period, the rest when it ends.
	Moved(in, out int64)
	// Active is called with +1 when a connection is admitted and -1 when it ends.
	Active(delta int)
	// Suppressed adds denial log lines that sampling did not write.
	Suppressed(n int)
	// LimiterSources reports the per-source entries the rate limiter holds.
	LimiterSources(n int)
	// Handshake is called once per admitted connection with the outcome
	// of its handshake watch (never wire.OutcomePending).
	Handshake(o wire.Outcome)
	// Closed is called once per admitted connection when it ends, after
	// Handshake: with the reason it was stopped for (policy.Revoked,
	// Banned, Shutdown), or policy.Admitted when the gate did not stop it;
	// o is its handshake's outcome. CloseReason turns the pair into the
	// reason label.
	Closed(r policy.Reason, o wire.Outcome)
	// Banned is called for each new ban, automatic or asked for.
	Banned()
	// BansActive reports the number of bans in force, after every change.
	BansActive(n int)
}

// CloseReason is the reason an admitted connection ended, as the closed
// line and distgate_connections_closed_total carry it: the reason the gate
// stopped it for (revoked, banned, shutdown); else, for a handshake that
// did not end in ok, its outcome; else "" (it ended by itself).
func CloseReason(r policy.Reason, o wire.Outcome) string {
	if r != policy.Admitted {
		return r.String()
	}
	if o != wire.OutcomeOK && o != wire.OutcomePending {
		return o.String()
	}
	return ""
}

type nopObserver struct{}

func (nopObserver) Decided(policy.Reason, time.Duration) {}
func (nopObserver) Moved(int64, int64)                   {}
func (nopObserver) Active(int)                           {}
func (nopObserver) Suppressed(int)                       {}
func (nopObserver) LimiterSources(int)                   {}
func (nopObserver) Handshake(wire.Outcome)               {}
func (nopObserver) Closed(policy.Reason, wire.Outcome)   {}
func (nopObserver) Banned()                              {}
func (nopObserver) BansActive(int)                       {}
