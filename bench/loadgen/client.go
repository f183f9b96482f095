package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/distgate/distgate/wire"
)

// hello is the first message every benchmark client sends: what an OTP 25
// hidden node named bench@127.0.0.1 sends, so distgate reads, parses and
// checks it (flags, name) exactly as it would for a remote shell.
var hello = mustHello()

func mustHello() []byte {
	b, err := wire.Append(nil, wire.Handshake{
		Tag:      wire.TagNew,
		Flags:    wire.DefaultHiddenFlags,
		Creation: 0x5eed,
		Name:     []byte("bench@127.0.0.1"),
	})
	if err != nil {
		panic(err)
	}
	return b
}

// Sources: allowed clients come from 127.0.0.1, the flood from 127.0.0.2.
var (
	allowedSrc = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	floodSrc   = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
)

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT on a socket that binds a source
// address, so the port is chosen at connect time per destination (and
// TIME_WAIT ports can be reused on loopback) rather than at bind time,
// which would run the ephemeral range dry within seconds at thousands of
// connections per second.
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	}); err != nil {
		return err
	}
	return serr
}

const ipBindAddressNoPort = 24 // linux/in.h IP_BIND_ADDRESS_NO_PORT

// admit dials addr from 127.0.0.1, sends hello and reads the upstream's
// status frame, so a returned conn has been admitted and spliced end to end.
// The conn carries deadline.
func admit(addr string, deadline time.Time) (*net.TCPConn, error) {
	d := net.Dialer{LocalAddr: allowedSrc, Deadline: deadline, Control: bindNoPort}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	_ = tc.SetDeadline(deadline)
	if _, err := tc.Write(hello); err != nil {
		_ = tc.Close()
		return nil, err
	}
	var st [5]byte
	if _, err := io.ReadFull(tc, st[:]); err != nil {
		_ = tc.Close()
		return nil, fmt.Errorf("reading status: %w", err)
	}
	if !bytes.Equal(st[:], statusOK) {
		_ = tc.Close()
		return nil, fmt.Errorf("unexpected status %q", st[:])
	}
	return tc, nil
}

func sendCommand(c *net.TCPConn, cmd byte, arg uint64) error {
	var b [9]byte
	b[0] = cmd
	binary.BigEndian.PutUint64(b[1:], arg)
	_, err := c.Write(b[:])
	return err
}

var bulkBuf = make([]byte, 1<<20)

// bulk moves size bytes over one connection, client to upstream (up) or
// upstream to client, and returns the time from the command to the last
// byte (up: to the upstream's acknowledgement of the count).
func bulk(addr string, up bool, size int64, limit time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(limit)
	c, err := admit(addr, deadline)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	if up {
		if err := sendCommand(c, cmdSink, uint64(size)); err != nil {
			return 0, err
		}
		for left := size; left > 0; {
			n := min(left, int64(len(bulkBuf)))
			if _, err := c.Write(bulkBuf[:n]); err != nil {
				return 0, err
			}
			left -= n
		}
		var ack [8]byte
		if _, err := io.ReadFull(c, ack[:]); err != nil {
			return 0, fmt.Errorf("reading ack: %w", err)
		}
		if got := binary.BigEndian.Uint64(ack[:]); got != uint64(size) {
			return 0, fmt.Errorf("upstream got %d of %d bytes", got, size)
		}
		return time.Since(start), nil
	}
	if err := sendCommand(c, cmdSource, uint64(size)); err != nil {
		return 0, err
	}
	var got int64
	for got < size {
		n, err := c.Read(bulkBuf)
		got += int64(n)
		if err != nil {
			break
		}
	}
	if got != size {
		return 0, fmt.Errorf("got %d of %d bytes", got, size)
	}
	return time.Since(start), nil
}

