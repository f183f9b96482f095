package policy

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func banRules() BanRules {
	return BanRules{After: 3, Window: time.Minute, Duration: 10 * time.Minute, MaxDuration: 35 * time.Minute}
}

// failN counts n failures of a, one second apart from start, and returns
// the ban the last one caused, if any.
func failN(b *Bans, a netip.Addr, n int, start time.Time) (Ban, bool) {
	var ban Ban
	var ok bool
	for i := range n {
		ban, ok = b.Fail(a, start.Add(time.Duration(i)*time.Second))
	}
	return ban, ok
}

func TestBansAfterWithinWindow(t *testing.T) {
	b := NewBans(banRules(), 0)
	a := addr(t, "10.0.0.1")
	if _, ok := failN(b, a, 2, t0); ok {
		t.Fatal("banned after 2 of 3 failures")
	}
	if b.Banned(a, t0) {
		t.Fatal("banned before the third failure")
	}
	ban, ok := b.Fail(a, at(2*time.Second))
	if !ok {
		t.Fatal("not banned at the third failure")
	}
	if ban.Source != netip.MustParsePrefix("10.0.0.1/32") || ban.Failures != 3 || ban.Level != 1 || !ban.Until.Equal(at(2*time.Second+10*time.Minute)) {
		t.Fatalf("ban %+v", ban)
	}
	if !b.Banned(a, at(3*time.Second)) || b.Banned(addr(t, "10.0.0.2"), at(3*time.Second)) {
		t.Fatal("Banned does not match the one banned source")
	}
	if b.Active() != 1 {
		t.Fatalf("Active = %d", b.Active())
	}
	// Failures while banned change nothing.
	if _, ok := b.Fail(a, at(4*time.Second)); ok {
		t.Fatal("a banned source was banned again")
	}
	if b.Banned(a, ban.Until) {
		t.Fatal("still banned at Until")
	}
	if ended := b.Expire(ban.Until); len(ended) != 1 || ended[0].Source != ban.Source {
		t.Fatalf("Expire = %+v", ended)
	}
	if b.Active() != 0 {
		t.Fatalf("Active after expiry = %d", b.Active())
	}
}

func TestBansWindowSlides(t *testing.T) {
	b := NewBans(banRules(), 0)
	a := addr(t, "10.0.0.1")
	// Two failures, then one after they left the window: no ban.
	failN(b, a, 2, t0)
	if _, ok := b.Fail(a, at(61*time.Second)); ok {
		t.Fatal("failures outside the window counted")
	}
	// Two more inside the window of the last one: ban.
	if _, ok := b.Fail(a, at(70*time.Second)); ok {
		t.Fatal("banned at two failures in the window")
	}
	if _, ok := b.Fail(a, at(80*time.Second)); !ok {
		t.Fatal("three failures within a minute did not ban")
	}
}

func TestBansEscalateAndCap(t *testing.T) {
	b := NewBans(banRules(), 0)
	a := addr(t, "10.0.0.1")
	now := t0
	for i, want := range []time.Duration{10, 20, 35, 35} {
		ban, ok := failN(b, a, 3, now)
		if !ok {
			t.Fatalf("ban %d not made", i+1)
		}
		if got := ban.Until.Sub(now.Add(2 * time.Second)); got != want*time.Minute || ban.Level != i+1 {
			t.Fatalf("ban %d: %v level %d, want %v level %d", i+1, got, ban.Level, want*time.Minute, i+1)
		}
		now = ban.Until
		b.Expire(now)
	}
	// Clean for MaxDuration after the last ban: forgotten, back to the first length.
	now = now.Add(35 * time.Minute)
	b.Expire(now)
	if ban, _ := failN(b, a, 3, now); ban.Level != 1 || ban.Until.Sub(now.Add(2*time.Second)) != 10*time.Minute {
		t.Fatalf("after a clean spell: %+v", ban)
	}
}

func TestBansNever(t *testing.T) {
	r := banRules()
	r.Never = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("2001:db8::5/128")}
	b := NewBans(r, 0)
	for _, s := range []string{"10.0.0.7", "2001:db8::9"} { // the /64 holds a never address
		if _, ok := failN(b, addr(t, s), 10, t0); ok {
			t.Errorf("%s banned", s)
		}
		if _, err := b.Ban(addr(t, s), 0, t0); !errors.Is(err, ErrNeverBan) {
			t.Errorf("Ban(%s) = %v, want ErrNeverBan", s, err)
		}
	}
	if _, ok := failN(b, addr(t, "2001:db8:0:1::9"), 3, t0); !ok {
		t.Error("another /64 not banned")
	}
}

