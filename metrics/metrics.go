// Package metrics holds distgate's Prometheus collectors (design: Metrics):
// a Registry per process, and one proxy.Observer per gate. Label values come
// from fixed sets (gate names from the config, reasons, directions), never an
// address or a node name, so the series count is bounded by the config.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/proxy"
	"github.com/distgate/distgate/wire"
)

// Registry holds every collector. It is safe for concurrent use.
type Registry struct {
	reg         *prometheus.Registry
	conns       *prometheus.CounterVec
	active      *prometheus.GaugeVec
	bytes       *prometheus.CounterVec
	handshake   *prometheus.HistogramVec
	reloads     *prometheus.CounterVec
	limiterSrcs *prometheus.GaugeVec
	suppressed  *prometheus.CounterVec
	outcomes    *prometheus.CounterVec
	closed      *prometheus.CounterVec
	bansActive  *prometheus.GaugeVec
	bansTotal   *prometheus.CounterVec
	// logDropped has no labels; its one series is created at zero, so an
	// alert on its increase sees the first dropped line.
	logDropped *prometheus.CounterVec
	// interventions: the kernel forwarding path's watchdog and overrun
	// actions, by kind (pick.Kinds); the series exist from Interventions.
	interventions *prometheus.CounterVec
}

// New returns a Registry with every collector registered, and both reload
// results and the dropped log lines at zero, so a scrape shows them before
// the first SIGHUP or the first lost line.
func New() *Registry {
	m := &Registry{
		reg: prometheus.NewRegistry(),
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "distgate_connections_total",
			Help: "Connections decided, by verdict and denial reason (empty for admitted).",
		}, []string{"gate", "verdict", "reason"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "distgate_connections_active",
			Help: "Admitted connections: in the handshake watch or forwarded.",
		}, []string{"gate"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "distgate_bytes_total",
			Help: "Bytes forwarded; in = client to node. Live connections are counted every summary period, exactly when they end.",
		}, []string{"gate", "direction"}),
		handshake: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "distgate_handshake_seconds",
			Help:    "Time from accept to the admit or deny decision.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 3, 10},
		}, []string{"gate"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "distgate_reloads_total",
			Help: "Configuration reloads on SIGHUP, by result.",
		}, []string{"result"}),
		limiterSrcs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "distgate_limiter_sources",
			Help: "Per-source rate-limiter entries held.",
		}, []string{"gate"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "distgate_log_suppressed_total",
			Help: "Denial log lines not written because of per-source sampling.",
		}, []string{"gate"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "distgate_handshakes_total",
			Help: "Handshakes of admitted connections, by the outcome the watch saw.",
		}, []string{"gate", "outcome"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "distgate_connections_closed_total",
			Help: "Admitted connections that ended, by reason: empty when they ended by themselves, else revoked, banned, shutdown, or the outcome of a handshake that failed.",
		}, []string{"gate", "reason"}),
		bansActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "distgate_bans_active",
			Help: "Sources banned now.",
		}, []string{"gate"}),
		bansTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "distgate_bans_total",
			Help: "Bans imposed, automatic or asked for.",
		}, []string{"gate"}),
		logDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "distgate_log_dropped_total",
			Help: "Log lines lost because stderr could not be written.",
		}, nil),
		interventions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "distgate_forward_interventions_total",
			Help: "Kernel forwarding path: connections the watchdog moved back to user space (watchdog) or reset (stalled), and connections reset because the kernel did not hold their sender back (overrun).",
		}, []string{"kind"}),
	}
	m.reg.MustRegister(m.conns, m.active, m.bytes, m.handshake, m.reloads, m.limiterSrcs, m.suppressed,
		m.outcomes, m.closed, m.bansActive, m.bansTotal, m.logDropped, m.interventions)
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	m.logDropped.WithLabelValues()
	return m
}

// Handler serves the Prometheus text format of everything registered.
func (m *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Reload counts one configuration reload, accepted or refused.
func (m *Registry) Reload(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
	} else {
		m.reloads.WithLabelValues("error").Inc()
	}
}

// LogDropped counts one log line lost because stderr could not be
// written. It is safe for concurrent use and does not block.
func (m *Registry) LogDropped() { m.logDropped.WithLabelValues().Inc() }

// Interventions creates distgate_forward_interventions_total's series for
// kinds, at zero, and returns the function that counts one intervention
// of a kind; a kind outside the set is not counted, so the label values
// stay fixed. It is safe for concurrent use and does not block.
func (m *Registry) Interventions(kinds ...string) func(kind string) {
	cs := make(map[string]prometheus.Counter, len(kinds))
	for _, k := range kinds {
		cs[k] = m.interventions.WithLabelValues(k)
	}
	return func(kind string) {
		if c := cs[kind]; c != nil {
			c.Inc()
		}
	}
}

