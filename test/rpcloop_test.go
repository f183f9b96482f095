package test

import (
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
	"github.com/distgate/distgate/wire"
)

// The default rate limit, as config.example.toml sets it out.
const (
	defaultRate  = 2.0
	defaultBurst = 20
)

// TestRPCLoop: with the default rate limit, an operator's script that calls
// `bin/demo rpc` 20 times back to back from one source gets all 20
// through; a scanner reconnecting in a tight loop from another allowed
// source is still held to the burst plus the rate.
func TestRPCLoop(t *testing.T) {
	t.Parallel()
	rel := testenv.StartRelease(t, relName, filepath.Join("testdata", "release", "rel"))
	p := rel.Port

	// rate and burst left out: the defaults. Bans are off so that the
	// scanner below meets the rate limiter alone (with them on, its sixth
	// missing_flags would ban it: TestWatchBans).
	f := testenv.AppGate("loop", p,
		testenv.Allow([]string{"127.0.0.1/32"}, "rpc-*-"+relName+"@*"),
		testenv.Allow([]string{"127.0.0.4/32"}))
	f.Gate[0].Ban.After = new(0)
	metrics := testenv.Addr("127.0.0.1", testenv.Port(t, "127.0.0.1"))
	f.Metrics.Listen = metrics
	g := testenv.StartGate(t, f)

	const calls = 20
	var took []time.Duration
	start := time.Now()
	for i := range calls {
		t0 := time.Now()
		out, err := rel.Run(nil, "rpc", "IO.puts(node())")
		took = append(took, time.Since(t0))
		if err != nil || strings.TrimSpace(out) != relName+"@127.0.0.1" {
			t.Fatalf("call %d of %d: %v, output %q", i+1, calls, err, out)
		}
	}
	total := time.Since(start)
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	t.Logf("%d rpc calls back to back in %v: each %v min, %v median, %v max",
		calls, total.Round(time.Millisecond), sorted[0].Round(time.Millisecond),
		sorted[calls/2].Round(time.Millisecond), sorted[calls-1].Round(time.Millisecond))
	g.WaitN(calls, testenv.Msg("admitted"))
	if c := g.Count(testenv.Reason("rate_limited")); c != 0 {
		t.Errorf("%d rate_limited during the loop", c)
	}

	// A scanner's tight reconnect loop from an allowed source: bounded in
	// count and in time.
	const scanFor, scanMax = 3 * time.Second, 50000
	d := testenv.Dialer("127.0.0.4")
	gate := testenv.Addr("127.0.0.1", p)
	conns, gotBytes := 0, 0
	scanStart := time.Now()
	for conns < scanMax && time.Since(scanStart) < scanFor {
		c, err := d.Dial("tcp", gate)
		if err != nil {
			t.Fatalf("scanner connection %d: %v", conns+1, err)
		}
		conns++
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write(wire.ScannerProbe) // a rate-limited one may be closed already
		b, err := io.ReadAll(c)
		gotBytes += len(b)
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("scanner connection %d: not closed within 5s", conns)
		}
		_ = c.Close()
	}
	elapsed := time.Since(scanStart)
	if gotBytes != 0 {
		t.Errorf("the scanner got %d bytes back", gotBytes)
	}
	ss := metricsWait(t, metrics, "every scanner connection decided", func(ss []metricsSample) bool {
		passed, _ := metricsFind(ss, "distgate_connections_total", "gate", "loop", "verdict", "denied", "reason", "missing_flags")
		limited, _ := metricsFind(ss, "distgate_connections_total", "gate", "loop", "verdict", "denied", "reason", "rate_limited")
		return int(passed+limited) >= conns
	})
	passed := int(metricsValue(t, ss, "distgate_connections_total", "gate", "loop", "verdict", "denied", "reason", "missing_flags"))
	limited := int(metricsValue(t, ss, "distgate_connections_total", "gate", "loop", "verdict", "denied", "reason", "rate_limited"))
	t.Logf("scanner: %d connections in %v; %d reached the first message, %d rate_limited (nothing read)",
		conns, elapsed.Round(time.Millisecond), passed, limited)
	// The bucket starts full and refills at the rate while the loop runs
	// (and while the metrics are scraped: one token of slack).
	if most := defaultBurst + int(defaultRate*elapsed.Seconds()) + 1; passed < defaultBurst || passed > most {
		t.Errorf("%d scanner connections got past the limiter, want %d to %d", passed, defaultBurst, most)
	}
	if passed+limited != conns || limited == 0 {
		t.Errorf("%d passed + %d limited, want %d connections, most of them limited", passed, limited, conns)
	}
}
