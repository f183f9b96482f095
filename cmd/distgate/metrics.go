package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/proxy"
)

// metrics holds distgate's Prometheus collectors (design: Metrics). Label
// values come from fixed sets: gate names from the config, reasons,
// directions. Never an address or a node name.
type metrics struct {
	reg         *prometheus.Registry
	conns       *prometheus.CounterVec
	active      *prometheus.GaugeVec
	bytes       *prometheus.CounterVec
	handshake   *prometheus.HistogramVec
	reloads     *prometheus.CounterVec
	limiterSrcs *prometheus.GaugeVec
	suppressed  *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "distgate_connections_total",
			Help: "Connections decided, by verdict and denial reason (empty for admitted).",
		}, []string{"gate", "verdict", "reason"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "distgate_connections_active",
			Help: "Admitted connections being spliced.",
		}, []string{"gate"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "distgate_bytes_total",
			Help: "Bytes spliced; in = client to node. Counted when a connection ends.",
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
	}
	m.reg.MustRegister(m.conns, m.active, m.bytes, m.handshake, m.reloads, m.limiterSrcs, m.suppressed)
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	return m
}

func (m *metrics) reload(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
	} else {
		m.reloads.WithLabelValues("error").Inc()
	}
}

// gate returns an Observer with every series of one gate resolved up front,
// so the connection path does no label lookups.
func (m *metrics) gate(name string) proxy.Observer {
	o := &gateMetrics{
		active:     m.active.WithLabelValues(name),
		in:         m.bytes.WithLabelValues(name, "in"),
		out:        m.bytes.WithLabelValues(name, "out"),
		handshake:  m.handshake.WithLabelValues(name),
		limiter:    m.limiterSrcs.WithLabelValues(name),
		suppressed: m.suppressed.WithLabelValues(name),
	}
	o.decided[policy.Admitted] = m.conns.WithLabelValues(name, "admitted", "")
	for _, r := range policy.DenyReasons() {
		o.decided[r] = m.conns.WithLabelValues(name, "denied", r.String())
	}
	return o
}

type gateMetrics struct {
	decided    [policy.Shutdown + 1]prometheus.Counter
	active     prometheus.Gauge
	in, out    prometheus.Counter
	handshake  prometheus.Observer
	limiter    prometheus.Gauge
	suppressed prometheus.Counter
}

func (o *gateMetrics) Decided(r policy.Reason, d time.Duration) {
	if int(r) < len(o.decided) && o.decided[r] != nil {
		o.decided[r].Inc()
	}
	o.handshake.Observe(d.Seconds())
}
func (o *gateMetrics) Moved(in, out int64) {
	o.in.Add(float64(in))
	o.out.Add(float64(out))
}
func (o *gateMetrics) Active(delta int)     { o.active.Add(float64(delta)) }
func (o *gateMetrics) Suppressed(n int)     { o.suppressed.Add(float64(n)) }
func (o *gateMetrics) LimiterSources(n int) { o.limiter.Set(float64(n)) }

// metricsServer serves /metrics and /healthz.
type metricsServer struct {
	srv   *http.Server
	ready atomic.Bool
	done  chan struct{}
}

func startMetrics(addr string, m *metrics, log zerolog.Logger) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ms := &metricsServer{done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !ms.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	ms.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(ms.done)
		if err := ms.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("metrics server")
		}
	}()
	log.Info().Str("listen", ln.Addr().String()).Msg("metrics listening")
	return ms, nil
}

func (ms *metricsServer) setReady(v bool) { ms.ready.Store(v) }

func (ms *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = ms.srv.Shutdown(ctx)
	<-ms.done
}
