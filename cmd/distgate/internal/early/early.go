// Package early catches the signals of `distgate run` while the program's
// packages are still being initialized, long before main.
//
// Until a Go program calls signal.Notify for SIGHUP, the runtime's default
// for it is to exit; so is a `systemctl reload` sent while distgate starts.
// Package initialization (Prometheus, protobuf, TLS, ...) takes a good part
// of a start, so main is too late. This package imports only the os and
// os/signal packages (and context, syscall), which makes its init run as
// soon as theirs has, before the bulk of the others.
package early

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// Run holds run's signals, caught since this package's init, when the
// command line asks for run; nil for the other commands (and in tests).
var Run *Signals

func init() {
	if IsRun(os.Args[1:]) {
		Run = Catch()
	}
}

// IsRun reports whether args (after the program name) ask for run: no
// argument, "run", or a first argument that is run's -config flag.
func IsRun(args []string) bool {
	if len(args) == 0 || args[0] == "run" {
		return true
	}
	// Byte by byte: importing strings would make this package wait for
	// unicode's initialization, which comes late.
	a := args[0]
	for range 2 {
		if len(a) > 0 && a[0] == '-' {
			a = a[1:]
		}
	}
	return len(args[0]) > len(a) && (a == "config" || len(a) > 7 && a[:7] == "config=")
}

// Signals are the signals run acts on.
type Signals struct {
	hup  chan os.Signal
	term chan os.Signal
}

// Catch starts catching SIGHUP, SIGTERM and SIGINT, then ignores SIGPIPE so
// that a write to a stderr pipe without a reader fails with EPIPE instead of
// killing the process. In that order: once SIGPIPE shows as ignored (SigIgn
// in /proc/PID/status), the others are caught.
func Catch() *Signals {
	s := &Signals{hup: make(chan os.Signal, 1), term: make(chan os.Signal, 1)}
	signal.Notify(s.hup, syscall.SIGHUP)
	signal.Notify(s.term, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGPIPE)
	return s
}

// Hup receives SIGHUP. It holds one at most: SIGHUPs that arrive before it
// is read fold into one.
func (s *Signals) Hup() <-chan os.Signal { return s.hup }

// Context returns a context that ends at the first SIGTERM or SIGINT, one
// that arrived before the call included, or when cancel is called.
func (s *Signals) Context() (ctx context.Context, cancel context.CancelFunc) {
	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.term:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Stop stops catching SIGHUP, SIGTERM and SIGINT (SIGPIPE stays ignored).
func (s *Signals) Stop() {
	signal.Stop(s.hup)
	signal.Stop(s.term)
}
