package policy

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxBanSources is the hard cap on the sources a Bans table tracks:
// sources with recent failures, and sources banned or remembered for
// escalation, each.
const DefaultMaxBanSources = 65536

// ErrNeverBan is returned when a ban is asked for a source the rules say must
// never be banned.
var ErrNeverBan = errors.New("policy: source is listed in ban.never")

// BanRules say when a gate bans a source (design.md, Bans). The zero value
// bans nothing.
type BanRules struct {
	// After is how many failures within Window ban a source; 0 turns bans
	// off (and lifts existing ones when applied with Set).
	After  int
	Window time.Duration
	// Duration is the first ban's length; each further ban of the same
	// source doubles it, up to MaxDuration.
	Duration    time.Duration
	MaxDuration time.Duration
	// Never lists sources that are never banned.
	Never []netip.Prefix
}

// Off reports whether the rules ban nothing automatically.
func (r *BanRules) Off() bool { return r.After <= 0 }

func (r *BanRules) never(k netip.Addr) bool {
	// A ban covers the key's whole prefix (an IPv6 /64), so a never entry
	// anywhere inside it protects all of it.
	kp := KeyPrefix(k)
	for _, p := range r.Never {
		if p.Overlaps(kp) {
			return true
		}
	}
	return false
}

// length returns the length of a source's level-th ban (1 is the first).
func (r *BanRules) length(level int) time.Duration {
	d := r.Duration
	for i := 1; i < level && d < r.MaxDuration; i++ {
		d *= 2
	}
	if r.MaxDuration > 0 && d > r.MaxDuration {
		d = r.MaxDuration
	}
	return d
}

// KeyPrefix is the prefix a source key stands for: the address itself for
// IPv4, the /64 for IPv6 (see Key).
func KeyPrefix(a netip.Addr) netip.Prefix {
	k := Key(a)
	if k.Is4() {
		return netip.PrefixFrom(k, 32)
	}
	return netip.PrefixFrom(k, 64)
}

// Ban is one banned source.
type Ban struct {
	Source   netip.Prefix // the key's prefix: a /32 or an IPv6 /64
	Until    time.Time
	Failures int // failures that caused it; 0 for a ban asked for by hand
	Level    int // 1 for a source's first ban, 2 for the next, ...
}

// banRec is what the table remembers of a source that was banned: the ban
// while it runs, and its level until the source has been clean for
// MaxDuration after it (so the next ban escalates).
type banRec struct {
	until    time.Time
	failures int
	level    int
	active   bool // false once expired or lifted: kept for escalation only
}

// failRec holds the times of a source's failures within the window, oldest
// first; never more than After.
type failRec struct{ times []time.Time }

// Bans counts failures per source key and bans sources that fail too often.
// Memory is bounded: failure records older than the window are dropped,
// expired bans are kept only until they no longer escalate, and each map
// is capped at max entries (a new source then evicts the entry that matters
// least). It is safe for concurrent use; Banned is cheap when nothing is
// banned.
type Bans struct {
	mu    sync.Mutex
	rules BanRules
	max   int
	fails map[netip.Addr]*failRec
	bans  map[netip.Addr]*banRec
	n     atomic.Int64 // active bans, read without the lock by Banned
}

// NewBans returns a table with the given rules, holding at most max sources
// per map (DefaultMaxBanSources if max <= 0).
func NewBans(r BanRules, max int) *Bans {
	if max <= 0 {
		max = DefaultMaxBanSources
	}
	return &Bans{rules: r, max: max, fails: make(map[netip.Addr]*failRec), bans: make(map[netip.Addr]*banRec)}
}

// Set applies new rules. Bans of sources that the new rules never ban, and
// every ban if the new rules turn bans off, are lifted and returned.
// Failure counts are kept.
func (b *Bans) Set(r BanRules) []Ban {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rules = r
	var lifted []Ban
	for k, rec := range b.bans {
		if r.Off() || r.never(k) {
			if rec.active {
				lifted = append(lifted, b.banOf(k, rec))
				b.n.Add(-1)
			}
			delete(b.bans, k)
			delete(b.fails, k)
		}
	}
	sortBans(lifted)
	return lifted
}

