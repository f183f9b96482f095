package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/wire"
)

// scrape returns what /metrics serves.
func scrape(t *testing.T, m *Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The names, labels and help texts are a contract (design: Metrics):
// dashboards and alerts are written against them.
func TestExposition(t *testing.T) {
	m := New()
	g := m.Gate("myapp")
	g.Decided(policy.Admitted, time.Millisecond)
	g.Decided(policy.RateLimited, time.Microsecond)
	g.Decided(policy.Reason(200), time.Microsecond) // unknown: timed, not counted
	g.Moved(10, 20)
	g.Active(2)
	g.Active(-1)
	g.Suppressed(3)
	g.LimiterSources(4)
	g.Decided(policy.Banned, time.Microsecond)
	g.Handshake(wire.OutcomeOK)
	g.Handshake(wire.OutcomeAuthFailed)
	g.Handshake(wire.OutcomeAuthFailed)
	g.Handshake(wire.Outcome(99)) // unknown: not counted
	g.Closed(policy.Admitted, wire.OutcomeOK)
	g.Closed(policy.Admitted, wire.OutcomeAuthFailed)
	g.Closed(policy.Revoked, wire.OutcomeOK)
	g.Closed(policy.Banned, wire.OutcomeAborted) // stopped in the watch: the reason wins
	g.Banned()
	g.Banned()
	g.BansActive(1)
	m.Reload(true)
	m.Reload(false)
	m.Reload(false)
	out := scrape(t, m)
	for _, want := range []string{
		"# HELP distgate_connections_total Connections decided, by verdict and denial reason (empty for admitted).",
		"# TYPE distgate_connections_total counter",
		`distgate_connections_total{gate="myapp",reason="",verdict="admitted"} 1`,
		`distgate_connections_total{gate="myapp",reason="rate_limited",verdict="denied"} 1`,
		`distgate_connections_total{gate="myapp",reason="source_not_allowed",verdict="denied"} 0`,
		`distgate_connections_total{gate="myapp",reason="shutdown",verdict="denied"} 0`,
		"# HELP distgate_connections_active Admitted connections: in the handshake watch or forwarded.",
		"# TYPE distgate_connections_active gauge",
		`distgate_connections_active{gate="myapp"} 1`,
		"# HELP distgate_bytes_total Bytes forwarded; in = client to node. Live connections are counted every summary period, exactly when they end.",
		`distgate_bytes_total{direction="in",gate="myapp"} 10`,
		`distgate_bytes_total{direction="out",gate="myapp"} 20`,
		"# HELP distgate_handshake_seconds Time from accept to the admit or deny decision.",
		"# TYPE distgate_handshake_seconds histogram",
		`distgate_handshake_seconds_bucket{gate="myapp",le="0.0001"} 3`,
		`distgate_handshake_seconds_bucket{gate="myapp",le="10"} 4`,
		`distgate_handshake_seconds_count{gate="myapp"} 4`,
		"# HELP distgate_reloads_total Configuration reloads on SIGHUP, by result.",
		`distgate_reloads_total{result="ok"} 1`,
		`distgate_reloads_total{result="error"} 2`,
		"# HELP distgate_limiter_sources Per-source rate-limiter entries held.",
		`distgate_limiter_sources{gate="myapp"} 4`,
		"# HELP distgate_log_suppressed_total Denial log lines not written because of per-source sampling.",
		`distgate_log_suppressed_total{gate="myapp"} 3`,
		`distgate_connections_total{gate="myapp",reason="banned",verdict="denied"} 1`,
		"# TYPE distgate_handshakes_total counter",
		`distgate_handshakes_total{gate="myapp",outcome="ok"} 1`,
		`distgate_handshakes_total{gate="myapp",outcome="auth_failed"} 2`,
		`distgate_handshakes_total{gate="myapp",outcome="refused"} 0`,
		`distgate_handshakes_total{gate="myapp",outcome="aborted"} 0`,
		`distgate_handshakes_total{gate="myapp",outcome="timeout"} 0`,
		`distgate_handshakes_total{gate="myapp",outcome="protocol_error"} 0`,
		"# TYPE distgate_connections_closed_total counter",
		`distgate_connections_closed_total{gate="myapp",reason=""} 1`,
		`distgate_connections_closed_total{gate="myapp",reason="auth_failed"} 1`,
		`distgate_connections_closed_total{gate="myapp",reason="revoked"} 1`,
		`distgate_connections_closed_total{gate="myapp",reason="banned"} 1`,
		`distgate_connections_closed_total{gate="myapp",reason="shutdown"} 0`,
		`distgate_connections_closed_total{gate="myapp",reason="aborted"} 0`,
		`distgate_connections_closed_total{gate="myapp",reason="refused"} 0`,
		`distgate_connections_closed_total{gate="myapp",reason="timeout"} 0`,
		`distgate_connections_closed_total{gate="myapp",reason="protocol_error"} 0`,
		"# TYPE distgate_bans_active gauge",
		`distgate_bans_active{gate="myapp"} 1`,
		"# TYPE distgate_bans_total counter",
		`distgate_bans_total{gate="myapp"} 2`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no line %q in:\n%s", want, out)
		}
	}
	// One series per reason and verdict, and nothing else.
	if n := strings.Count(out, "distgate_connections_total{"); n != 1+len(policy.DenyReasons()) {
		t.Errorf("%d connections_total series, want %d", n, 1+len(policy.DenyReasons()))
	}
	// One series per outcome; per close reason: by itself, three stops,
	// five failed outcomes.
	if n := strings.Count(out, "distgate_handshakes_total{"); n != 6 {
		t.Errorf("%d handshakes_total series, want 6", n)
	}
	if n := strings.Count(out, "distgate_connections_closed_total{"); n != 9 {
		t.Errorf("%d connections_closed_total series, want 9", n)
	}
}

