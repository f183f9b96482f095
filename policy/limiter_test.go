package policy

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// t0 is an arbitrary fixed instant; every test passes times derived from it.
var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// v4 returns a distinct IPv4 address for each i < 2^24.
func v4(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func TestKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.0.0.1", "10.0.0.1"},
		{"10.0.0.2", "10.0.0.2"},
		{"::ffff:10.0.0.1", "10.0.0.1"},
		{"2001:db8::1", "2001:db8::"},
		{"2001:db8::ffff:1:2:3", "2001:db8::"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"2001:db8:1:2::", "2001:db8:1:2::"},
		{"::1", "::"},
		{"fe80::1%eth0", "fe80::"}, // the zone is dropped
	}
	for _, tt := range tests {
		if got := Key(addr(t, tt.in)); got != addr(t, tt.want) {
			t.Errorf("Key(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if got := Key(netip.Addr{}); got.IsValid() {
		t.Errorf("Key(invalid) = %s, want invalid", got)
	}
}

func TestLimiterBurstThenRefill(t *testing.T) {
	l := NewLimiter(1, 3, 0)
	a := addr(t, "10.0.0.1")
	for i := range 3 {
		if !l.Allow(a, t0) {
			t.Fatalf("call %d of the burst denied", i+1)
		}
	}
	if l.Allow(a, t0) {
		t.Fatal("call past the burst allowed")
	}
	if l.Allow(a, at(999*time.Millisecond)) {
		t.Fatal("allowed before a token refilled (1/rate = 1s)")
	}
	if !l.Allow(a, at(time.Second)) {
		t.Fatal("denied after a token refilled")
	}
	if l.Allow(a, at(time.Second)) {
		t.Fatal("the refill gave more than one token")
	}
	// A long idle spell refills to the burst, not beyond.
	later := at(time.Hour)
	for i := range 3 {
		if !l.Allow(a, later) {
			t.Fatalf("after an hour: call %d denied", i+1)
		}
	}
	if l.Allow(a, later) {
		t.Fatal("after an hour: more than the burst allowed")
	}
}

func TestLimiterFractionalRate(t *testing.T) {
	l := NewLimiter(2, 1, 0) // a token every 500ms
	a := addr(t, "10.0.0.1")
	if !l.Allow(a, t0) {
		t.Fatal("first call denied")
	}
	if l.Allow(a, at(499*time.Millisecond)) {
		t.Fatal("allowed at 499ms")
	}
	if !l.Allow(a, at(500*time.Millisecond)) {
		t.Fatal("denied at 500ms")
	}
}

func TestLimiterSourceKeys(t *testing.T) {
	tests := []struct {
		name   string
		first  string
		second string
		shared bool
	}{
		{"same IPv6 /64", "2001:db8::1", "2001:db8::ffff:1:2:3", true},
		{"same IPv6 /64, top of range", "2001:db8:0:7::1", "2001:db8:0:7:ffff:ffff:ffff:ffff", true},
		{"different IPv6 /64", "2001:db8::1", "2001:db8:0:1::1", false},
		{"different IPv4 addresses", "10.0.0.1", "10.0.0.2", false},
		{"IPv4 neighbours in a /24", "192.0.2.1", "192.0.2.254", false},
		{"IPv4 and its mapped form", "10.0.0.1", "::ffff:10.0.0.1", true},
		{"IPv4 vs IPv6", "10.0.0.1", "2001:db8::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiter(1, 1, 0)
			if !l.Allow(addr(t, tt.first), t0) {
				t.Fatal("first source denied")
			}
			got := !l.Allow(addr(t, tt.second), t0)
			if got != tt.shared {
				t.Errorf("second source denied = %v, want %v (shared bucket)", got, tt.shared)
			}
			wantLen := 2
			if tt.shared {
				wantLen = 1
			}
			if l.Len() != wantLen {
				t.Errorf("Len() = %d, want %d", l.Len(), wantLen)
			}
		})
	}
}

// The limiter's memory is bounded by max however many sources hit it at once,
// and idle entries go away once their buckets refill.
func TestLimiterBound(t *testing.T) {
	const max = 100
	l := NewLimiter(1, 1, max)
	for i := range 10_000 {
		if !l.Allow(v4(i), t0) {
			t.Fatalf("source %d denied its first connection", i)
		}
		if n := l.Len(); n > max {
			t.Fatalf("after %d sources Len() = %d, want <= %d", i+1, n, max)
		}
	}
	if n := l.Len(); n != max {
		t.Fatalf("Len() = %d, want %d", n, max)
	}

	// The newest source is certainly held; it is limited at t0 and refilled
	// after 1/rate. Less than sweepEvery later, nothing has been swept.
	last := v4(9_999)
	if l.Allow(last, t0) {
		t.Fatal("the newest source was allowed twice at t0")
	}
	if !l.Allow(last, at(2*time.Second)) {
		t.Fatal("the newest source was not refilled after 2s")
	}
	if n := l.Len(); n != max {
		t.Fatalf("before sweepEvery: Len() = %d, want %d", n, max)
	}

	// sweepEvery after the last sweep, every bucket is full: one Allow
	// sweeps them all and leaves only its own entry.
	if !l.Allow(last, at(2*time.Second+sweepEvery)) {
		t.Fatal("denied after a sweep")
	}
	if n := l.Len(); n != 1 {
		t.Fatalf("after the sweep Len() = %d, want 1", n)
	}
}

