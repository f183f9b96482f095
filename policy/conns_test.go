package policy

import (
	"sync"
	"sync/atomic"
	"testing"
)

func (c *Conns) entries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.per)
}

func TestConnsPerSourceCap(t *testing.T) {
	var c Conns
	a, b := addr(t, "10.0.0.1"), addr(t, "10.0.0.2")
	for i := range 2 {
		if got := c.Acquire(a, 10, 2); got != Admitted {
			t.Fatalf("connection %d from a: %q", i+1, got)
		}
	}
	if got := c.Acquire(a, 10, 2); got != TooManyConnsPerSource {
		t.Fatalf("third connection from a = %q, want %q", got, TooManyConnsPerSource)
	}
	if got := c.Acquire(b, 10, 2); got != Admitted {
		t.Fatalf("first connection from b = %q, want admitted", got)
	}
	if c.Total() != 3 {
		t.Fatalf("Total() = %d, want 3 (a denial must not count)", c.Total())
	}
	c.Release(a)
	if got := c.Acquire(a, 10, 2); got != Admitted {
		t.Fatalf("a after a release = %q, want admitted", got)
	}
}

func TestConnsTotalCap(t *testing.T) {
	var c Conns
	for i := range 3 {
		if got := c.Acquire(v4(i), 3, 2); got != Admitted {
			t.Fatalf("source %d: %q", i, got)
		}
	}
	if got := c.Acquire(v4(3), 3, 2); got != TooManyConns {
		t.Fatalf("fourth source = %q, want %q", got, TooManyConns)
	}
	// Both caps reached: the total is reported, as it is checked first.
	if got := c.Acquire(v4(0), 3, 1); got != TooManyConns {
		t.Fatalf("both caps reached = %q, want %q", got, TooManyConns)
	}
	if c.Total() != 3 {
		t.Fatalf("Total() = %d, want 3", c.Total())
	}
	c.Release(v4(1))
	if got := c.Acquire(v4(3), 3, 2); got != Admitted {
		t.Fatalf("after a release = %q, want admitted", got)
	}
	// A lower cap after a reload applies to the next Acquire.
	if got := c.Acquire(v4(4), 2, 2); got != TooManyConns {
		t.Fatalf("over a lowered cap = %q, want %q", got, TooManyConns)
	}
}

func TestConnsNoCaps(t *testing.T) {
	var c Conns
	a := addr(t, "10.0.0.1")
	for i := range 1000 {
		if got := c.Acquire(a, 0, -1); got != Admitted {
			t.Fatalf("connection %d with no caps: %q", i+1, got)
		}
	}
	if c.Total() != 1000 {
		t.Fatalf("Total() = %d, want 1000", c.Total())
	}
}

func TestConnsReleaseDeletesEntries(t *testing.T) {
	var c Conns
	a, b := addr(t, "10.0.0.1"), addr(t, "2001:db8::1")
	c.Acquire(a, 0, 2)
	c.Acquire(a, 0, 2)
	c.Acquire(b, 0, 2)
	if c.entries() != 2 {
		t.Fatalf("%d entries, want 2", c.entries())
	}
	c.Release(a)
	if c.Total() != 2 || c.entries() != 2 {
		t.Fatalf("after one of a's two releases: Total %d, %d entries; want 2, 2", c.Total(), c.entries())
	}
	c.Release(a)
	if c.Total() != 1 || c.entries() != 1 {
		t.Fatalf("after a's last release: Total %d, %d entries; want 1, 1", c.Total(), c.entries())
	}
	c.Release(b)
	if c.Total() != 0 || c.entries() != 0 {
		t.Fatalf("all released: Total %d, %d entries; want 0, 0", c.Total(), c.entries())
	}
	// A freed source starts from zero: its full per-source allowance again.
	for i := range 2 {
		if got := c.Acquire(a, 0, 2); got != Admitted {
			t.Fatalf("re-acquire %d: %q", i+1, got)
		}
	}
	if got := c.Acquire(a, 0, 2); got != TooManyConnsPerSource {
		t.Fatalf("re-acquire past the cap = %q, want %q", got, TooManyConnsPerSource)
	}
}

func TestConnsKeyedBySource(t *testing.T) {
	tests := []struct {
		name          string
		first, second string
		shared        bool
	}{
		{"same IPv6 /64", "2001:db8::1", "2001:db8::ffff:2", true},
		{"different IPv6 /64", "2001:db8::1", "2001:db8:0:1::1", false},
		{"different IPv4", "10.0.0.1", "10.0.0.2", false},
		{"IPv4 and its mapped form", "10.0.0.1", "::ffff:10.0.0.1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Conns
			if got := c.Acquire(addr(t, tt.first), 0, 1); got != Admitted {
				t.Fatalf("first: %q", got)
			}
			want := Admitted
			if tt.shared {
				want = TooManyConnsPerSource
			}
			if got := c.Acquire(addr(t, tt.second), 0, 1); got != want {
				t.Fatalf("second = %q, want %q", got, want)
			}
			// Releasing through the other address of a shared key frees it.
			if tt.shared {
				c.Release(addr(t, tt.second))
				if c.Total() != 0 || c.entries() != 0 {
					t.Fatalf("after release: Total %d, %d entries; want 0, 0", c.Total(), c.entries())
				}
			}
		})
	}
}

// Run with -race.
func TestConnsConcurrent(t *testing.T) {
	const (
		workers = 8
		rounds  = 500
		perSrc  = 5
	)
	var c Conns
	shared := addr(t, "2001:db8::1")
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			own := v4(w)
			for range rounds {
				if c.Acquire(own, 0, 0) == Admitted {
					c.Release(own)
				}
				if c.Acquire(shared, 0, perSrc) == Admitted {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := admitted.Load(); n != perSrc {
		t.Errorf("the shared source was admitted %d times, want exactly %d", n, perSrc)
	}
	if c.Total() != perSrc || c.entries() != 1 {
		t.Errorf("Total %d, %d entries; want %d, 1", c.Total(), c.entries(), perSrc)
	}
	for range perSrc {
		c.Release(shared)
	}
	if c.Total() != 0 || c.entries() != 0 {
		t.Errorf("all released: Total %d, %d entries; want 0, 0", c.Total(), c.entries())
	}
}
