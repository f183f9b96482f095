package proxy

import (
	"net/netip"
	"sync"

	"github.com/distgate/distgate/policy"
)

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
