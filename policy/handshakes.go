package policy

import (
	"net/netip"
	"sync"
)

// Handshakes caps the connections, across all gates, that are between accept
// and decision. Slow or silent clients from allowed sources each hold one
// until handshake_timeout; the cap keeps them from taking every file
// descriptor.
//
// A quarter of the slots is kept for sources (keys, see Key) that hold none:
// a source already in a handshake gets a slot only while fewer than max minus
// that reserve are taken. So silent clients from a few sources cannot lock an
// operator at another source out; that takes more attacking sources than the
// reserve (33 for the default 128). A nil *Handshakes has no cap. It is safe
// for concurrent use.
type Handshakes struct {
	max, reserve int

	mu  sync.Mutex
	n   int
	per map[netip.Addr]int // only sources holding a slot: at most max entries
}

// NewHandshakes returns a cap of max handshakes in progress (<= 0: nil, no cap).
func NewHandshakes(max int) *Handshakes {
	if max <= 0 {
		return nil
	}
	return &Handshakes{max: max, reserve: max / 4, per: make(map[netip.Addr]int)}
}

// Acquire takes a slot for a connection from src, if the cap allows. Each
// true result must be paired with one Release(src).
func (h *Handshakes) Acquire(src netip.Addr) bool {
	if h == nil {
		return true
	}
	k := Key(src)
	h.mu.Lock()
	defer h.mu.Unlock()
	held := h.per[k]
	if h.n >= h.max || (held > 0 && h.n >= h.max-h.reserve) {
		return false
	}
	h.n++
	h.per[k] = held + 1
	return true
}

// Release gives back a slot Acquire(src) took.
func (h *Handshakes) Release(src netip.Addr) {
	if h == nil {
		return
	}
	k := Key(src)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n--
	if held := h.per[k] - 1; held > 0 {
		h.per[k] = held
	} else {
		delete(h.per, k)
	}
}

// InProgress returns the number of handshakes being read.
func (h *Handshakes) InProgress() int {
	if h == nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}
