//go:build linux

package forward

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Benchmarks of the forwarders side by side, over loopback:
//
//	go test -run '^$' -bench . -count 5 ./forward/
//
// The clients and the upstreams run in a second process (this test binary
// again, in TestBenchPeer), as they do in production: in one process the
// Go scheduler's spinning threads would pick up the forwarder's sockets
// for free and favour the forwarders that use Go's poller. This process
// holds only the forwarder, so its CPU time is the forwarder's.
//
// PingPong: one op is one round trip of size bytes through the forwarder
// to an echoing upstream; the peer reports p50 and p99, and "direct" (no
// forwarder) is the baseline to subtract. Bulk: one-way MB/s, and the
// forwarder's CPU seconds per GiB. IdleRSS: what an idle pair costs once
// it has moved a message. The machine is shared: compare within a run.

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

// userWith returns a constructor for a User with loops loops and buffers
// of bufSize bytes.
func userWith(loops, bufSize int) func() (Forwarder, error) {
	return func() (Forwarder, error) { return newUser(loops, bufSize) }
}

const bulkChunk = 256 << 10

// job is what the peer process does, for b.N ops.
type job struct {
	mode  string // pingpong, up, down, or mixed (pairs alternate up and down)
	size  int    // message size for pingpong
	pairs int
}

