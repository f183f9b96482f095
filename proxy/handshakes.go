package proxy

import "sync/atomic"

// Handshakes caps the connections, across all gates, that are between accept
// and decision. Slow or silent clients from allowed sources each hold one
// until handshake_timeout; the cap keeps them from taking every file
// descriptor. A nil *Handshakes has no cap. It is safe for concurrent use.
type Handshakes struct {
	max int64
	n   atomic.Int64
}

// NewHandshakes returns a cap of max handshakes in progress (<= 0: nil, no cap).
func NewHandshakes(max int) *Handshakes {
	if max <= 0 {
		return nil
	}
	return &Handshakes{max: int64(max)}
}

func (h *Handshakes) acquire() bool {
	if h == nil {
		return true
	}
	if h.n.Add(1) > h.max {
		h.n.Add(-1)
		return false
	}
	return true
}

func (h *Handshakes) release() {
	if h != nil {
		h.n.Add(-1)
	}
}

// InProgress returns the number of handshakes being read.
func (h *Handshakes) InProgress() int {
	if h == nil {
		return 0
	}
	return int(h.n.Load())
}
