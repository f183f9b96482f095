package main

import (
	"math"
	"slices"
	"sync"

	"github.com/distgate/distgate/internal/attack"
)

// results holds every measured value by metric, target and round.
type results struct {
	mu    sync.Mutex
	m     map[string]map[string]map[int]float64
	notes []string
}

func newResults() *results {
	return &results{m: map[string]map[string]map[int]float64{}}
}

func (r *results) put(metric, target string, round int, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[metric] == nil {
		r.m[metric] = map[string]map[int]float64{}
	}
	if r.m[metric][target] == nil {
		r.m[metric][target] = map[int]float64{}
	}
	r.m[metric][target][round] = v
}

func (r *results) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, s)
}

// median of a target's values over the rounds.
func (r *results) median(metric, target string) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var vs []float64
	for _, v := range r.m[metric][target] {
		vs = append(vs, v)
	}
	return attack.Median(vs)
}

// added is the median over rounds of target minus base in the same round,
// so slow drifts of a shared machine cancel out.
func (r *results) added(metric, target, base string) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var vs []float64
	for round, v := range r.m[metric][target] {
		if b, ok := r.m[metric][base][round]; ok {
			vs = append(vs, v-b)
		}
	}
	return attack.Median(vs)
}

// percentile is the nearest-rank percentile (q in 0..1) of ns values, in
// µs; NaN for none, which the report shows as missing.
func percentile(ns []int64, q float64) float64 {
	if len(ns) == 0 {
		return math.NaN()
	}
	return float64(attack.Percentile(ns, q)) / 1e3
}

// sortedKeys returns m's keys in order, for a stable report.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
