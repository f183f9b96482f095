package forward

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"
)

// Benchmarks of the forwarders side by side, over loopback, in one run:
// the machine is shared, so compare within a run, not across runs.
//
//	go test -run '^$' -bench . -count 5 ./forward/
//
// PingPong: one op is one round trip of size bytes through the forwarder
// to an echoing upstream; p50 and p99 per op are reported, and "direct"
// (no forwarder) is the baseline to subtract. Bulk: one-way MB/s. IdleRSS:
// what an idle pair costs once it has moved a message.

type benchImpl struct {
	name string
	new  func() (Forwarder, error)
}

// benchImpls are the forwarders compared; nil new means no forwarder.
var benchImpls = []benchImpl{
	{"direct", nil},
	{"goroutines", func() (Forwarder, error) { return &Goroutines{}, nil }},
	{"user", func() (Forwarder, error) { return NewUser() }},
}

// benchChain starts f on a new chain through ln, or, when f is nil,
// returns the two ends of a direct connection.
func benchChain(b *testing.B, ln *net.TCPListener, f Forwarder) (client, upstream *net.TCPConn) {
	b.Helper()
	if f == nil {
		return connect(b, ln)
	}
	ch := newChain(b, ln)
	if _, err := f.Start(ch.pair, func(Result) {}); err != nil {
		b.Fatal(err)
	}
	return ch.client, ch.upstream
}