// echoConn is an admitted connection in echo mode.
func echoConn(addr string, deadline time.Time) (*net.TCPConn, error) {
	c, err := admit(addr, deadline)
	if err != nil {
		return nil, err
	}
	if err := sendCommand(c, cmdEcho, 0); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// pingpong sends 64-byte messages and waits for each echo, at most n times,
// until end, or until stop closes; it returns each round trip in ns after
// warm unrecorded ones.
func pingpong(c *net.TCPConn, n, warm int, end time.Time, stop <-chan struct{}) ([]int64, error) {
	var out, in [64]byte
	for i := range out {
		out[i] = byte(i)
	}
	lat := make([]int64, 0, n)
	for i := 0; i < warm+n && time.Now().Before(end); i++ {
		if stop != nil && i%64 == 0 {
			select {
			case <-stop:
				return lat, nil
			default:
			}
		}
		t0 := time.Now()
		if _, err := c.Write(out[:]); err != nil {
			return lat, err
		}
		if _, err := io.ReadFull(c, in[:]); err != nil {
			return lat, err
		}
		if i >= warm {
			lat = append(lat, time.Since(t0).Nanoseconds())
		}
	}
	if in != out {
		return lat, errors.New("echo differs")
	}
	return lat, nil
}

// setupResult is one connection-setup run.
type setupResult struct {
	conns    int
	errs     int
	elapsed  time.Duration
	lat      []int64 // per connection, ns
	firstErr error
}

// setupRate runs clients goroutines, each repeating connect, hello, read
// status, close, until dur has passed (or maxPer each); it reports the
// completed connections and the time each took.
func setupRate(addr string, clients int, dur time.Duration, maxPer int) setupResult {
	var mu sync.Mutex
	var res setupResult
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(dur)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]int64, 0, 4096)
			var errs int
			var first error
			for i := 0; i < maxPer && time.Now().Before(end); i++ {
				t0 := time.Now()
				c, err := admit(addr, t0.Add(2*time.Second))
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				_ = c.Close()
				lat = append(lat, time.Since(t0).Nanoseconds())
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errs += errs
			if res.firstErr == nil {
				res.firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.conns = len(res.lat)
	return res
}

// floodResult counts what a flood of connections from a non-allowed source
// met.
type floodResult struct {
	rejects    int64 // accepted, then closed (FIN or RST) without a byte
	leaked     int64 // got a byte back: the proxy let it through
	timeouts   int64 // connect or read timed out
	errs       int64 // other connect errors
	elapsed    time.Duration
	firstOther error
}

// flood runs clients goroutines connecting from 127.0.0.2 until dur has
// passed; each connection waits (at most 1 s) for the proxy to close it.
func flood(addr string, clients int, dur time.Duration) floodResult {
	var res floodResult
	var wg sync.WaitGroup
	var firstOnce sync.Once
	start := time.Now()
	end := start.Add(dur)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: floodSrc, Timeout: time.Second, Control: bindNoPort}
			var b [1]byte
			for i := 0; i < 1_000_000 && time.Now().Before(end); i++ {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					// A reset that lands before connect returns is a
					// reject too (HAProxy rejects with RST).
					if errors.Is(err, syscall.ECONNRESET) {
						atomic.AddInt64(&res.rejects, 1)
					} else if isTimeout(err) {
						atomic.AddInt64(&res.timeouts, 1)
					} else {
						atomic.AddInt64(&res.errs, 1)
						firstOnce.Do(func() { res.firstOther = err })
					}
					continue
				}
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				n, err := c.Read(b[:])
				switch {
				case n > 0:
					atomic.AddInt64(&res.leaked, 1)
				case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
					atomic.AddInt64(&res.rejects, 1)
				case isTimeout(err):
					atomic.AddInt64(&res.timeouts, 1)
				default:
					atomic.AddInt64(&res.errs, 1)
					firstOnce.Do(func() { res.firstOther = err })
				}
				_ = c.Close()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// openMany opens n connections to addr with workers goroutines. Admitted
// ones send hello and read the status (idle, spliced connections); partial
// ones send only the first 7 bytes of hello and stall there, as a slow or
// hostile client would. It returns what it opened and the first error.
func openMany(addr string, n, workers int, partial bool, deadline time.Time) ([]*net.TCPConn, error) {
	conns := make([]*net.TCPConn, n)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || time.Now().After(deadline) {
					return
				}
				var c *net.TCPConn
				var err error
				if partial {
					d := net.Dialer{LocalAddr: allowedSrc, Deadline: deadline, Control: bindNoPort}
					var nc net.Conn
					if nc, err = d.Dial("tcp", addr); err == nil {
						c = nc.(*net.TCPConn)
						if _, err = c.Write(hello[:7]); err != nil {
							_ = c.Close()
							c = nil
						}
					}
				} else {
					c, err = admit(addr, deadline)
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				_ = c.SetDeadline(time.Time{})
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	out := conns[:0]
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	return out, firstErr
}

func closeAll(cs []*net.TCPConn) {
	for _, c := range cs {
		_ = c.Close()
	}
}
