package policy

import (
	"net/netip"
	"sync"
)

// Conns counts live connections, in total and per source key (see Key). An
// entry exists only while its source has a live connection, so memory is
// bounded by the total cap. It is safe for concurrent use; the zero value is
// ready.
type Conns struct {
	mu    sync.Mutex
	total int
	per   map[netip.Addr]int
}

// Acquire counts a new connection from a if that keeps the totals within
// maxTotal and maxPerSource (<= 0: no cap), and reports which cap stopped it
// otherwise. Each Admitted result must be paired with one Release(a).
func (c *Conns) Acquire(a netip.Addr, maxTotal, maxPerSource int) Reason {
	k := Key(a)
	c.mu.Lock()
	defer c.mu.Unlock()
	if maxTotal > 0 && c.total >= maxTotal {
		return TooManyConns
	}
	if maxPerSource > 0 && c.per[k] >= maxPerSource {
		return TooManyConnsPerSource
	}
	if c.per == nil {
		c.per = make(map[netip.Addr]int)
	}
	c.total++
	c.per[k]++
	return Admitted
}

// Release undoes one successful Acquire(a).
func (c *Conns) Release(a netip.Addr) {
	k := Key(a)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if n := c.per[k] - 1; n > 0 {
		c.per[k] = n
	} else {
		delete(c.per, k)
	}
}

// Total returns the number of live connections counted.
func (c *Conns) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}