// runPeer runs j in a peer process through f (directly when f is nil) and
// reports the peer's latencies and the forwarder's CPU time.
func runPeer(b *testing.B, mk func() (Forwarder, error), j job) {
	b.Helper()
	var f Forwarder
	if mk != nil {
		var err error
		if f, err = mk(); err != nil {
			b.Skip(err)
		}
		defer f.Close()
	}
	gate := newListener(b)
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchPeer$")
	cmd.Env = append(os.Environ(),
		"FORWARD_BENCH_PEER="+j.mode,
		"FORWARD_BENCH_SIZE="+strconv.Itoa(j.size),
		"FORWARD_BENCH_PAIRS="+strconv.Itoa(max(j.pairs, 1)),
		"FORWARD_BENCH_N="+strconv.Itoa(b.N))
	if f != nil {
		cmd.Env = append(cmd.Env, "FORWARD_BENCH_GATE="+gate.Addr().String())
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := cmd.Wait(); err != nil {
			b.Errorf("peer: %v", err)
		}
	}()
	lines := bufio.NewScanner(out)
	line := func(prefix string) []string {
		var other []string
		for lines.Scan() {
			if rest, ok := strings.CutPrefix(lines.Text()+" ", prefix+" "); ok {
				return strings.Fields(rest)
			}
			other = append(other, lines.Text())
		}
		b.Log(strings.Join(other, "\n"))
		b.Fatalf("peer ended without a %q line: %v", prefix, lines.Err())
		return nil
	}
	up := line("upstream")[0]
	if f != nil {
		for range max(j.pairs, 1) {
			c, err := gate.AcceptTCP()
			if err != nil {
				b.Fatal(err)
			}
			u, err := net.Dial("tcp", up)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Start(Pair{Client: c, Upstream: u.(*net.TCPConn)}, func(Result) {}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	cpu := cpuTime()
	res := line("result")
	b.StopTimer()
	used := cpuTime() - cpu
	_, _ = io.Copy(io.Discard, out)
	if j.mode == "pingpong" {
		p50, _ := strconv.ParseFloat(res[0], 64)
		p99, _ := strconv.ParseFloat(res[1], 64)
		b.ReportMetric(p50, "p50-µs")
		b.ReportMetric(p99, "p99-µs")
		b.ReportMetric(float64(used.Nanoseconds())/1e3/float64(b.N*max(j.pairs, 1)), "fwd-cpu-µs/op")
		return
	}
	b.SetBytes(bulkChunk * int64(max(j.pairs, 1)))
	b.ReportMetric(used.Seconds()/(float64(int64(b.N)*bulkChunk*int64(max(j.pairs, 1)))/(1<<30)), "fwd-cpu-s/GiB")
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBenchPeer is the benchmarks' peer process: it listens as the
// upstream, connects its clients to the gate (or straight to itself), runs
// the job and prints the result. Run alone it does nothing.
func TestBenchPeer(t *testing.T) {
	mode := os.Getenv("FORWARD_BENCH_PEER")
	if mode == "" {
		t.Skip("the benchmarks' peer process")
	}
	size, _ := strconv.Atoi(os.Getenv("FORWARD_BENCH_SIZE"))
	pairs, _ := strconv.Atoi(os.Getenv("FORWARD_BENCH_PAIRS"))
	n, _ := strconv.Atoi(os.Getenv("FORWARD_BENCH_N"))
	gate := os.Getenv("FORWARD_BENCH_GATE")
	ln := newListener(t)
	if a := os.Getenv("FORWARD_BENCH_UPSTREAM"); a != "" {
		// A fixed address, for a forwarder in another process.
		_ = ln.Close()
		laddr, err := net.ResolveTCPAddr("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		if ln, err = net.ListenTCP("tcp", laddr); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
	}
	fmt.Printf("upstream %s\n", ln.Addr())
	clients, upstreams := make([]*net.TCPConn, pairs), make([]*net.TCPConn, pairs)
	for i := range pairs {
		if gate == "" {
			clients[i], upstreams[i] = connect(t, ln)
			continue
		}
		c, err := net.Dial("tcp", gate)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c.(*net.TCPConn)
		if upstreams[i], err = ln.AcceptTCP(); err != nil {
			t.Fatal(err)
		}
	}
	// Every pair does n ops: b.N counts rounds of all pairs at once.
	per := n
	errc := make(chan error, 2*pairs)
	lats := make(chan []time.Duration, pairs)
	t0 := time.Now()
	for i := range pairs {
		c, u := clients[i], upstreams[i]
		switch {
		case mode == "pingpong":
			go echo(u, size)
			go func() { lats <- pingPong(c, size, per) }()
		case mode == "up" || mode == "mixed" && i%2 == 0:
			go func() { errc <- send(c, per) }()
			go func() { errc <- recvAll(u, per) }()
		default:
			go func() { errc <- send(u, per) }()
			go func() { errc <- recvAll(c, per) }()
		}
	}
	if mode == "pingpong" {
		var all []time.Duration
		for range pairs {
			all = append(all, <-lats...)
		}
		slices.Sort(all)
		q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) / 1e3 }
		fmt.Printf("result %.2f %.2f\n", q(0.50), q(0.99))
		return
	}
	for range 2 * pairs {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("result %d %.6f\n", int64(per*pairs)*bulkChunk, time.Since(t0).Seconds())
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

// pingPong times n round trips of size bytes on c, then closes it.
func pingPong(c *net.TCPConn, size, n int) []time.Duration {
	defer c.Close()
	msg, got := make([]byte, size), make([]byte, size)
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			break
		}
		if _, err := io.ReadFull(c, got); err != nil {
			break
		}
		lat = append(lat, time.Since(t0))
	}
	return lat
}

// send writes n chunks to c and closes its sending side.
func send(c *net.TCPConn, n int) error {
	buf := make([]byte, bulkChunk)
	for range n {
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
	return c.CloseWrite()
}

// recvAll reads c to EOF and checks that n chunks came.
func recvAll(c *net.TCPConn, n int) error {
	got, err := io.Copy(io.Discard, c)
	if err == nil && got != int64(n)*bulkChunk {
		err = fmt.Errorf("received %d bytes, want %d", got, int64(n)*bulkChunk)
	}
	_ = c.Close()
	return err
}

func BenchmarkPingPong(b *testing.B) {
	for _, size := range []int{64, 1024} {
		for _, im := range benchImpls {
			b.Run(fmt.Sprintf("%dB/%s", size, im.name), func(b *testing.B) {
				runPeer(b, im.new, job{mode: "pingpong", size: size})
			})
		}
	}
}

func BenchmarkBulk(b *testing.B) {
	for _, dir := range []string{"up", "down"} {
		for _, im := range benchImpls {
			b.Run(dir+"/"+im.name, func(b *testing.B) {
				runPeer(b, im.new, job{mode: dir})
			})
		}
	}
}

// BenchmarkUserBuffer: the buffer size against small round trips and
// bulk, to choose DefaultUserBuffer.
func BenchmarkUserBuffer(b *testing.B) {
	sizes := []int{16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10}
	for _, bs := range sizes {
		b.Run(fmt.Sprintf("pingpong-1024B/buf=%dK", bs>>10), func(b *testing.B) {
			runPeer(b, userWith(1, bs), job{mode: "pingpong", size: 1024})
		})
	}
	for _, dir := range []string{"up", "down"} {
		for _, bs := range sizes {
			b.Run(fmt.Sprintf("bulk-%s/buf=%dK", dir, bs>>10), func(b *testing.B) {
				runPeer(b, userWith(1, bs), job{mode: dir})
			})
		}
	}
}

// BenchmarkUserLoops: one loop against one per GOMAXPROCS (at least two),
// with one pair and with several busy at once, to choose NewUser's loop
// count.
func BenchmarkUserLoops(b *testing.B) {
	counts := []int{1, max(runtime.GOMAXPROCS(0), 2)}
	for _, pairs := range []int{1, 8} {
		for _, n := range counts {
			b.Run(fmt.Sprintf("pingpong-64B-%dpairs/loops=%d", pairs, n), func(b *testing.B) {
				runPeer(b, userWith(n, DefaultUserBuffer), job{mode: "pingpong", size: 64, pairs: pairs})
			})
		}
	}
	for _, n := range counts {
		b.Run(fmt.Sprintf("bulk-2pairs-up-and-down/loops=%d", n), func(b *testing.B) {
			runPeer(b, userWith(n, DefaultUserBuffer), job{mode: "mixed", pairs: 2})
		})
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