// Gate returns an Observer with every series of one gate resolved up front,
// so the connection path does no label lookups.
func (m *Registry) Gate(name string) proxy.Observer {
	o := &gate{
		active:     m.active.WithLabelValues(name),
		in:         m.bytes.WithLabelValues(name, "in"),
		out:        m.bytes.WithLabelValues(name, "out"),
		handshake:  m.handshake.WithLabelValues(name),
		limiter:    m.limiterSrcs.WithLabelValues(name),
		suppressed: m.suppressed.WithLabelValues(name),
		closedSelf: m.closed.WithLabelValues(name, ""),
		bansActive: m.bansActive.WithLabelValues(name),
		bansTotal:  m.bansTotal.WithLabelValues(name),
	}
	o.decided[policy.Admitted] = m.conns.WithLabelValues(name, "admitted", "")
	for _, r := range policy.DenyReasons() {
		o.decided[r] = m.conns.WithLabelValues(name, "denied", r.String())
	}
	for _, out := range outcomes {
		o.outcomes[out] = m.outcomes.WithLabelValues(name, out.String())
		if out != wire.OutcomeOK {
			o.closedOutcome[out] = m.closed.WithLabelValues(name, proxy.CloseReason(policy.Admitted, out))
		}
	}
	for _, r := range stopReasons {
		o.closedStopped[r] = m.closed.WithLabelValues(name, proxy.CloseReason(r, wire.OutcomeOK))
	}
	return o
}

// outcomes are the handshake watch's outcomes; stopReasons the reasons the
// gate stops an admitted connection for.
var (
	outcomes = []wire.Outcome{wire.OutcomeOK, wire.OutcomeAuthFailed, wire.OutcomeRefused,
		wire.OutcomeAborted, wire.OutcomeTimeout, wire.OutcomeProtocolError}
	stopReasons = []policy.Reason{policy.Revoked, policy.Banned, policy.Shutdown}
)

// gate is one gate's proxy.Observer.
type gate struct {
	decided    [policy.Shutdown + 1]prometheus.Counter
	active     prometheus.Gauge
	in, out    prometheus.Counter
	handshake  prometheus.Observer
	limiter    prometheus.Gauge
	suppressed prometheus.Counter
	outcomes   [wire.OutcomeProtocolError + 1]prometheus.Counter
	// closed by reason: ended by itself, stopped by the gate, or after a
	// handshake that failed.
	closedSelf    prometheus.Counter
	closedStopped [policy.Shutdown + 1]prometheus.Counter
	closedOutcome [wire.OutcomeProtocolError + 1]prometheus.Counter
	bansActive    prometheus.Gauge
	bansTotal     prometheus.Counter
}

var _ proxy.Observer = (*gate)(nil)

func (o *gate) Decided(r policy.Reason, d time.Duration) {
	if int(r) < len(o.decided) && o.decided[r] != nil {
		o.decided[r].Inc()
	}
	o.handshake.Observe(d.Seconds())
}
func (o *gate) Moved(in, out int64) {
	o.in.Add(float64(in))
	o.out.Add(float64(out))
}
func (o *gate) Active(delta int)     { o.active.Add(float64(delta)) }
func (o *gate) Suppressed(n int)     { o.suppressed.Add(float64(n)) }
func (o *gate) LimiterSources(n int) { o.limiter.Set(float64(n)) }

func (o *gate) Handshake(out wire.Outcome) {
	if int(out) < len(o.outcomes) && o.outcomes[out] != nil {
		o.outcomes[out].Inc()
	}
}

// Closed counts under the label proxy.CloseReason gives, from the series
// resolved up front.
func (o *gate) Closed(r policy.Reason, out wire.Outcome) {
	var c prometheus.Counter
	switch {
	case r != policy.Admitted:
		if int(r) < len(o.closedStopped) {
			c = o.closedStopped[r]
		}
	case out != wire.OutcomeOK && out != wire.OutcomePending:
		if int(out) < len(o.closedOutcome) {
			c = o.closedOutcome[out]
		}
	default:
		c = o.closedSelf
	}
	if c != nil {
		c.Inc()
	}
}

func (o *gate) Banned()          { o.bansTotal.Inc() }
func (o *gate) BansActive(n int) { o.bansActive.Set(float64(n)) }