// Both reload results are there before the first reload.
func TestReloadsAtZero(t *testing.T) {
	out := scrape(t, New())
	for _, want := range []string{`distgate_reloads_total{result="ok"} 0`, `distgate_reloads_total{result="error"} 0`} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no line %q in:\n%s", want, out)
		}
	}
}

// distgate_log_dropped_total has no labels and is there at zero before the
// first dropped line.
func TestLogDropped(t *testing.T) {
	m := New()
	if out := scrape(t, m); !strings.Contains(out, "\ndistgate_log_dropped_total 0\n") {
		t.Errorf("no distgate_log_dropped_total 0 before any drop:\n%s", out)
	}
	m.LogDropped()
	m.LogDropped()
	out := scrape(t, m)
	for _, want := range []string{
		"# HELP distgate_log_dropped_total Log lines lost because stderr could not be written.",
		"# TYPE distgate_log_dropped_total counter",
		"distgate_log_dropped_total 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}

// distgate_forward_interventions_total has one series per kind given, at
// zero from the start; a kind outside the set is not counted.
func TestInterventions(t *testing.T) {
	m := New()
	count := m.Interventions("watchdog", "stalled", "overrun")
	if out := scrape(t, m); !strings.Contains(out, `distgate_forward_interventions_total{kind="overrun"} 0`+"\n") {
		t.Errorf("no overrun series at zero:\n%s", out)
	}
	count("watchdog")
	count("watchdog")
	count("overrun")
	count("10.0.0.1") // never a label value
	out := scrape(t, m)
	for _, want := range []string{
		`distgate_forward_interventions_total{kind="watchdog"} 2`,
		`distgate_forward_interventions_total{kind="stalled"} 0`,
		`distgate_forward_interventions_total{kind="overrun"} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no line %q in:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "distgate_forward_interventions_total{"); n != 3 {
		t.Errorf("%d intervention series, want 3", n)
	}
}