func TestBansIPv6ByPrefix(t *testing.T) {
	b := NewBans(banRules(), 0)
	b.Fail(addr(t, "2001:db8::1"), t0)
	b.Fail(addr(t, "2001:db8::2"), t0)
	ban, ok := b.Fail(addr(t, "2001:db8::ffff"), t0)
	if !ok || ban.Source != netip.MustParsePrefix("2001:db8::/64") {
		t.Fatalf("three addresses of one /64: %+v %v", ban, ok)
	}
	if !b.Banned(addr(t, "2001:db8::abcd"), t0) {
		t.Fatal("another address in the /64 is not banned")
	}
}

func TestBansSetLifts(t *testing.T) {
	b := NewBans(banRules(), 0)
	a, c := addr(t, "10.0.0.1"), addr(t, "10.0.1.1")
	failN(b, a, 3, t0)
	failN(b, c, 3, t0)
	r := banRules()
	r.Never = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	if lifted := b.Set(r); len(lifted) != 1 || lifted[0].Source.Addr() != a {
		t.Fatalf("adding a never entry lifted %+v", lifted)
	}
	if b.Banned(a, t0) || !b.Banned(c, t0) {
		t.Fatal("wrong bans after Set")
	}
	if lifted := b.Set(BanRules{}); len(lifted) != 1 || b.Active() != 0 || b.Banned(c, t0) {
		t.Fatalf("after = 0 lifted %+v, active %d", lifted, b.Active())
	}
	if _, ok := failN(b, c, 10, t0); ok {
		t.Fatal("bans off, still banned")
	}
}

func TestBansByHand(t *testing.T) {
	b := NewBans(banRules(), 0)
	a := addr(t, "10.0.0.1")
	ban, err := b.Ban(a, 0, t0)
	if err != nil || !ban.Until.Equal(at(10*time.Minute)) || ban.Failures != 0 {
		t.Fatalf("Ban = %+v, %v", ban, err)
	}
	if ban, _ = b.Ban(a, time.Hour, t0); !ban.Until.Equal(at(time.Hour)) {
		t.Fatalf("Ban -for 1h = %+v", ban)
	}
	if _, ok := b.Unban(a, t0); !ok || b.Banned(a, t0) || b.Active() != 0 {
		t.Fatal("Unban did not lift it")
	}
	if _, ok := b.Unban(a, t0); ok {
		t.Fatal("Unban of an address that is not banned said it lifted one")
	}
	// Unban clears failures too.
	failN(b, a, 2, t0)
	b.Unban(a, t0)
	if _, ok := b.Fail(a, at(3*time.Second)); ok {
		t.Fatal("failures survived Unban")
	}
}

func TestBansRestore(t *testing.T) {
	b := NewBans(banRules(), 0)
	failN(b, addr(t, "10.0.0.1"), 3, t0)
	b.Ban(addr(t, "10.0.0.2"), time.Minute, t0)
	saved := b.List(t0)
	if len(saved) != 2 || saved[0].Source.Addr() != addr(t, "10.0.0.2") {
		t.Fatalf("List = %+v (soonest first)", saved)
	}
	b2 := NewBans(banRules(), 0)
	if n := b2.Restore(saved, at(2*time.Minute)); n != 1 {
		t.Fatalf("Restore kept %d, want 1 (one had expired)", n)
	}
	if !b2.Banned(addr(t, "10.0.0.1"), at(2*time.Minute)) || b2.Banned(addr(t, "10.0.0.2"), at(2*time.Minute)) {
		t.Fatal("restored the wrong bans")
	}
	// The restored ban's level carries on.
	until := saved[1].Until
	b2.Expire(until)
	if ban, _ := failN(b2, addr(t, "10.0.0.1"), 3, until); ban.Level != 2 {
		t.Fatalf("after restore, next ban level %d, want 2", ban.Level)
	}
}

// TestBansBound: many failing and banned sources never hold more than the
// cap, and Expire brings the table back down.
func TestBansBound(t *testing.T) {
	const capN = 100
	r := banRules()
	r.After = 2
	b := NewBans(r, capN)
	for i := range 10_000 {
		a := v4(i)
		now := at(time.Duration(i) * time.Millisecond)
		b.Fail(a, now)
		if i%2 == 0 {
			b.Fail(a, now)
		}
		if f, bn := b.Sizes(); f > capN || bn > capN {
			t.Fatalf("after %d sources: %d failure and %d ban records, cap %d", i+1, f, bn, capN)
		}
		if b.Active() > capN {
			t.Fatalf("Active %d over the cap", b.Active())
		}
	}
	later := at(24 * time.Hour)
	b.Expire(later)
	b.Expire(later.Add(r.MaxDuration))
	if f, bn := b.Sizes(); f != 0 || bn != 0 || b.Active() != 0 {
		t.Fatalf("after everything expired: %d failure records, %d ban records, %d active", f, bn, b.Active())
	}
}
