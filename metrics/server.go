package metrics

import (
	"net/http"
	"sync/atomic"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/distgate/distgate/internal/httpserve"
)

// shareOfFiles is the part of RLIMIT_NOFILE the metrics listener may hold
// at most, whatever metrics.max_conns says: the rest is the gates'
// reserve, so no number of scrapers (or of connections made to look like
// them) can take the descriptors an operator's connection needs.
const shareOfFiles = 8

// Server serves /metrics and /healthz (design: Metrics). /healthz says 200
// once SetReady(true) is called: when every gate listens.
type Server struct {
	*httpserve.Server
	ready atomic.Bool
}

// Serve listens on addr and serves the registry's /metrics and /healthz,
// with at most maxConns connections at once, lowered (with a warn line) to
// an eighth of the open-files limit. Close stops it.
func (m *Registry) Serve(addr string, maxConns int, log zerolog.Logger) (*Server, error) {
	ms := &Server{}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !ms.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	limit := maxConns
	if nofile := openFilesLimit(); nofile > 0 {
		if limit = connCap(maxConns, nofile); limit < maxConns {
			log.Warn().Int("max_conns", limit).Uint64("open_files_limit", nofile).
				Msg("metrics.max_conns lowered to an eighth of the open-files limit; the rest is the gates' reserve")
		}
	}
	s, err := httpserve.Serve(addr, httpserve.New(mux, log, "metrics server"), limit, log, "metrics server")
	if err != nil {
		return nil, err
	}
	ms.Server = s
	log.Info().Str("listen", s.Addr().String()).Int("max_conns", limit).Msg("metrics listening")
	return ms, nil
}

// SetReady sets what /healthz answers: 200 when v, else 503.
func (ms *Server) SetReady(v bool) { ms.ready.Store(v) }

// connCap is the number of metrics connections allowed: maxConns, but
// never more than an eighth of the open-files limit nofile (and at least 1).
func connCap(maxConns int, nofile uint64) int {
	share := max(int(min(nofile/shareOfFiles, 1<<20)), 1)
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
