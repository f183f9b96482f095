package main

import (
	"math"
	"testing"
)

func TestPercentile(t *testing.T) {
	ns := make([]int64, 1000)
	for i := range ns {
		ns[i] = int64(1000 - i) // 1..1000 µs in ns, reversed
		ns[i] *= 1000
	}
	for _, c := range []struct{ q, want float64 }{{.5, 500}, {.99, 990}, {.999, 999}, {1, 1000}} {
		if got := percentile(ns, c.q); got != c.want {
			t.Errorf("percentile(%v) = %v µs, want %v", c.q, got, c.want)
		}
	}
	if !math.IsNaN(percentile(nil, .5)) {
		t.Error("percentile of nothing is not NaN")
	}
}

// TestAddedPairsRounds checks that added latency is taken per round against
// the same round's direct figure, and rounds missing either side are skipped.
func TestAddedPairsRounds(t *testing.T) {
	r := newResults()
	for round, v := range map[int][2]float64{1: {10, 30}, 2: {50, 60}, 3: {20, 45}} {
		r.put("p50", "direct", round, v[0])
		r.put("p50", "distgate", round, v[1])
	}
	r.put("p50", "distgate", 4, 1000) // no direct figure for round 4
	if got, ok := r.added("p50", "distgate", "direct"); !ok || got != 20 {
		t.Errorf("added = %v, %v; want the median of 20, 10, 25 = 20", got, ok)
	}
}
