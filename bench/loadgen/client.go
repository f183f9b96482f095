package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distgate/distgate/internal/attack"
	"github.com/distgate/distgate/internal/testenv"
)

// benchName is the node name every benchmark client gives: an OTP 25
// hidden node's first message and handshake, so distgate reads, parses and
// checks it (flags, name) exactly as it would for a remote shell.
const benchName = "bench@127.0.0.1"

// Sources: allowed clients come from 127.0.0.1, the flood from 127.0.0.2.
var allowedSrc = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}

// admit dials addr from 127.0.0.1 and completes the handshake with the
// upstream (testenv.Handshake, up to its 'a'), so a returned conn has been
// admitted and forwarded end to end. The conn carries deadline.
func admit(addr string, deadline time.Time) (*net.TCPConn, error) {
	d := net.Dialer{LocalAddr: allowedSrc, Deadline: deadline, Control: attack.BindNoPort}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	_ = tc.SetDeadline(deadline)
	if _, _, err := testenv.Handshake(tc, benchName); err != nil {
		_ = tc.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return tc, nil
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
		if err := testenv.Command(c, testenv.CmdSink, uint64(size)); err != nil {
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
	if err := testenv.Command(c, testenv.CmdSource, uint64(size)); err != nil {
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
	if err := testenv.Command(c, testenv.CmdEcho, 0); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// pingpong sends messages of size bytes and waits for each echo, at most
// n times, until end, or until stop closes; it returns each round trip in
// ns after warm unrecorded ones.
func pingpong(c *net.TCPConn, size, n, warm int, end time.Time, stop <-chan struct{}) ([]int64, error) {
	out, in := make([]byte, size), make([]byte, size)
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
		if _, err := c.Write(out); err != nil {
			return lat, err
		}
		if _, err := io.ReadFull(c, in); err != nil {
			return lat, err
		}
		if i >= warm {
			lat = append(lat, time.Since(t0).Nanoseconds())
		}
	}
	if !bytes.Equal(in, out) {
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

// setupRate runs clients goroutines, each repeating connect, handshake,
// close, until dur has passed (or maxPer each); it reports the
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

// flood runs clients goroutines connecting from 127.0.0.2 until dur has
// passed; each connection waits (at most 1 s) for the proxy to close it.
func flood(addr string, clients int, dur time.Duration) attack.FloodResult {
	return attack.Flood(context.Background(), attack.FloodConfig{Target: addr, Sources: []string{"127.0.0.2"},
		Conns: 1 << 30, Workers: clients, Hold: time.Second, For: dur})
}

// rejects is how many of a flood's connections the proxy turned away:
// closed or reset without a byte.
func rejects(r attack.FloodResult) int { return r.Closed + r.Reset }

// openMany opens n connections to addr with workers goroutines. Admitted
// ones complete the handshake (idle, forwarded connections); partial
// ones send only the first 7 bytes of the first message and stall there, as a slow or
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
					d := net.Dialer{LocalAddr: allowedSrc, Deadline: deadline, Control: attack.BindNoPort}
					var nc net.Conn
					if nc, err = d.Dial("tcp", addr); err == nil {
						c = nc.(*net.TCPConn)
						if _, err = c.Write(testenv.Hello(benchName)[:7]); err != nil {
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