// Banned reports whether a's key is banned at now.
func (b *Bans) Banned(a netip.Addr, now time.Time) bool {
	if b.n.Load() == 0 {
		return false
	}
	k := Key(a)
	b.mu.Lock()
	defer b.mu.Unlock()
	rec, ok := b.bans[k]
	return ok && rec.active && now.Before(rec.until)
}

// Fail counts a failure of a at now. When it is the After-th within the
// window, a is banned and the ban is returned with ok true. A source that is
// already banned, never banned, or when bans are off, only returns false.
func (b *Bans) Fail(a netip.Addr, now time.Time) (Ban, bool) {
	k := Key(a)
	b.mu.Lock()
	defer b.mu.Unlock()
	r := &b.rules
	if r.Off() || !k.IsValid() || r.never(k) {
		return Ban{}, false
	}
	if rec, ok := b.bans[k]; ok && rec.active && now.Before(rec.until) {
		return Ban{}, false
	}
	f, ok := b.fails[k]
	if !ok {
		if len(b.fails) >= b.max {
			b.evictFail(now)
		}
		f = &failRec{times: make([]time.Time, 0, min(r.After, 16))}
		b.fails[k] = f
	}
	// Drop failures that left the window, then count this one.
	cut := 0
	for cut < len(f.times) && now.Sub(f.times[cut]) >= r.Window {
		cut++
	}
	f.times = append(f.times[:0], f.times[cut:]...)
	if len(f.times) >= r.After {
		f.times = f.times[1:]
	}
	f.times = append(f.times, now)
	if len(f.times) < r.After {
		return Ban{}, false
	}
	delete(b.fails, k)
	return b.ban(k, r.length(b.nextLevel(k)), len(f.times), now), true
}

// nextLevel is the level the next ban of k would have.
func (b *Bans) nextLevel(k netip.Addr) int {
	if rec, ok := b.bans[k]; ok {
		return rec.level + 1
	}
	return 1
}

// ban records a ban of k for d from now. The caller holds b.mu.
func (b *Bans) ban(k netip.Addr, d time.Duration, failures int, now time.Time) Ban {
	rec, ok := b.bans[k]
	if !ok {
		if len(b.bans) >= b.max {
			b.evictBan()
		}
		rec = &banRec{}
		b.bans[k] = rec
	}
	if !rec.active {
		b.n.Add(1)
	}
	rec.active = true
	rec.level++
	rec.failures = failures
	rec.until = now.Add(d)
	return b.banOf(k, rec)
}

// Ban bans a's key for d from now (d <= 0: the rules' Duration, or 15
// minutes if that is zero), as an operator asked. It fails with ErrNeverBan
// for a source the rules never ban.
func (b *Bans) Ban(a netip.Addr, d time.Duration, now time.Time) (Ban, error) {
	k := Key(a)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !k.IsValid() {
		return Ban{}, errors.New("policy: invalid address")
	}
	if b.rules.never(k) {
		return Ban{}, ErrNeverBan
	}
	if d <= 0 {
		d = b.rules.Duration
	}
	if d <= 0 {
		d = 15 * time.Minute
	}
	delete(b.fails, k)
	return b.ban(k, d, 0, now), nil
}

// Unban lifts a's ban and forgets its failures and escalation. It reports
// the ban lifted, with ok false if a was not banned.
func (b *Bans) Unban(a netip.Addr, now time.Time) (Ban, bool) {
	k := Key(a)
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.fails, k)
	rec, ok := b.bans[k]
	if !ok {
		return Ban{}, false
	}
	delete(b.bans, k)
	if !rec.active {
		return Ban{}, false
	}
	b.n.Add(-1)
	return b.banOf(k, rec), now.Before(rec.until)
}

