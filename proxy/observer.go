package proxy

import (
	"time"

	"github.com/distgate/distgate/policy"
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
}

type nopObserver struct{}

func (nopObserver) Decided(policy.Reason, time.Duration) {}
func (nopObserver) Moved(int64, int64)                   {}
func (nopObserver) Active(int)                           {}
func (nopObserver) Suppressed(int)                       {}
func (nopObserver) LimiterSources(int)                   {}
