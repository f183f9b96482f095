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

	"github.com/distgate/distgate/admin"
	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/forward/pick"
	"github.com/distgate/distgate/internal/httpserve"
	"github.com/distgate/distgate/internal/logwriter"
	"github.com/distgate/distgate/internal/sdnotify"
	"github.com/distgate/distgate/internal/state"
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

// run listens on every gate (all or none) and on the admin socket, keeps
// the bans in the state file, serves until ctx ends, and reloads path on
// each value from hup.
func run(ctx context.Context, l *config.Config, path string, environ []string, hup <-chan os.Signal, stderr io.Writer) error {
	started := time.Now()
	reg := metrics.New()
	log := newLogger(l.Log, logwriter.New(stderr, reg.LogDropped))
	for _, w := range l.Warnings {
		log.Warn().Str("config", l.Source).Msg(w)
	}
	if addr := getenv(environ, "DISTGATE_PPROF"); addr != "" {
		ps, err := httpserve.Pprof(addr, log)
		if err != nil {
			// A developer's switch: profiling is not worth refusing to run.
			log.Error().Err(err).Msg("DISTGATE_PPROF: pprof not served")
		} else {
			defer ps.Close()
		}
	}

	// Listen on everything first (gates, admin socket, metrics) so a taken
	// address fails the start before any gate serves.
	// No keep-alive at accept: the gates turn it on for admitted
	// connections only, so a denial costs no setsockopt calls.
	lc := net.ListenConfig{KeepAlive: -1}
	lns := make([]net.Listener, 0, len(l.Gates))
	var adm *admin.Server
	closeAll := func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
		if adm != nil {
			_ = adm.Close()
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

	if l.Admin.Socket != "" {
		var err error
		if adm, err = admin.Listen(l.Admin.Socket); err != nil {
			closeAll()
			return err
		}
		alog := log // a copy: a reload replaces log while requests are served
		adm.OnError = func(err error) { alog.Warn().Err(err).Msg("admin socket") }
	}
	var msrv *metrics.Server
	if l.Metrics.Listen != "" {
		var err error
		if msrv, err = reg.Serve(l.Metrics.Listen, *l.Metrics.MaxConns, log); err != nil {
			closeAll()
			return fmt.Errorf("metrics: %w", err)
		}
	}

	hs := policy.NewHandshakes(*l.MaxHandshakes)
	var sw *state.Writer // set before the gates serve; nil: bans in memory only
	onBans := func() {
		if sw != nil {
			sw.Changed()
		}
	}
	// One forwarder for every gate: the path `forward` names, or "user"
	// and a warn line saying why not. Closed once every gate has returned.
	fw := pick.Open(l.Forward, pick.Options{Log: log, Intervention: reg.Interventions(pick.Kinds...)})
	defer func() { _ = fw.Close() }()
	gates := make([]*proxy.Gate, len(l.Gates))
	b := &backend{gates: gates, config: l.Source, started: started}
	for i, cg := range l.Gates {
		gates[i] = proxy.NewGate(proxy.Config{Name: cg.Name, Upstream: cg.Upstream, Settings: cg.Settings,
			Log: log, Observer: reg.Gate(cg.Name), Handshakes: hs, OnBansChanged: onBans, Forwarder: fw.Forwarder})
		b.listen, b.tls = append(b.listen, listenAddr(cg.Listen, lns[i])), append(b.tls, cg.TLS.Mode.String())
	}
	if l.StateFile != "" {
		sw = keepBans(l.StateFile, gates, log)
	}

	var wg sync.WaitGroup
	errc := make(chan error, len(gates))
	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	for i, g := range gates {
		wg.Go(func() {
			if err := g.Serve(serveCtx, lns[i]); err != nil {
				errc <- fmt.Errorf("gate %q: %w", g.Name(), err)
			}
		})
	}
	// "listening" (and /healthz) once each gate has taken over its
	// listener, so nothing about the socket changes after it is said.
	for i, g := range gates {
		<-g.Ready()
		log.Info().Str("gate", g.Name()).Str("listen", l.Gates[i].Listen).
			Str("upstream", g.Upstream()).Str("path", g.Path()).Msg("listening")
	}
	adminCtx, stopAdmin := context.WithCancel(context.Background())
	adminDone := make(chan struct{})
	go func() {
		defer close(adminDone)
		if adm != nil {
			_ = adm.Serve(adminCtx, b) // nil once adminCtx ends
		}
	}()
	if msrv != nil {
		msrv.SetReady(true)
	}
	notifySocket := getenv(environ, "NOTIFY_SOCKET")
	if err := sdnotify.Send(notifySocket, "READY=1"); err != nil {
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
			next, err := config.Reload(cur, path, environ)
			ch <- reloadResult{next, err}
		}(l)
		reloading = ch
	}
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info().Dur("drain_timeout", l.DrainTimeout.Duration).Msg("shutting down")
			_ = sdnotify.Send(notifySocket, "STOPPING=1")
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
		msrv.SetReady(false)
	}
	stopServing()
	wg.Wait()
	// The admin socket answers until the gates have drained; the state
	// file is written once more with the bans as they are at the end.
	stopAdmin()
	<-adminDone
	if sw != nil {
		sw.Changed()
		_ = sw.Close() // a failed write was logged by the Writer
	}
	if msrv != nil {
		msrv.Close()
	}
	log.Info().Msg("stopped")
	return runErr
}

// reloadResult is what a reload read: the next configuration, or why not.
type reloadResult struct {
	next *config.Config
	err  error
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
