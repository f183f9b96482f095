// Package httpserve runs distgate's HTTP listeners (metrics, pprof) hardened
// for a daemon whose descriptors belong to its gates: timeouts on every
// phase of a request, a cap on open connections, and net/http's own log
// routed to zerolog.
package httpserve

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
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// Timeouts of the HTTP listeners. A scrape is a short request and a few
// hundred KiB of answer; a connection that sends nothing, or holds on
// between scrapes, gives its descriptor back.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 10 * time.Second
	maxHeaderBytes    = 8 << 10
)

// Server is an HTTP server on its own listener, stopped by Close.
type Server struct {
	srv  *http.Server
	addr net.Addr
	done chan struct{}
}

// New returns a server for h with the timeouts above and net/http's own
// log routed to log under message msg.
func New(h http.Handler, log zerolog.Logger, msg string) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          ErrorLog(log, msg),
	}
}

// Serve listens on addr and runs srv on it until Close, with at most
// maxConns connections open at once (0: no cap). An error after the start
// is logged with msg.
func Serve(addr string, srv *http.Server, maxConns int, log zerolog.Logger, msg string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if maxConns > 0 {
		ln = &capListener{Listener: ln, max: maxConns, log: log.With().Str("server", msg).Logger()}
	}
	s := &Server{srv: srv, addr: ln.Addr(), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg(msg)
		}
	}()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Close lets requests in flight finish for a moment, then cuts them, and
// returns once the server has stopped.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if s.srv.Shutdown(ctx) != nil {
		_ = s.srv.Close()
	}
	<-s.done
}

// ErrorLog routes what net/http logs (accept errors and the like) to
// zerolog, so stderr stays one JSON object per line; at most 10 lines a
// second, since a peer can provoke them.
func ErrorLog(log zerolog.Logger, msg string) *stdlog.Logger {
	return stdlog.New(&errorWriter{log: log, msg: msg, lim: rate.NewLimiter(1, 10)}, "", 0)
}

type errorWriter struct {
	log zerolog.Logger
	msg string
	lim *rate.Limiter
}

func (w *errorWriter) Write(p []byte) (int, error) {
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

// Pprof serves net/http/pprof on addr, for DISTGATE_PPROF (an address such
// as 127.0.0.1:6060) so the accept, decide and forward path can be
// profiled under load (bench/profile.sh). It is deliberately left out of
// the documented configuration: a developer's switch, off unless set, with
// its own listener so nothing of it ever appears on the metrics one. Its
// write timeout would cut a long CPU profile, so it has none.
func Pprof(addr string, log zerolog.Logger) (*Server, error) {
	runtime.SetMutexProfileFraction(100)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := New(mux, log, "pprof server")
	srv.WriteTimeout, srv.ReadTimeout = 0, 0
	s, err := Serve(addr, srv, 16, log, "pprof server")
	if err != nil {
		return nil, err
	}
	log.Info().Str("listen", s.Addr().String()).Msg("pprof listening")
	return s, nil
}
