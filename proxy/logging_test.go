package proxy

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/distgate/distgate/policy"
)

// TestLogLevelFromSettings: the gate logs at its settings' level, and an
// Update changes it for the lines that follow; decisions are counted
// whatever the level.
func TestLogLevelFromSettings(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	quiet := settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"})))
	quiet.LogLevel = zerolog.WarnLevel
	h := startGate(t, up.addr(), quiet)

	c := dialFrom(t, "127.0.0.3", h.addr)
	expectSilentClose(t, c, false)
	waitUntil(t, "the denial to be counted", func() bool { return h.obs.view().decided[policy.SourceNotAllowed] == 1 })
	a, u := admit(t, h, up, "127.0.0.2", "a@h")
	_ = a.Close()
	_ = u.Close()
	waitUntil(t, "the connection to end", func() bool { return h.g.Live() == 0 })
	if es := h.log.entries(t); len(es) != 0 {
		t.Fatalf("at level warn the gate wrote %v, want nothing", es)
	}

	loud := *quiet
	loud.LogLevel = zerolog.InfoLevel
	h.g.Update(&loud)
	c = dialFrom(t, "127.0.0.3", h.addr)
	expectSilentClose(t, c, false)
	if e := h.log.waitFor(t, "denied", from(c)); e.str("reason") != "source_not_allowed" {
		t.Errorf("after Update to info: %v", e)
	}

	h.g.Update(quiet)
	c = dialFrom(t, "127.0.0.3", h.addr)
	expectSilentClose(t, c, false)
	waitUntil(t, "the third denial to be counted", func() bool { return h.obs.view().decided[policy.SourceNotAllowed] == 3 })
	if n := len(h.log.all(t, "denied", nil)); n != 1 {
		t.Errorf("%d denied lines after Update back to warn, want still 1", n)
	}
}

// TestDeniedAtDisabledLevelCostsNothing: a denial the level leaves out
// builds no event at all (the level is the logger's, not a filter on the
// output), so a flood at level warn costs no formatting.
func TestDeniedAtDisabledLevelCostsNothing(t *testing.T) {
	s := settings(rules(policy.RequireOTP25))
	s.LogLevel = zerolog.WarnLevel
	var built eventCounter // counts events that were built, whatever the writer does
	g := NewGate(Config{Name: "g", Upstream: "127.0.0.1:1", Settings: s, Log: zerolog.New(io.Discard).Hook(&built)})
	peer := netip.MustParseAddrPort("192.0.2.1:4000")
	start := time.Now()
	g.denied(peer, policy.SourceNotAllowed, start, nil, io.EOF, nil) // grows the sampler's map
	if n := testing.AllocsPerRun(200, func() {
		g.sample.reset() // so sampling lets every line through to the level check
		g.denied(peer, policy.SourceNotAllowed, start, nil, io.EOF, nil)
	}); n != 0 {
		t.Errorf("a denial at a disabled level allocates %v times, want 0", n)
	}
	if built != 0 {
		t.Errorf("%d events built at a disabled level, want 0", built)
	}
	g.Update(&Settings{Rules: s.Rules, LogLevel: zerolog.InfoLevel})
	g.sample.reset()
	g.denied(peer, policy.SourceNotAllowed, start, nil, io.EOF, nil)
	if built != 1 {
		t.Errorf("%d events built after Update to info, want 1", built)
	}
}

type eventCounter int

func (c *eventCounter) Run(*zerolog.Event, zerolog.Level, string) { *c++ }

// TestSamplerCountsSources: the summary's sources is the number of distinct
// sources with a suppressed line, also past the 256 whose lines are
// tracked: exact up to 1024, estimated (and said so) beyond.
func TestSamplerCountsSources(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sources   int // distinct sources, each denied `each` times
		each      int
		want      int // distinct sources with a suppressed line
		estimated bool
	}{
		{name: "one loud source", sources: 1, each: 50, want: 1},
		{name: "tracked sources over their share", sources: 200, each: 7, want: 200},
		{name: "past the tracked ones", sources: 1000, each: 1, want: 1000 - sampleSources},
		{name: "a flood from many sources", sources: 79000, each: 2, want: 79000 - sampleSources, estimated: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s sampler
			suppressedWant := 0
			for i := range tc.sources {
				a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				for j := range tc.each {
					if !s.allow(a) {
						suppressedWant++
					} else if i >= sampleSources || j >= samplePerSource {
						t.Fatalf("source %d line %d was let through", i, j)
					}
				}
			}
			n, sources, est := s.reset()
			if n != suppressedWant {
				t.Errorf("suppressed %d, want %d", n, suppressedWant)
			}
			if est != tc.estimated {
				t.Errorf("estimated = %v, want %v", est, tc.estimated)
			}
			if tc.estimated {
				// The sketch's standard error is 1.6%: 7% is over four of them.
				if d := float64(sources-tc.want) / float64(tc.want); d > 0.07 || d < -0.07 {
					t.Errorf("sources %d, want %d within 7%%", sources, tc.want)
				}
			} else if sources != tc.want {
				t.Errorf("sources %d, want %d", sources, tc.want)
			}
			// A new period starts from nothing.
			if n, sources, est := s.reset(); n != 0 || sources != 0 || est {
				t.Errorf("after reset: %d, %d, %v", n, sources, est)
			}
		})
	}
}

// TestSamplerIPv6PerPrefix: addresses of one /64 are one source, for the
// lines let through and for the count.
func TestSamplerIPv6PerPrefix(t *testing.T) {
	var s sampler
	base := netip.MustParseAddr("2001:db8::1").As16()
	let := 0
	for i := range 3000 {
		a := base
		a[15], a[14] = byte(i), byte(i>>8)
		if s.allow(netip.AddrFrom16(a)) {
			let++
		}
	}
	if n, sources, est := s.reset(); let != samplePerSource || n != 3000-samplePerSource || sources != 1 || est {
		t.Errorf("let %d through, then suppressed %d from %d sources (estimated %v); want %d, %d, 1",
			let, n, sources, est, samplePerSource, 3000-samplePerSource)
	}
}

// TestSuppressedLineSaysEstimated: the summary line carries the count and,
// past the exact bound, says it is an estimate.
func TestSuppressedLineSaysEstimated(t *testing.T) {
	lb := &logBuf{}
	g := NewGate(Config{Name: "g", Upstream: "127.0.0.1:1", Settings: settings(rules(policy.RequireOTP25)), Log: zerolog.New(lb)})
	start := time.Now()
	for i := range 5000 {
		g.denied(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1), policy.SourceNotAllowed, start, nil, nil, nil)
	}
	g.logSuppressed()
	e := lb.waitFor(t, "denials suppressed", nil)
	if e.num("suppressed") != 5000-sampleSources || e["estimated"] != true {
		t.Errorf("summary = %v, want suppressed %d, estimated", e, 5000-sampleSources)
	}
	if d := e.num("sources") - (5000 - sampleSources); d > 400 || d < -400 {
		t.Errorf("summary sources %d, want about %d", e.num("sources"), 5000-sampleSources)
	}
}
