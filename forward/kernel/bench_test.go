package kernel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/distgate/distgate/forward"
)

// The benchmarks put the kernel path and forward.Goroutines (and no proxy
// at all, "direct") side by side in one run; the machine is shared, so
// compare within a run. Run:
//
//	go test -run '^$' -bench . -count 5 ./forward/kernel/
//
// Ping-pong reports the round trip's p50 and p99 in microseconds; bulk
// reports MB/s one way into a reader that discards.

// benchPaths are the paths compared; direct has no forwarder.
func benchPaths(b *testing.B) []struct {
	name string
	f    forward.Forwarder
} {
	k, err := New(&forward.Goroutines{}, Options{SelfTestTimeout: -1})
	if errors.Is(err, ErrPermission) {
		b.Skipf("kernel path not available: %v", err)
	}
	if err != nil {
		b.Fatal(err)
	}
	// Never moved to user space by backpressure: the kernel's own rate.
	kbig, err := New(&forward.Goroutines{}, Options{SelfTestTimeout: -1, MaxQueued: 1 << 30})
	if err != nil {
		_ = k.Close()
		b.Fatal(err)
	}
	g := &forward.Goroutines{}
	b.Cleanup(func() {
		_ = k.Close()
		_ = kbig.Close()
		_ = g.Close()
	})
	return []struct {
		name string
		f    forward.Forwarder
	}{{"direct", nil}, {"user", g}, {"kernel", k}, {"kernel-nomove", kbig}}
}

// benchPair is a client and a node, through f, or one plain connection
// for direct.
func benchPair(b *testing.B, f forward.Forwarder) (client, node *net.TCPConn) {
	b.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	if f == nil {
		c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
		if err != nil {
			b.Fatal(err)
		}
		n, err := ln.AcceptTCP()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_ = c.Close()
			_ = n.Close()
		})
		return c, n
	}
	st, err := newSelfTestPair(ln, time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	_ = st.client.SetDeadline(time.Time{})
	_ = st.node.SetDeadline(time.Time{})
	done := make(chan forward.Result, 1)
	if _, err := f.Start(forward.Pair{Client: st.c, Upstream: st.u}, func(r forward.Result) { done <- r }); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = st.client.Close()
		_ = st.node.Close()
		<-done
	})
	return st.client, st.node
}

func BenchmarkPingPong(b *testing.B) {
	paths := benchPaths(b)
	for _, size := range []int{64, 1024} {
		for _, p := range paths {
			if p.name == "kernel-nomove" {
				continue // the same as kernel for small frames
			}
			b.Run(fmt.Sprintf("%dB/%s", size, p.name), func(b *testing.B) {
				client, node := benchPair(b, p.f)
				go echo(node, size)
				msg := make([]byte, size)
				back := make([]byte, size)
				rtts := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for range b.N {
					t0 := time.Now()
					if _, err := client.Write(msg); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(client, back); err != nil {
						b.Fatal(err)
					}
					rtts = append(rtts, time.Since(t0))
				}
				b.StopTimer()
				slices.Sort(rtts)
				b.ReportMetric(us(rtts[len(rtts)/2]), "p50-µs")
				b.ReportMetric(us(rtts[len(rtts)*99/100]), "p99-µs")
			})
		}
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// echo writes back what it reads, in reads of at most size.
func echo(c *net.TCPConn, size int) {
	buf := make([]byte, size)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func BenchmarkBulk(b *testing.B) {
	const chunk = 64 << 20
	for _, p := range benchPaths(b) {
		b.Run(p.name, func(b *testing.B) {
			client, node := benchPair(b, p.f)
			got := make(chan int64)
			go func() {
				buf := make([]byte, 256<<10)
				var n int64
				for {
					m, err := node.Read(buf)
					n += int64(m)
					if n >= chunk {
						got <- n
						n -= chunk
					}
					if err != nil {
						close(got)
						return
					}
				}
			}()
			buf := make([]byte, 256<<10)
			b.SetBytes(chunk)
			b.ResetTimer()
			for range b.N {
				for sent := 0; sent < chunk; sent += len(buf) {
					if _, err := client.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				if _, ok := <-got; !ok {
					b.Fatal("reader ended")
				}
			}
			b.StopTimer()
			if k, ok := p.f.(*Kernel); ok {
				// Pairs (one per round) moved to user space by
				// backpressure so far in this benchmark.
				b.ReportMetric(float64(k.Stats().Backpressure), "moved")
			}
		})
	}
}
