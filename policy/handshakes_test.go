package policy

import (
	"net/netip"
	"testing"
)

// TestHandshakesReserve: a quarter of the slots is kept for sources that hold
// none, so one source (or a few) cannot take them all.
func TestHandshakesReserve(t *testing.T) {
	a := netip.MustParseAddr("127.0.0.2")
	b := netip.MustParseAddr("127.0.0.3")
	c := netip.MustParseAddr("127.0.0.4")
	d := netip.MustParseAddr("127.0.0.5")
	h := NewHandshakes(8) // 6 shared, 2 kept for sources holding none
	for i := range 6 {
		if !h.Acquire(a) {
			t.Fatalf("a: slot %d refused, want the 6 shared ones", i+1)
		}
	}
	if h.Acquire(a) {
		t.Fatal("a took a 7th slot: a source already in a handshake may not use the reserve")
	}
	if !h.Acquire(b) {
		t.Fatal("b, holding none, was refused a kept slot")
	}
	if h.Acquire(b) {
		t.Fatal("b took a second kept slot")
	}
	if !h.Acquire(c) {
		t.Fatal("c, holding none, was refused the last kept slot")
	}
	if h.Acquire(d) || h.InProgress() != 8 {
		t.Fatalf("d got a slot past the cap (in progress %d)", h.InProgress())
	}
	h.Release(a)
	if h.Acquire(a) {
		t.Fatal("a took a slot freed below the cap while it still holds 5")
	}
	if !h.Acquire(d) {
		t.Fatal("d, holding none, was refused the freed slot")
	}
	for range 5 {
		h.Release(a)
	}
	h.Release(b)
	h.Release(c)
	h.Release(d)
	if h.InProgress() != 0 || len(h.per) != 0 {
		t.Fatalf("after every release: %d in progress, %d sources held", h.InProgress(), len(h.per))
	}
	if !h.Acquire(a) {
		t.Fatal("a refused once everything was released")
	}
}

// TestHandshakesIPv6Key: addresses in one /64 are one source for the reserve.
func TestHandshakesIPv6Key(t *testing.T) {
	h := NewHandshakes(4) // 3 shared, 1 kept
	x1 := netip.MustParseAddr("2001:db8::1")
	x2 := netip.MustParseAddr("2001:db8::2")
	y := netip.MustParseAddr("2001:db8:0:1::1")
	for range 3 {
		if !h.Acquire(x1) {
			t.Fatal("x1 refused a shared slot")
		}
	}
	if h.Acquire(x2) {
		t.Fatal("x2, in x1's /64, used the kept slot")
	}
	if !h.Acquire(y) {
		t.Fatal("y, another /64, was refused the kept slot")
	}
}

// TestHandshakesNoCap: nil (max_handshakes = 0) never refuses; tiny caps
// keep no reserve.
func TestHandshakesNoCap(t *testing.T) {
	h := NewHandshakes(0)
	a := netip.MustParseAddr("127.0.0.2")
	for range 1000 {
		if !h.Acquire(a) {
			t.Fatal("no cap refused")
		}
	}
	h.Release(a)
	if h.InProgress() != 0 {
		t.Fatal("nil InProgress != 0")
	}
	one := NewHandshakes(1)
	if !one.Acquire(a) || one.Acquire(netip.MustParseAddr("127.0.0.3")) {
		t.Fatal("a cap of 1 must give its one slot to the first source and none to a second")
	}
}
