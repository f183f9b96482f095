// Package attack holds the bounded attack and fault loads that distgate's
// end-to-end tests (test/) and stress scripts (stress/*.sh) share: floods of
// connections that send nothing or a few bytes, checksummed streams through
// the gate to a Go stand-in for the node, and readings of a process's memory,
// CPU time and descriptors from /proc. Every load is bounded in count and
// time, and runs over loopback only.
package attack

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
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
	Conns    int // connections made (dialled successfully)
	Closed   int // ended by the server with a FIN and no byte
	Reset    int // ended by the server with a RST and no byte
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
		}
	}

	var (
		next    atomic.Int64
		mu      sync.Mutex
		res     FloodResult
		wg      sync.WaitGroup
		started = time.Now()
	)
	note := func(f func(r *FloodResult)) {
		mu.Lock()
		f(&res)
		mu.Unlock()
	}
	res.Held = make([]time.Duration, 0, min(cfg.Conns, 1<<20))
	var until time.Time
	if cfg.For > 0 {
		until = started.Add(cfg.For)
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.Conns || (!until.IsZero() && time.Now().After(until)) {
					return
				}
				c, err := dialers[i%len(dialers)].DialContext(ctx, "tcp", cfg.Target)
				if err != nil {
					note(func(r *FloodResult) {
						r.DialErrs++
						if r.FirstErr == nil && ctx.Err() == nil {
							r.FirstErr = err
						}
					})
					continue
				}
				outcome, held, err := oneConn(c.(*net.TCPConn), cfg.Send, i, hold, buf)
				note(func(r *FloodResult) {
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
				})
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(started)
	return res
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