func newForwarder(b *testing.B, mk func() (Forwarder, error)) Forwarder {
	b.Helper()
	if mk == nil {
		return nil
	}
	f, err := mk()
	if err != nil {
		b.Skip(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	return f
}

// echo answers each size-byte message on c with the same bytes until c
// ends.
func echo(c *net.TCPConn, size int) {
	buf := make([]byte, size)
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// pingPong runs b.N round trips of size bytes from client and reports
// their p50 and p99 in microseconds.
func pingPong(b *testing.B, client, upstream *net.TCPConn, size int) {
	b.Helper()
	go echo(upstream, size)
	msg := make([]byte, size)
	got := make([]byte, size)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	cpu := cpuTime()
	for range b.N {
		t0 := time.Now()
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, got); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
	reportLatency(b, lat)
	_ = client.Close()
}

// cpuTime is the CPU time the process has used, user and system. The
// machine is shared: wall-clock rates move with the neighbours' load, the
// CPU a transfer costs much less.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU seconds per GiB moved (client,
// upstream and forwarder together: subtract "direct").
func reportCPU(b *testing.B, cpu time.Duration, n int64) {
	b.ReportMetric(cpu.Seconds()/(float64(n)/(1<<30)), "cpu-s/GiB")
}

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

func BenchmarkPingPong(b *testing.B) {
	for _, size := range []int{64, 1024} {
		for _, im := range benchImpls {
			b.Run(fmt.Sprintf("%dB/%s", size, im.name), func(b *testing.B) {
				f := newForwarder(b, im.new)
				c, u := benchChain(b, newListener(b), f)
				pingPong(b, c, u, size)
			})
		}
	}
}

// bulk sends b.N chunks from src and reads them at dst.
func bulk(b *testing.B, src, dst *net.TCPConn) {
	b.Helper()
	const chunk = 256 << 10
	b.SetBytes(chunk)
	done := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, dst)
		done <- n
	}()
	buf := make([]byte, chunk)
	b.ResetTimer()
	cpu := cpuTime()
	for range b.N {
		if _, err := src.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	_ = src.CloseWrite()
	if n := <-done; n != int64(b.N)*chunk {
		b.Fatalf("received %d bytes, want %d", n, int64(b.N)*chunk)
	}
	b.StopTimer()
	reportCPU(b, cpuTime()-cpu, int64(b.N)*chunk)
	_ = src.Close()
}

func BenchmarkBulk(b *testing.B) {
	for _, dir := range []string{"up", "down"} {
		for _, im := range benchImpls {
			b.Run(dir+"/"+im.name, func(b *testing.B) {
				f := newForwarder(b, im.new)
				c, u := benchChain(b, newListener(b), f)
				if dir == "up" {
					bulk(b, c, u)
				} else {
					bulk(b, u, c)
				}
			})
		}
	}
}

// BenchmarkIdleRSS measures what 2 000 idle pairs cost once each has
// moved one message: RSS (after a GC that returns what it can to the
// system), Go heap and goroutine stacks, per pair, against the same
// sockets before Start. The gate-side *net.TCPConns exist in both
// figures; User frees them at Start, which its figures include.
func BenchmarkIdleRSS(b *testing.B) {
	const pairs = 2000
	for _, im := range benchImpls[1:] {
		b.Run(im.name, func(b *testing.B) {
			for range b.N {
				idleRSS(b, im.new, pairs)
			}
		})
	}
}

func idleRSS(b *testing.B, mk func() (Forwarder, error), pairs int) {
	f, err := mk()
	if err != nil {
		b.Skip(err)
	}
	ln := newListener(b)
	chains := make([]chain, pairs)
	for i := range chains {
		chains[i] = newChain(b, ln)
	}
	msg := []byte("ping")
	var ms0, ms1 runtime.MemStats
	rss0 := settledRSS(b)
	runtime.ReadMemStats(&ms0)
	sockets0, pipes0 := fds(b)
	for _, ch := range chains {
		if _, err := f.Start(ch.pair, func(Result) {}); err != nil {
			b.Fatal(err)
		}
		write(b, ch.client, msg)
		expect(b, ch.upstream, msg)
		write(b, ch.upstream, msg)
		expect(b, ch.client, msg)
	}
	rss1 := settledRSS(b)
	runtime.ReadMemStats(&ms1)
	sockets1, pipes1 := fds(b)
	n := float64(pairs)
	b.ReportMetric(float64(rss1-rss0)/1024/n, "RSS-KiB/pair")
	b.ReportMetric((float64(ms1.HeapInuse)-float64(ms0.HeapInuse))/n, "heap-B/pair")
	b.ReportMetric((float64(ms1.StackInuse)-float64(ms0.StackInuse))/n, "stack-B/pair")
	b.ReportMetric(float64(sockets1-sockets0+pipes1-pipes0)/n+2, "fds/pair")
	for _, ch := range chains {
		_ = ch.client.Close()
		_ = ch.upstream.Close()
	}
	_ = f.Close()
	_ = ln.Close()
}

// userWith returns a constructor for a User with loops loops and buffers
// of bufSize bytes.
func userWith(loops, bufSize int) func() (Forwarder, error) {
	return func() (Forwarder, error) { return newUser(loops, bufSize) }
}

// BenchmarkUserBuffer: the buffer size against small round trips and
// bulk, to choose DefaultUserBuffer.
func BenchmarkUserBuffer(b *testing.B) {
	sizes := []int{16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10}
	for _, bs := range sizes {
		b.Run(fmt.Sprintf("pingpong-1024B/buf=%dK", bs>>10), func(b *testing.B) {
			c, u := benchChain(b, newListener(b), newForwarder(b, userWith(1, bs)))
			pingPong(b, c, u, 1024)
		})
	}
	for _, bs := range sizes {
		b.Run(fmt.Sprintf("bulk-up/buf=%dK", bs>>10), func(b *testing.B) {
			c, u := benchChain(b, newListener(b), newForwarder(b, userWith(1, bs)))
			bulk(b, c, u)
		})
	}
}

// BenchmarkUserLoops: one loop against one per GOMAXPROCS, with one pair
// and with several busy at once, to choose NewUser's loop count.
func BenchmarkUserLoops(b *testing.B) {
	counts := []int{1, runtime.GOMAXPROCS(0)}
	if counts[1] == 1 {
		counts[1] = 2
	}
	for _, n := range counts {
		b.Run(fmt.Sprintf("pingpong-64B-1pair/loops=%d", n), func(b *testing.B) {
			c, u := benchChain(b, newListener(b), newForwarder(b, userWith(n, DefaultUserBuffer)))
			pingPong(b, c, u, 64)
		})
	}
	for _, n := range counts {
		b.Run(fmt.Sprintf("pingpong-64B-8pairs/loops=%d", n), func(b *testing.B) {
			f := newForwarder(b, userWith(n, DefaultUserBuffer))
			ln := newListener(b)
			const pairs = 8
			lats := make(chan []time.Duration, pairs)
			per := max(b.N/pairs, 1)
			start := make(chan struct{})
			for range pairs {
				c, u := benchChain(b, ln, f)
				go echo(u, 64)
				go func() {
					msg, got := make([]byte, 64), make([]byte, 64)
					lat := make([]time.Duration, 0, per)
					<-start
					for range per {
						t0 := time.Now()
						if _, err := c.Write(msg); err != nil {
							break
						}
						if _, err := io.ReadFull(c, got); err != nil {
							break
						}
						lat = append(lat, time.Since(t0))
					}
					_ = c.Close()
					lats <- lat
				}()
			}
			b.ResetTimer()
			cpu := cpuTime()
			close(start)
			var all []time.Duration
			for range pairs {
				all = append(all, <-lats...)
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/1e3/float64(len(all)), "cpu-µs/op")
			reportLatency(b, all)
		})
	}
	for _, n := range counts {
		b.Run(fmt.Sprintf("bulk-2streams/loops=%d", n), func(b *testing.B) {
			f := newForwarder(b, userWith(n, DefaultUserBuffer))
			ln := newListener(b)
			c1, u1 := benchChain(b, ln, f)
			c2, u2 := benchChain(b, ln, f)
			const chunk = 256 << 10
			b.SetBytes(2 * chunk)
			errc := make(chan error, 4)
			b.ResetTimer()
			cpu := cpuTime()
			for _, p := range [][2]*net.TCPConn{{c1, u1}, {u2, c2}} {
				go func() {
					n, err := io.Copy(io.Discard, p[1])
					if err == nil && n != int64(b.N)*chunk {
						err = fmt.Errorf("received %d bytes, want %d", n, int64(b.N)*chunk)
					}
					errc <- err
				}()
				go func() {
					buf := make([]byte, chunk)
					var err error
					for range b.N {
						if _, err = p[0].Write(buf); err != nil {
							break
						}
					}
					_ = p[0].CloseWrite()
					errc <- err
				}()
			}
			for range 4 {
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportCPU(b, cpuTime()-cpu, 2*int64(b.N)*chunk)
			for _, c := range []*net.TCPConn{c1, c2} {
				_ = c.Close()
			}
		})
	}
}