// The periodic sweep drops only entries whose buckets are full.
func TestLimiterSweepKeepsLimitedSources(t *testing.T) {
	l := NewLimiter(0.01, 1, 0) // a token every 100s
	for i := range 50 {
		l.Allow(v4(i), t0)
	}
	if n := l.Len(); n != 50 {
		t.Fatalf("Len() = %d, want 50", n)
	}
	if l.Allow(v4(1), at(sweepEvery)) {
		t.Fatal("a limited source was allowed before its refill")
	}
	if n := l.Len(); n != 50 {
		t.Errorf("a sweep dropped limited sources: Len() = %d, want 50", n)
	}
	// Once they have refilled, the next sweep drops them; v4(1) is
	// recreated by the call that swept it.
	if !l.Allow(v4(1), at(200*time.Second)) {
		t.Fatal("a refilled source was denied")
	}
	if n := l.Len(); n != 1 {
		t.Errorf("after refill and sweep Len() = %d, want 1", n)
	}
}

// At the cap, a new source first sweeps full entries, so sources that are
// still limited keep their state when there is a full one to drop instead.
// (Were a victim picked at random, one of the 49 limited sources would lose
// its state 49 times in 50.)
func TestLimiterCapPrefersFullEntries(t *testing.T) {
	const max = 50
	l := NewLimiter(1, 1, max)
	l.Allow(v4(0), t0) // refilled by 1s
	for i := 1; i < max; i++ {
		l.Allow(v4(i), at(500*time.Millisecond)) // refilled by 1.5s
	}
	// At 1.2s only v4(0) is full, and no periodic sweep is due.
	now := at(1200 * time.Millisecond)
	if !l.Allow(v4(max), now) {
		t.Fatal("a new source was denied")
	}
	if n := l.Len(); n != max {
		t.Fatalf("Len() = %d, want %d", n, max)
	}
	for i := 1; i < max; i++ {
		if l.Allow(v4(i), now) {
			t.Fatalf("limited source %d lost its state to a new source", i)
		}
	}
}

func TestLimiterSet(t *testing.T) {
	l := NewLimiter(1, 1, 0)
	a := addr(t, "10.0.0.1")
	if !l.Allow(a, t0) || l.Allow(a, t0) {
		t.Fatal("burst of 1 not enforced")
	}

	l.Set(1, 1) // unchanged: state kept
	if l.Len() != 1 {
		t.Errorf("Set with the same values: Len() = %d, want 1", l.Len())
	}
	if l.Allow(a, t0) {
		t.Error("Set with the same values reset the bucket")
	}

	l.Set(1, 3) // burst changed: state forgotten, new burst applies
	if l.Len() != 0 {
		t.Errorf("Set with a new burst: Len() = %d, want 0", l.Len())
	}
	for i := range 3 {
		if !l.Allow(a, t0) {
			t.Fatalf("after Set(1, 3): call %d denied", i+1)
		}
	}
	if l.Allow(a, t0) {
		t.Error("after Set(1, 3): a fourth call allowed")
	}

	l.Set(4, 3) // rate changed: state forgotten, new rate applies
	if l.Len() != 0 {
		t.Errorf("Set with a new rate: Len() = %d, want 0", l.Len())
	}
	for range 3 {
		l.Allow(a, t0)
	}
	if l.Allow(a, t0) {
		t.Fatal("after Set(4, 3): burst not enforced")
	}
	if !l.Allow(a, at(250*time.Millisecond)) {
		t.Error("after Set(4, 3): no refill after 250ms")
	}
}

func TestNewLimiterDefaultMax(t *testing.T) {
	for _, max := range []int{0, -1} {
		if l := NewLimiter(1, 1, max); l.max != DefaultMaxSources {
			t.Errorf("NewLimiter(1, 1, %d).max = %d, want %d", max, l.max, DefaultMaxSources)
		}
	}
}

// Many goroutines on one source at one instant get exactly the burst between
// them; on many sources the cap holds. Run with -race.
func TestLimiterConcurrent(t *testing.T) {
	const (
		workers = 8
		calls   = 500
		burst   = 50
		max     = 16
	)
	l := NewLimiter(1, burst, max)
	shared := addr(t, "2001:db8::1")
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			// Each worker's own IPv6 address, in the shared /64.
			a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(w + 2)})
			for i := range calls {
				if l.Allow(a, t0) {
					allowed.Add(1)
				}
				l.Allow(v4(w*calls+i), at(time.Duration(i)*time.Millisecond))
				if n := l.Len(); n > max {
					t.Errorf("Len() = %d, want <= %d", n, max)
					return
				}
			}
		})
	}
	wg.Wait()
	// The shared /64 may have been evicted and recreated by the churn of
	// other sources, so it may get more than one burst, but never less: a
	// call is denied only by an exhausted bucket.
	if n := allowed.Load(); n < burst {
		t.Errorf("the shared /64 was allowed %d times, want at least %d", n, burst)
	}

	// Without churn, the total is exactly one burst.
	l = NewLimiter(1, burst, 0)
	allowed.Store(0)
	for range workers {
		wg.Go(func() {
			for range calls {
				if l.Allow(shared, t0) {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != burst {
		t.Errorf("one source at one instant was allowed %d times across %d goroutines, want %d", n, workers, burst)
	}
}

func BenchmarkLimiterAllow(b *testing.B) {
	const sources = 1024
	l := NewLimiter(10, 5, 0)
	addrs := make([]netip.Addr, sources)
	for i := range addrs {
		addrs[i] = v4(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Allow(addrs[i%sources], at(time.Duration(i)*time.Microsecond))
		i++
	}
}
