package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// httpServer is an HTTP server on its own listener, stopped by close.
type httpServer struct {
	srv  *http.Server
	done chan struct{}
}

// serveHTTP listens on addr and serves h until close; an error after the
// start is logged with msg.
func serveHTTP(addr string, h http.Handler, log zerolog.Logger, msg string) (*httpServer, net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	s := &httpServer{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg(msg)
		}
	}()
	return s, ln.Addr(), nil
}

// close lets requests in flight finish for a moment, then cuts them.
func (s *httpServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if s.srv.Shutdown(ctx) != nil {
		_ = s.srv.Close()
	}
	<-s.done
}

// metricsServer serves /metrics and /healthz (design: Metrics).
type metricsServer struct {
	*httpServer
	ready atomic.Bool
}

func startMetrics(addr string, metrics http.Handler, log zerolog.Logger) (*metricsServer, error) {
	ms := &metricsServer{}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !ms.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	s, la, err := serveHTTP(addr, mux, log, "metrics server")
	if err != nil {
		return nil, err
	}
	ms.httpServer = s
	log.Info().Str("listen", la.String()).Msg("metrics listening")
	return ms, nil
}

func (ms *metricsServer) setReady(v bool) { ms.ready.Store(v) }

// startPprof serves net/http/pprof on addr, for DISTGATE_PPROF (an address
// such as 127.0.0.1:6060) so the accept, decide and forward path can be
// profiled under load (bench/profile.sh). It is deliberately left out of
// the documented configuration: a developer's switch, off unless set, with
// its own listener so nothing of it ever appears on the metrics one.
func startPprof(addr string, log zerolog.Logger) (*httpServer, error) {
	runtime.SetMutexProfileFraction(100)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s, la, err := serveHTTP(addr, mux, log, "pprof server")
	if err != nil {
		return nil, err
	}
	log.Info().Str("listen", la.String()).Msg("pprof listening")
	return s, nil
}
