package main

import (
	"context"
	"errors"
	stdlog "log"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// Timeouts of the HTTP listeners (metrics, pprof). A scrape is a short
// request and a few hundred KiB of answer; a connection that sends nothing,
// or holds on between scrapes, gives its descriptor back.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 10 * time.Second
	httpWriteTimeout      = 30 * time.Second
	httpIdleTimeout       = 10 * time.Second
	httpMaxHeaderBytes    = 8 << 10
)

// metricsShareOfFiles is the part of RLIMIT_NOFILE the metrics listener may
// hold at most, whatever metrics.max_conns says: the rest is the gates'
// reserve, so no number of scrapers (or of connections made to look like
// them) can take the descriptors an operator's connection needs.
const metricsShareOfFiles = 8

// httpServer is an HTTP server on its own listener, stopped by close.
type httpServer struct {
	srv  *http.Server
	done chan struct{}
}

// newHTTPServer returns a server for h with the timeouts above and
// net/http's own log routed to log.
func newHTTPServer(h http.Handler, log zerolog.Logger, msg string) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          httpErrorLog(log, msg),
	}
}

// serveHTTP listens on addr and runs srv on it until close, with at most
// maxConns connections open at once (0: no cap). An error after the start
// is logged with msg.
func serveHTTP(addr string, srv *http.Server, maxConns int, log zerolog.Logger, msg string) (*httpServer, net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if maxConns > 0 {
		ln = &capListener{Listener: ln, max: maxConns, log: log.With().Str("server", msg).Logger()}
	}
	s := &httpServer{srv: srv, done: make(chan struct{})}
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

// httpErrorLog routes what net/http logs (accept errors and the like) to
// zerolog, so stderr stays one JSON object per line; at most 10 lines a
// second, since a peer can provoke them.
func httpErrorLog(log zerolog.Logger, msg string) *stdlog.Logger {
	return stdlog.New(&httpLogWriter{log: log, msg: msg, lim: rate.NewLimiter(1, 10)}, "", 0)
}

type httpLogWriter struct {
	log zerolog.Logger
	msg string
	lim *rate.Limiter
}

func (w *httpLogWriter) Write(p []byte) (int, error) {
	if w.lim.Allow() {
		w.log.Warn().Str("error", strings.TrimSpace(string(p))).Msg(w.msg)
	}
	return len(p), nil
}

// capListener hands out at most max connections at once and closes any
// connection past that as soon as it is accepted, so idle or slow clients
// cannot pile up descriptors and goroutines.
type capListener struct {
	net.Listener
	max  int
	log  zerolog.Logger
	open atomic.Int64

	mu       sync.Mutex
	closed   int       // connections closed for the cap since the last line
	lastLine time.Time // when the last "over max_conns" line was logged
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= int64(l.max) {
			return &capConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		_ = c.Close()
		l.overCap()
	}
}

// overCap logs connections closed for the cap: the first at once, then at
// most one line every 10 s with the count since the last.
func (l *capListener) overCap() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed++
	if now := time.Now(); now.Sub(l.lastLine) >= 10*time.Second {
		l.log.Warn().Int("max_conns", l.max).Int("closed", l.closed).Msg("connections over max_conns closed")
		l.closed, l.lastLine = 0, now
	}
}

// capConn gives its slot back once, on the first Close.
type capConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *capConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// metricsCap is the number of metrics connections allowed: max_conns, but
// never more than an eighth of the open-files limit nofile (and at least 1).
func metricsCap(maxConns int, nofile uint64) int {
	share := max(int(min(nofile/metricsShareOfFiles, 1<<20)), 1)
	return min(maxConns, share)
}

// openFilesLimit returns RLIMIT_NOFILE's soft limit (which the Go runtime
// has already raised to the hard one), or 0 if it cannot be read.
func openFilesLimit() uint64 {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return 0
	}
	return rl.Cur
}

// metricsServer serves /metrics and /healthz (design: Metrics).
type metricsServer struct {
	*httpServer
	ready atomic.Bool
}

func startMetrics(addr string, maxConns int, metrics http.Handler, log zerolog.Logger) (*metricsServer, error) {
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
	limit := maxConns
	if nofile := openFilesLimit(); nofile > 0 {
		if limit = metricsCap(maxConns, nofile); limit < maxConns {
			log.Warn().Int("max_conns", limit).Uint64("open_files_limit", nofile).
				Msg("metrics.max_conns lowered to an eighth of the open-files limit; the rest is the gates' reserve")
		}
	}
	s, la, err := serveHTTP(addr, newHTTPServer(mux, log, "metrics server"), limit, log, "metrics server")
	if err != nil {
		return nil, err
	}
	ms.httpServer = s
	log.Info().Str("listen", la.String()).Int("max_conns", limit).Msg("metrics listening")
	return ms, nil
}

func (ms *metricsServer) setReady(v bool) { ms.ready.Store(v) }

// startPprof serves net/http/pprof on addr, for DISTGATE_PPROF (an address
// such as 127.0.0.1:6060) so the accept, decide and forward path can be
// profiled under load (bench/profile.sh). It is deliberately left out of
// the documented configuration: a developer's switch, off unless set, with
// its own listener so nothing of it ever appears on the metrics one. Its
// write timeout would cut a long CPU profile, so it has none.
func startPprof(addr string, log zerolog.Logger) (*httpServer, error) {
	runtime.SetMutexProfileFraction(100)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := newHTTPServer(mux, log, "pprof server")
	srv.WriteTimeout, srv.ReadTimeout = 0, 0
	s, la, err := serveHTTP(addr, srv, 16, log, "pprof server")
	if err != nil {
		return nil, err
	}
	log.Info().Str("listen", la.String()).Msg("pprof listening")
	return s, nil
}
