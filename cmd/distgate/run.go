package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/distgate/distgate/proxy"
)

// newLogger builds the process logger: JSON lines, or a human console format.
func newLogger(c LogConfig, w io.Writer) zerolog.Logger {
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, NoColor: true, TimeFormat: time.RFC3339}
	}
	// The level is process-wide so a reload reaches every gate's logger.
	zerolog.SetGlobalLevel(parseLevel(c.Level))
	return zerolog.New(w).With().Timestamp().Logger()
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
func run(ctx context.Context, l *Loaded, path string, environ []string, hup <-chan os.Signal, stderr io.Writer) error {
	log := newLogger(l.Log, stderr)
	for _, w := range l.Warnings {
		log.Warn().Str("config", l.Source).Msg(w)
	}

	// Listen on everything first so a taken address fails the start
	// before any gate serves.
	// No keep-alive at accept: the gates turn it on for admitted
	// connections only, so a denial costs no setsockopt calls.
	lc := net.ListenConfig{KeepAlive: -1}
	lns := make([]net.Listener, 0, len(l.compiled))
	closeAll := func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}
	for _, cg := range l.compiled {
		ln, err := lc.Listen(ctx, "tcp", cg.listen)
		if err != nil {
			closeAll()
			return fmt.Errorf("gate %q: %w", cg.name, err)
		}
		lns = append(lns, ln)
	}

	reg := newMetrics()
	var msrv *metricsServer
	if l.Metrics.Listen != "" {
		var err error
		if msrv, err = startMetrics(l.Metrics.Listen, reg, log); err != nil {
			closeAll()
			return fmt.Errorf("metrics: %w", err)
		}
	}

	hs := proxy.NewHandshakes(*l.MaxHandshakes)
	gates := make([]*proxy.Gate, len(l.compiled))
	for i, cg := range l.compiled {
		gates[i] = proxy.NewGate(cg.name, cg.upstream, cg.settings, log, reg.gate(cg.name), hs)
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
		log.Info().Str("gate", g.Name()).Str("listen", lns[i].Addr().String()).
			Str("upstream", g.Upstream()).Msg("listening")
	}
	if msrv != nil {
		msrv.setReady(true)
	}

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info().Dur("drain_timeout", l.DrainTimeout.Duration).Msg("shutting down")
			break loop
		case err := <-errc:
			log.Error().Err(err).Msg("gate stopped")
			runErr = err
			break loop
		case <-hup:
			revoked := make([]int, len(gates))
			nl, err := reload(l, path, environ, gates, revoked)
			if err != nil {
				reg.reload(false)
				log.Error().Str("config", l.Source).Err(err).Msg("reload refused; keeping the running configuration")
				continue
			}
			reg.reload(true)
			l = nl
			zerolog.SetGlobalLevel(parseLevel(l.Log.Level))
			for _, w := range l.Warnings {
				log.Warn().Str("config", l.Source).Msg(w)
			}
			for i, g := range gates {
				log.Info().Str("gate", g.Name()).Str("config", l.Source).Int("revoked", revoked[i]).Msg("reloaded")
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

// reload reads the configuration again and applies it to the running gates.
// What cannot change without a restart (the set of gates, their listen and
// upstream addresses, the log format, the metrics address, the handshake
// cap) makes the whole reload fail, so nothing is half-applied.
// revoked[i] gets the number of live connections gate i closed.
func reload(old *Loaded, path string, environ []string, gates []*proxy.Gate, revoked []int) (*Loaded, error) {
	nl, err := load(path, environ)
	if err != nil {
		return nil, err
	}
	var why []string
	if len(nl.compiled) != len(old.compiled) {
		why = append(why, fmt.Sprintf("the number of gates changed (%d to %d)", len(old.compiled), len(nl.compiled)))
	} else {
		for i, cg := range nl.compiled {
			oc := old.compiled[i]
			if cg.name != oc.name {
				why = append(why, fmt.Sprintf("gate[%d].name changed (%q to %q)", i, oc.name, cg.name))
			}
			if cg.listen != oc.listen {
				why = append(why, fmt.Sprintf("gate %q: listen changed (%q to %q)", oc.name, oc.listen, cg.listen))
			}
			if cg.upstream != oc.upstream {
				why = append(why, fmt.Sprintf("gate %q: upstream changed (%q to %q)", oc.name, oc.upstream, cg.upstream))
			}
		}
	}
	if nl.Log.Format != old.Log.Format {
		why = append(why, fmt.Sprintf("log.format changed (%q to %q)", old.Log.Format, nl.Log.Format))
	}
	if nl.Metrics.Listen != old.Metrics.Listen {
		why = append(why, fmt.Sprintf("metrics.listen changed (%q to %q)", old.Metrics.Listen, nl.Metrics.Listen))
	}
	if *nl.MaxHandshakes != *old.MaxHandshakes {
		why = append(why, fmt.Sprintf("max_handshakes changed (%d to %d)", *old.MaxHandshakes, *nl.MaxHandshakes))
	}
	if len(why) > 0 {
		return nil, errors.New(strings.Join(why, "; ") + " (restart to apply)")
	}
	for i, g := range gates {
		revoked[i] = g.Update(nl.compiled[i].settings)
	}
	return nl, nil
}
