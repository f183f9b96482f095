// Package pick builds the Forwarder that the top-level `forward` key names
// (design.md, Forwarding): "user", distgate's own event loop, or "kernel",
// the SOCKMAP redirect with the event loop as its fallback. A path that
// cannot run here falls back to one that can, and says why; the process
// shares the one Forwarder among its gates.
package pick

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/distgate/distgate/forward"
	"github.com/distgate/distgate/forward/kernel"
)

// Paths a configuration may name.
const (
	User   = "user"
	Kernel = "kernel"
)

// Kinds are the kinds of intervention the kernel path reports, a fixed
// set: the label values of distgate_forward_interventions_total.
var Kinds = []string{kernel.EventWatchdog, kernel.EventStalled, kernel.EventOverrun, kernel.EventDuplicate}

// Warn lines about interventions: a burst of warnBurst, then one per
// warnEvery; the rest are counted in the next line's "suppressed" (and,
// all of them, by Options.Intervention).
const (
	warnBurst = 10
	warnEvery = 6 * time.Second
)

// Options are what Open needs besides the path.
type Options struct {
	// Log receives the warn line when the path asked for cannot run,
	// and one warn line per intervention on the kernel path (rate
	// limited). The zero Logger writes nothing.
	Log zerolog.Logger
	// Intervention, if set, counts each intervention by kind (one of
	// Kinds). It is called on the kernel path's loop: it must not block.
	Intervention func(kind string)
	// Kernel tunes the kernel path; its Events field is Open's own.
	Kernel kernel.Options
}

// Forwarding is the process's forwarding path.
type Forwarding struct {
	// Forwarder is what every gate hands its pairs to.
	Forwarder forward.Forwarder
	// Path is the path in use: "user" or "kernel" (a kernel pair the
	// kernel cannot take still goes to the event loop; its Handle says).
	Path string
	// Fallback is why the path asked for is not what runs, or (for
	// "user" outside Linux) why the event loop gave way to goroutines;
	// nil otherwise.
	Fallback error

	user forward.Forwarder
	k    *kernel.Kernel
	rep  *reporter
}

// Open starts the path named path ("user" or "kernel"). It never fails:
// "kernel" falls back to "user" on any error (no CAP_BPF/CAP_NET_ADMIN,
// a failed self-test, a kernel without SOCKMAP) and logs why at warn.
func Open(path string, o Options) *Forwarding {
	user, uerr := forward.NewUserPath()
	f := &Forwarding{Forwarder: user, Path: User, user: user}
	if uerr != nil {
		f.Fallback = fmt.Errorf("event loop: %w; forwarding with two goroutines per connection", uerr)
		o.Log.Info().Err(uerr).Msg("forwarding with goroutines: the event loop cannot run here")
	}
	if path != Kernel {
		return f
	}
	f.rep = newReporter(o.Log, o.Intervention)
	ko := o.Kernel
	ko.Events = f.rep.event
	k, err := kernel.New(user, ko)
	if err != nil {
		f.rep.close()
		f.rep = nil
		f.Fallback = err
		o.Log.Warn().Str("forward", Kernel).Str("path", User).Err(err).
			Msg("kernel forwarding unavailable; forwarding in user space")
		return f
	}
	f.Forwarder, f.Path, f.k = k, Kernel, k
	return f
}

// Stats returns the kernel path's counters; ok is false on the user path.
func (f *Forwarding) Stats() (s kernel.Stats, ok bool) {
	if f.k == nil {
		return kernel.Stats{}, false
	}
	return f.k.Stats(), true
}

// Close stops what Open started, after every gate using it has returned
// from Serve: the kernel path first (its pairs, its loop, the BPF
// objects), then the event loop.
func (f *Forwarding) Close() error {
	var errs []error
	if f.k != nil {
		errs = append(errs, f.k.Close())
	}
	if f.rep != nil {
		f.rep.close()
	}
	errs = append(errs, f.user.Close())
	return errors.Join(errs...)
}

// reporter turns the kernel path's interventions into counts and warn
// lines. The kernel's loop calls event, which never blocks: the lines are
// written by a goroutine of its own, so a stderr that blocks holds up no
// forwarding.
type reporter struct {
	log        zerolog.Logger
	count      func(kind string)
	lim        *rate.Limiter
	lines      chan kernel.Event
	suppressed atomic.Int64
	wg         sync.WaitGroup
	once       sync.Once
}

func newReporter(log zerolog.Logger, count func(string)) *reporter {
	r := &reporter{log: log, count: count, lim: rate.NewLimiter(rate.Every(warnEvery), warnBurst),
		lines: make(chan kernel.Event, warnBurst)}
	r.wg.Add(1)
	go r.run()
	return r
}

func (r *reporter) event(ev kernel.Event) {
	if r.count != nil {
		r.count(ev.Kind)
	}
	if !r.lim.Allow() {
		r.suppressed.Add(1)
		return
	}
	select {
	case r.lines <- ev:
	default:
		r.suppressed.Add(1)
	}
}

func (r *reporter) run() {
	defer r.wg.Done()
	for ev := range r.lines {
		e := r.log.Warn().Str("path", Kernel).Str("kind", ev.Kind).Err(ev.Err)
		if n := r.suppressed.Swap(0); n > 0 {
			e = e.Int64("suppressed", n)
		}
		e.Msg("forwarding intervention")
	}
	if n := r.suppressed.Swap(0); n > 0 {
		r.log.Warn().Str("path", Kernel).Int64("suppressed", n).Msg("forwarding interventions not logged")
	}
}

// close ends run once the kernel path, the only caller of event, is closed.
func (r *reporter) close() {
	r.once.Do(func() { close(r.lines) })
	r.wg.Wait()
}
