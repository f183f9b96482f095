package policy

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxSources is the hard cap on per-source entries a Limiter holds.
const DefaultMaxSources = 65536

// sweepEvery is how often Allow drops idle entries in passing.
const sweepEvery = 10 * time.Second

// Key returns the per-source key for a: the address itself for IPv4, its /64
// for IPv6 (one host commonly holds a whole /64, so keying by address would
// let it multiply its budget).
func Key(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// Limiter holds one token bucket per source key. Its memory is bounded: an
// entry whose bucket has refilled is dropped (forgetting it changes nothing,
// since a new entry starts full), idle entries are swept every 10 s in
// passing, and when MaxSources entries are held a new source evicts an
// arbitrary one. It is safe for concurrent use.
type Limiter struct {
	mu        sync.Mutex
	limit     rate.Limit
	burst     int
	max       int
	m         map[netip.Addr]*rate.Limiter
	lastSweep time.Time
}

// NewLimiter returns a Limiter allowing r new connections per second per
// source with bursts of b, holding at most max entries (DefaultMaxSources if
// max <= 0).
func NewLimiter(r rate.Limit, b, max int) *Limiter {
	if max <= 0 {
		max = DefaultMaxSources
	}
	return &Limiter{limit: r, burst: b, max: max, m: make(map[netip.Addr]*rate.Limiter)}
}

// Set changes the rate and burst. Existing buckets are forgotten when either
// changes, so every source starts the new policy with a full bucket.
func (l *Limiter) Set(r rate.Limit, b int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r == l.limit && b == l.burst {
		return
	}
	l.limit, l.burst = r, b
	clear(l.m)
}

// Allow takes one token from a's bucket at time now and reports whether there
// was one. It never waits.
func (l *Limiter) Allow(a netip.Addr, now time.Time) bool {
	k := Key(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sweepEvery {
		l.sweep(now)
	}
	lim, ok := l.m[k]
	if !ok {
		if len(l.m) >= l.max {
			// At the cap, sweep at most once a second: a flood of new
			// sources must not buy an O(entries) scan per connection.
			if now.Sub(l.lastSweep) >= time.Second {
				l.sweep(now)
			}
			for victim := range l.m {
				if len(l.m) < l.max {
					break
				}
				delete(l.m, victim)
			}
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.m[k] = lim
	}
	return lim.AllowN(now, 1)
}

// sweep drops every entry whose bucket is full at now.
func (l *Limiter) sweep(now time.Time) {
	l.lastSweep = now
	full := float64(l.burst)
	for k, lim := range l.m {
		if lim.TokensAt(now) >= full {
			delete(l.m, k)
		}
	}
}

// Len returns the number of per-source entries held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
