// Package attack holds the bounded attack and fault loads that distgate's
// end-to-end tests (test/), stress tool (stress/) and benchmark (bench/)
// share: floods of connections that send nothing or a few bytes,
// checksummed streams through the gate to a fake node (testenv.FakeNode),
// and the Erlang operators' loops that time calls and sessions meanwhile.
// Every load is bounded in count and time, and runs over loopback only.
package attack

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// FloodConfig describes a flood: Conns connections to Target, spread round
// robin over Sources, Workers at a time. Each connection writes the bytes
// Send gives it (nothing if nil or empty), then waits for the server to close
// it, for at most Hold.
type FloodConfig struct {
	Target  string
	Sources []string // local addresses to dial from, e.g. 127.0.0.2; empty: the default
	Conns   int
	Workers int                // <= 0: 64
	Send    func(i int) []byte // the bytes connection i writes first; nil: none
	Hold    time.Duration      // how long to wait for the server's close; <= 0: 5 s
	// For, if set, also ends the flood after this long: no new connection
	// is started after it.
	For time.Duration
}

// FloodResult says how the server ended the connections of a flood.
type FloodResult struct {
	Conns    int // connections made (dialled, or reset while dialling)
	Closed   int // ended by the server with a FIN and no byte
	Reset    int // ended by the server with a RST and no byte, maybe while dialling
	GotBytes int // the server wrote at least one byte (a leak, for a gate that denies)
	Timeouts int // still open after Hold; the flood closed them itself
	DialErrs int
	FirstErr error // the first dial or unexpected error
	Elapsed  time.Duration
	// Held is, per connection made, how long the server kept it open: from
	// the end of the dial to the close.
	Held []time.Duration
}

// Rate is the connections made per second.
func (r *FloodResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Conns) / r.Elapsed.Seconds()
}

// Flood runs cfg until every connection is done or ctx ends.
func Flood(ctx context.Context, cfg FloodConfig) FloodResult {
	workers := cfg.Workers
	if workers <= 0 {
		workers = 64
	}
	hold := cfg.Hold
	if hold <= 0 {
		hold = 5 * time.Second
	}
	dialers := make([]*net.Dialer, max(1, len(cfg.Sources)))
	for i := range dialers {
		dialers[i] = &net.Dialer{Timeout: 5 * time.Second}
		if i < len(cfg.Sources) && cfg.Sources[i] != "" {
			dialers[i].LocalAddr = &net.TCPAddr{IP: net.ParseIP(cfg.Sources[i])}
			dialers[i].Control = BindNoPort
		}
	}

	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		started = time.Now()
		until   time.Time
	)
	if cfg.For > 0 {
		until = started.Add(cfg.For)
	}
	// Each worker keeps its own tally, merged at the end: a shared lock
	// per connection would be felt at tens of thousands a second.
	tallies := make([]FloodResult, workers)
	for w := range tallies {
		wg.Go(func() {
			r := &tallies[w]
			buf := make([]byte, 512)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.Conns || (!until.IsZero() && time.Now().After(until)) {
					return
				}
				c, err := dialers[i%len(dialers)].DialContext(ctx, "tcp", cfg.Target)
				if err != nil {
					// A reset that lands before connect returns is a
					// denial too (a gate that denies with RST).
					if errors.Is(err, syscall.ECONNRESET) {
						r.Conns++
						r.Reset++
						r.Held = append(r.Held, 0)
						continue
					}
					r.DialErrs++
					if r.FirstErr == nil && ctx.Err() == nil {
						r.FirstErr = err
					}
					continue
				}
				outcome, held, err := oneConn(c.(*net.TCPConn), cfg.Send, i, hold, buf)
				r.Conns++
				r.Held = append(r.Held, held)
				switch outcome {
				case outClosed:
					r.Closed++
				case outReset:
					r.Reset++
				case outBytes:
					r.GotBytes++
				case outTimeout:
					r.Timeouts++
				}
				if err != nil && r.FirstErr == nil {
					r.FirstErr = err
				}
			}
		})
	}
	wg.Wait()
	var res FloodResult
	res.Elapsed = time.Since(started)
	for _, r := range tallies {
		res.Conns += r.Conns
		res.Closed += r.Closed
		res.Reset += r.Reset
		res.GotBytes += r.GotBytes
		res.Timeouts += r.Timeouts
		res.DialErrs += r.DialErrs
		res.Held = append(res.Held, r.Held...)
		if res.FirstErr == nil {
			res.FirstErr = r.FirstErr
		}
	}
	return res
}

// BindNoPort, a net.Dialer's Control, sets IP_BIND_ADDRESS_NO_PORT on a
// socket that binds a source address, so that the port is chosen at
// connect time per destination (and TIME_WAIT ports can be reused on
// loopback) rather than at bind time, which would run the ephemeral range
// dry within seconds at thousands of connections per second.
func BindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	}); err != nil {
		return err
	}
	return serr
}

const ipBindAddressNoPort = 24 // linux/in.h IP_BIND_ADDRESS_NO_PORT

// Median returns the median of vs; ok is false (and the median NaN) for
// none.
func Median(vs []float64) (m float64, ok bool) {
	if len(vs) == 0 {
		return math.NaN(), false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2], true
	}
	return (s[n/2-1] + s[n/2]) / 2, true
}

// Percentile returns the p-quantile (0 < p <= 1) of vs by the nearest-rank
// method; 0 for none.
func Percentile[T ~int64](vs []T, p float64) T {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	k := int(math.Ceil(float64(len(s))*p)) - 1
	return s[min(max(k, 0), len(s)-1)]
}

type outcome int

const (
	outClosed outcome = iota
	outReset
	outBytes
	outTimeout
	outOther
)

// oneConn writes what send gives, then reads until the server ends c.
func oneConn(c *net.TCPConn, send func(int) []byte, i int, hold time.Duration, buf []byte) (outcome, time.Duration, error) {
	defer c.Close()
	start := time.Now()
	if send != nil {
		if b := send(i); len(b) > 0 {
			// A write error means the server closed already (a denial);
			// the read below says how.
			_, _ = c.Write(b)
		}
	}
	_ = c.SetReadDeadline(start.Add(hold))
	got := 0
	for {
		n, err := c.Read(buf)
		got += n
		if err == nil {
			continue
		}
		held := time.Since(start)
		switch {
		case got > 0:
			return outBytes, held, nil
		case err == io.EOF:
			return outClosed, held, nil
		case errors.Is(err, syscall.ECONNRESET):
			return outReset, held, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			return outTimeout, held, nil
		default:
			return outOther, held, err
		}
	}
}