// Expire ends the bans that ran out by now and returns them; it also drops
// failure records older than the window and escalation memories older than
// MaxDuration. Call it periodically (a second is plenty): it is what keeps
// the table small when no new source arrives.
func (b *Bans) Expire(now time.Time) []Ban {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ended []Ban
	for k, rec := range b.bans {
		if rec.active && !now.Before(rec.until) {
			rec.active = false
			b.n.Add(-1)
			ended = append(ended, b.banOf(k, rec))
		}
		if !rec.active && now.Sub(rec.until) >= b.rules.MaxDuration {
			delete(b.bans, k)
		}
	}
	for k, f := range b.fails {
		if len(f.times) == 0 || now.Sub(f.times[len(f.times)-1]) >= b.rules.Window {
			delete(b.fails, k)
		}
	}
	sortBans(ended)
	return ended
}

// List returns the active bans, soonest to end first.
func (b *Bans) List(now time.Time) []Ban {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Ban
	for k, rec := range b.bans {
		if rec.active && now.Before(rec.until) {
			out = append(out, b.banOf(k, rec))
		}
	}
	sortBans(out)
	return out
}

// Active returns the number of active bans.
func (b *Bans) Active() int { return int(b.n.Load()) }

// Sizes returns the number of failure records and of ban records held
// (active or remembered for escalation): what the caps bound.
func (b *Bans) Sizes() (fails, bans int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.fails), len(b.bans)
}

// Restore re-creates bans saved by an earlier process (List's output), as
// long as they have not expired at now and the rules still allow them.
// Restored bans keep their level, so a source that comes back escalates.
func (b *Bans) Restore(saved []Ban, now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, s := range saved {
		k := Key(s.Source.Addr())
		if !k.IsValid() || !now.Before(s.Until) || b.rules.never(k) {
			continue
		}
		if old, ok := b.bans[k]; ok && old.active {
			continue
		}
		if len(b.bans) >= b.max {
			b.evictBan()
		}
		b.bans[k] = &banRec{until: s.Until, failures: s.Failures, level: max(s.Level, 1), active: true}
		b.n.Add(1)
		n++
	}
	return n
}

func (b *Bans) banOf(k netip.Addr, rec *banRec) Ban {
	return Ban{Source: KeyPrefix(k), Until: rec.until, Failures: rec.failures, Level: rec.level}
}

// evictFail makes room for one failure record: records whose failures all
// left the window go first; failing that, the one whose last failure is
// oldest. The caller holds b.mu. O(entries), but only at the cap, and each
// call frees at least one slot.
func (b *Bans) evictFail(now time.Time) {
	var victim netip.Addr
	var oldest time.Time
	for k, f := range b.fails {
		last := time.Time{}
		if len(f.times) > 0 {
			last = f.times[len(f.times)-1]
		}
		if now.Sub(last) >= b.rules.Window {
			delete(b.fails, k)
			continue
		}
		if !victim.IsValid() || last.Before(oldest) {
			victim, oldest = k, last
		}
	}
	if len(b.fails) >= b.max && victim.IsValid() {
		delete(b.fails, victim)
	}
}

// evictBan makes room for one ban record: an expired one if there is one,
// else the active ban that ends soonest. The caller holds b.mu.
func (b *Bans) evictBan() {
	var victim netip.Addr
	var soonest time.Time
	for k, rec := range b.bans {
		if !rec.active {
			delete(b.bans, k)
			return
		}
		if !victim.IsValid() || rec.until.Before(soonest) {
			victim, soonest = k, rec.until
		}
	}
	if victim.IsValid() {
		delete(b.bans, victim)
		b.n.Add(-1)
	}
}

func sortBans(bs []Ban) {
	slices.SortFunc(bs, func(x, y Ban) int {
		if c := x.Until.Compare(y.Until); c != 0 {
			return c
		}
		return x.Source.Addr().Compare(y.Source.Addr())
	})
}
