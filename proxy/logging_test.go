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
	g.denied(peer, policy.SourceNotAllowed, start, nil, io.EOF) // grows the sampler's map
	if n := testing.AllocsPerRun(200, func() {
		g.sample.reset() // so sampling lets every line through to the level check
		g.denied(peer, policy.SourceNotAllowed, start, nil, io.EOF)
	}); n != 0 {
		t.Errorf("a denial at a disabled level allocates %v times, want 0", n)
	}
	if built != 0 {
		t.Errorf("%d events built at a disabled level, want 0", built)
	}
	g.Update(&Settings{Rules: s.Rules, LogLevel: zerolog.InfoLevel})
	g.sample.reset()
	g.denied(peer, policy.SourceNotAllowed, start, nil, io.EOF)
	if built != 1 {
		t.Errorf("%d events built after Update to info, want 1", built)
	}
}

type eventCounter int

func (c *eventCounter) Run(*zerolog.Event, zerolog.Level, string) { *c++ }
