package main

import (
	"math"
	"strings"
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

// TestTargetChecks judges synthetic figures: a variant that did not run
// gives "not measured" rows that point at the reason, never a verdict;
// measured ones are judged on the added figures (path minus direct).
func TestTargetChecks(t *testing.T) {
	h := &harness{o: quickOptions, res: newResults(), skipped: map[string]string{"distgate-kernel": "no CAP_BPF"}}
	for round, v := range map[int]map[string]float64{
		1: {"direct": 2.0, "distgate": 2.5, "haproxy": 2.4, "nginx": 2.6},
		2: {"direct": 3.0, "distgate": 3.5, "haproxy": 3.4, "nginx": 3.6},
	} {
		for target, ms := range v {
			h.res.put("esetup_p50", target, round, ms)
			h.res.put("esetup_p99", target, round, ms*2)
		}
	}
	rows := map[string][3]string{}
	for _, r := range h.targetChecks() {
		rows[r[0]] = r
	}
	// distgate adds 0.5 ms, HAProxy 0.4 ms: 1.25× > 1.2×.
	user := rows["`user`: Erlang setup (connect → erpc → disconnect) added p50 ≤ 1.2× HAProxy's added"]
	if user[2] != "**missed**" || !strings.Contains(user[1], "distgate +0.50 ms, HAProxy +0.40 ms") {
		t.Errorf("user setup row = %q", user)
	}
	kernel := rows["`kernel`: Erlang setup (connect → erpc → disconnect) added p50 ≤ 1.2× HAProxy's added"]
	if kernel[2] != "not measured" || !strings.Contains(kernel[1], "distgate-kernel did not run") {
		t.Errorf("kernel setup row = %q", kernel)
	}
	bulk := rows["`user`: bulk client→upstream ≥ 1.2× HAProxy"]
	if bulk[2] != "not measured" || bulk[1] != "test not run" {
		t.Errorf("bulk row = %q", bulk)
	}
}
