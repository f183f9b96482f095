package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/metrics"
	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/proxy"
)

// newLogger builds the process logger: JSON lines, or a human console format.
func newLogger(c config.Log, w io.Writer) zerolog.Logger {
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, NoColor: true, TimeFormat: time.RFC3339}
	}
	// Each gate sets its own logger's level from its settings, again on
	// each reload; this one's is set for run's own lines.
	return zerolog.New(w).Level(parseLevel(c.Level)).With().Timestamp().Logger()
}

func parseLevel(s string) zerolog.Level {
	l, err := zerolog.ParseLevel(s)
	if err != nil {
		return zerolog.InfoLevel
	}
	return l
}

// run listens on every gate (all or none), serves until ctx ends, and
// reloads path on each value from hup.
func run(ctx context.Context, l *config.Config, path string, environ []string, hup <-chan os.Signal, stderr io.Writer) error {
	reg := metrics.New()
	log := newLogger(l.Log, newLogWriter(stderr, reg.LogDropped))
	for _, w := range l.Warnings {
		log.Warn().Str("config", l.Source).Msg(w)
	}
	if addr := getenv(environ, "DISTGATE_PPROF"); addr != "" {
		ps, err := startPprof(addr, log)
		if err != nil {
			// A developer's switch: profiling is not worth refusing to run.
			log.Error().Err(err).Msg("DISTGATE_PPROF: pprof not served")
		} else {
			defer ps.close()
		}
	}

	// Listen on everything first so a taken address fails the start
	// before any gate serves.
	// No keep-alive at accept: the gates turn it on for admitted
	// connections only, so a denial costs no setsockopt calls.
	lc := net.ListenConfig{KeepAlive: -1}
	lns := make([]net.Listener, 0, len(l.Gates))
	closeAll := func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}
	for _, cg := range l.Gates {
		ln, err := lc.Listen(ctx, "tcp", cg.Listen)
		if err != nil {
			closeAll()
			return fmt.Errorf("gate %q: %w", cg.Name, err)
		}
		lns = append(lns, ln)
	}

	var msrv *metricsServer
	if l.Metrics.Listen != "" {
		var err error
		if msrv, err = startMetrics(l.Metrics.Listen, *l.Metrics.MaxConns, reg.Handler(), log); err != nil {
			closeAll()
			return fmt.Errorf("metrics: %w", err)
		}
	}

	hs := policy.NewHandshakes(*l.MaxHandshakes)
	gates := make([]*proxy.Gate, len(l.Gates))
	for i, cg := range l.Gates {
		gates[i] = proxy.NewGate(proxy.Config{Name: cg.Name, Upstream: cg.Upstream, Settings: cg.Settings,
			Log: log, Observer: reg.Gate(cg.Name), Handshakes: hs})
	}

	var wg sync.WaitGroup
	errc := make(chan error, len(gates))
	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	for i, g := range gates {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Serve(serveCtx, lns[i]); err != nil {
				errc <- fmt.Errorf("gate %q: %w", g.Name(), err)
			}
		}()
	}
	// "listening" (and /healthz) once each gate has taken over its
	// listener, so nothing about the socket changes after it is said.
	for i, g := range gates {
		<-g.Ready()
		log.Info().Str("gate", g.Name()).Str("listen", l.Gates[i].Listen).
			Str("upstream", g.Upstream()).Msg("listening")
	}
	if msrv != nil {
		msrv.setReady(true)
	}
	notifySocket := getenv(environ, "NOTIFY_SOCKET")
	if err := sdNotify(notifySocket, "READY=1"); err != nil {
		log.Warn().Err(err).Msg("service manager not told that distgate is ready")
	}

	// A reload reads files (the config, cookies, certificates) in its own
	// goroutine, so a read that takes long can never keep this loop from
	// SIGTERM; applying the result stays here. SIGHUPs that arrive while
	// one is read are folded into one more reload after it.
	var (
		runErr    error
		reloading <-chan reloadResult // nil when no reload is being read
		again     bool
	)
	startReload := func() {
		ch := make(chan reloadResult, 1)
		go func(cur *config.Config) {
			next, err := loadReload(cur, path, environ)
			ch <- reloadResult{next, err}
		}(l)
		reloading = ch
	}
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info().Dur("drain_timeout", l.DrainTimeout.Duration).Msg("shutting down")
			_ = sdNotify(notifySocket, "STOPPING=1")
			break loop
		case err := <-errc:
			log.Error().Err(err).Msg("gate stopped")
			runErr = err
			break loop
		case <-hup:
			if reloading != nil {
				again = true
				continue
			}
			startReload()
		case r := <-reloading:
			reloading = nil
			if r.err != nil {
				reg.Reload(false)
				log.Error().Str("config", l.Source).Err(r.err).Msg("reload refused; keeping the running configuration")
			} else {
				reg.Reload(true)
				l = r.next
				revoked := make([]int, len(gates))
				for i, g := range gates {
					revoked[i] = g.Update(l.Gates[i].Settings)
				}
				log = log.Level(parseLevel(l.Log.Level))
				for _, w := range l.Warnings {
					log.Warn().Str("config", l.Source).Msg(w)
				}
				for i, g := range gates {
					log.Info().Str("gate", g.Name()).Str("config", l.Source).Int("revoked", revoked[i]).Msg("reloaded")
				}
			}
			if again {
				// Read against what now runs.
				again = false
				startReload()
			}
		}
	}
	if msrv != nil {
		msrv.setReady(false)
	}
	stopServing()
	wg.Wait()
	if msrv != nil {
		msrv.close()
	}
	log.Info().Msg("stopped")
	return runErr
}

// reloadResult is what a reload read: the next configuration, or why not.
type reloadResult struct {
	next *config.Config
	err  error
}

// loadReload reads the configuration again and checks that it can be
// applied to a process running cur (config.RestartRequired). It touches
// nothing running, so it may run beside the serving loop.
func loadReload(cur *config.Config, path string, environ []string) (*config.Config, error) {
	next, err := config.Load(path, environ)
	if err != nil {
		return nil, err
	}
	if err := config.RestartRequired(cur, next); err != nil {
		return nil, err
	}
	return next, nil
}

// getenv looks key up in environ (KEY=VALUE pairs); the last one wins, as
// in config.Load.
func getenv(environ []string, key string) string {
	var v string
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}
