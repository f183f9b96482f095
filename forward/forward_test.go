package forward

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The behaviour every Forwarder must show, run against each one over real
// loopback sockets: the reference (Goroutines) and the event loop (User)
// are held to the same assertions, so they are equivalent where it is
// checked. The tests run one after the other so the goroutine checks see
// only their own.

const waitTimeout = 20 * time.Second

type impl struct {
	name string
	new  func() (Forwarder, error)
}

var impls = []impl{
	{"goroutines", func() (Forwarder, error) { return &Goroutines{}, nil }},
	{"user", func() (Forwarder, error) { return NewUser() }},
}

// each runs fn once per Forwarder, each with its own, closed afterwards;
// no goroutine the run started may outlive it.
func each(t *testing.T, fn func(t *testing.T, f Forwarder)) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			f, err := im.new()
			if err != nil {
				t.Skipf("%s: %v", im.name, err)
			}
			t.Cleanup(func() {
				if err := f.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				goleak.VerifyNone(t, before)
			})
			fn(t, f)
		})
	}
}

// chain is one connection as the gate sees it: the test's client end and
// upstream end, and the Pair of sockets in between that the Forwarder
// gets.
type chain struct {
	client, upstream *net.TCPConn
	pair             Pair
}

func newListener(t testing.TB) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// connect returns both ends of one new connection to ln.
func connect(t testing.TB, ln *net.TCPListener) (dialed, accepted *net.TCPConn) {
	t.Helper()
	d, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.AcceptTCP()
	if err != nil {
		_ = d.Close()
		t.Fatal(err)
	}
	return d, a
}

// newChain builds a chain through ln; the test's ends are closed at
// cleanup, the pair belongs to whoever Starts it.
func newChain(t testing.TB, ln *net.TCPListener) chain {
	t.Helper()
	c, gc := connect(t, ln)
	gu, u := connect(t, ln)
	t.Cleanup(func() {
		_ = c.Close()
		_ = u.Close()
	})
	return chain{client: c, upstream: u, pair: Pair{Client: gc, Upstream: gu}}
}

// run is a started pair.
type run struct {
	h     Handle
	res   chan Result
	calls atomic.Int32
}

func start(t testing.TB, f Forwarder, p Pair) *run {
	t.Helper()
	r := &run{res: make(chan Result, 1)}
	h, err := f.Start(p, func(res Result) {
		if r.calls.Add(1) == 1 {
			r.res <- res
		}
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	r.h = h
	return r
}

// wait returns the pair's Result once done has been called.
func (r *run) wait(t testing.TB) Result {
	t.Helper()
	select {
	case res := <-r.res:
		return res
	case <-time.After(waitTimeout):
		t.Fatal("done was not called")
		return Result{}
	}
}

func write(t testing.TB, c *net.TCPConn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// expect reads exactly want from c.
func expect(t testing.TB, c *net.TCPConn, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read %d bytes: %v", len(want), err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", trim(got), trim(want))
	}
}

// eof reads c to its end and fails unless that is a clean EOF with
// nothing before it.
func eof(t testing.TB, c *net.TCPConn, who string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
		t.Fatalf("%s: read %d more bytes and %v, want EOF", who, n, err)
	}
}

// ended reads c to its end, which must be a FIN or a RST (bytes still in
// flight may come first), and returns the error.
func ended(t testing.TB, c *net.TCPConn, who string) error {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	_, err := io.Copy(io.Discard, c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("%s: read ended with %v, want EOF or ECONNRESET", who, err)
	}
	return err
}

func trim(b []byte) string {
	if len(b) > 40 {
		return fmt.Sprintf("%s... (%d bytes)", b[:40], len(b))
	}
	return string(b)
}

// stream writes n pseudo-random bytes from seed to c in 1 MiB writes and
// returns their sha256 and how many it wrote.
func stream(c *net.TCPConn, seed uint64, n int64) (sum [32]byte, wrote int64, err error) {
	src := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for wrote < n {
		b := buf[:min(int64(len(buf)), n-wrote)]
		_, _ = src.Read(b)
		w, werr := c.Write(b)
		h.Write(b[:w])
		wrote += int64(w)
		if werr != nil {
			return [32]byte(h.Sum(nil)), wrote, werr
		}
	}
	return [32]byte(h.Sum(nil)), wrote, nil
}

// drain reads c to EOF and returns the sha256 of what it read.
func drain(c *net.TCPConn) (sum [32]byte, n int64, err error) {
	h := sha256.New()
	n, err = io.Copy(h, c)
	return [32]byte(h.Sum(nil)), n, err
}

type streamed struct {
	sum [32]byte
	n   int64
	err error
}

// TestBytesExact: 64 MiB of random bytes each way at once arrive whole
// and in order, and the Result counts them exactly.
func TestBytesExact(t *testing.T) {
	const size = 64 << 20
	each(t, func(t *testing.T, f Forwarder) {
		ch := newChain(t, newListener(t))
		r := start(t, f, ch.pair)
		// sent[0] and got[0] are client to upstream, [1] the other way.
		var sent, got [2]chan streamed
		for i, c := range []*net.TCPConn{ch.client, ch.upstream} {
			sent[i], got[i] = make(chan streamed, 1), make(chan streamed, 1)
			go func() {
				s, n, err := stream(c, uint64(i+1), size)
				if err == nil {
					err = c.CloseWrite()
				}
				sent[i] <- streamed{s, n, err}
			}()
		}
		for i, c := range []*net.TCPConn{ch.upstream, ch.client} {
			go func() { s, n, err := drain(c); got[i] <- streamed{s, n, err} }()
		}
		for i, dir := range []string{"client to upstream", "upstream to client"} {
			s, g := <-sent[i], <-got[i]
			if s.err != nil || g.err != nil || g.n != size || g.sum != s.sum {
				t.Errorf("%s: sent %d bytes (%v), %d arrived (%v), same bytes: %v; want %d", dir, s.n, s.err, g.n, g.err, g.sum == s.sum, size)
			}
		}
		res := r.wait(t)
		if res.In != size || res.Out != size || res.Err != nil {
			t.Fatalf("Result = %+v, want In = Out = %d and no error", res, size)
		}
	})
}

// TestEarlyData: the Pair's early bytes go first, before the bytes that
// were already waiting in the sockets when Start was called.
func TestEarlyData(t *testing.T) {
	each(t, func(t *testing.T, f Forwarder) {
		ch := newChain(t, newListener(t))
		write(t, ch.client, []byte("later-up"))
		write(t, ch.upstream, []byte("later-down"))
		ch.pair.ToUpstream = []byte("early-up:")
		ch.pair.ToClient = []byte("early-down:")
		r := start(t, f, ch.pair)
		expect(t, ch.upstream, []byte("early-up:later-up"))
		expect(t, ch.client, []byte("early-down:later-down"))
		write(t, ch.client, []byte("+more"))
		expect(t, ch.upstream, []byte("+more"))

		for _, c := range []*net.TCPConn{ch.client, ch.upstream} {
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
		}
		eof(t, ch.upstream, "upstream")
		eof(t, ch.client, "client")
		res := r.wait(t)
		if want := (Result{In: int64(len("early-up:later-up+more")), Out: int64(len("early-down:later-down"))}); res != want {
			t.Fatalf("Result = %+v, want %+v", res, want)
		}
	})
}

// TestHalfClose: EOF from one side reaches the other only after every
// byte before it, and the other direction carries on until it ends too.
func TestHalfClose(t *testing.T) {
	chunk := bytes.Repeat([]byte("distgate"), 32<<10) // 256 KiB, more than a socket buffer
	for _, first := range []string{"client", "upstream"} {
		t.Run(first+" first", func(t *testing.T) {
			each(t, func(t *testing.T, f Forwarder) {
				ch := newChain(t, newListener(t))
				r := start(t, f, ch.pair)
				closer, peer := ch.client, ch.upstream
				if first == "upstream" {
					closer, peer = peer, closer
				}
				// The closer sends and closes its sending side; the peer
				// reads all of it, then EOF.
				go func() { _, _ = closer.Write(chunk); _ = closer.CloseWrite() }()
				expect(t, peer, chunk)
				eof(t, peer, "peer after the half-close")
				// The other direction still works, both ways around the
				// half-close.
				write(t, peer, chunk)
				expect(t, closer, chunk)
				if err := peer.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				eof(t, closer, "closer")
				res := r.wait(t)
				if res.In != int64(len(chunk)) || res.Out != int64(len(chunk)) || res.Err != nil {
					t.Fatalf("Result = %+v, want %d each way and no error", res, len(chunk))
				}
			})
		})
	}
}

// inFlight fills both directions with more than the socket buffers hold,
// so both directions are busy when what the test does next happens. The
// writers end when their conns do.
func inFlight(t *testing.T, ch chain) {
	t.Helper()
	errc := make(chan error, 2)
	for i, w := range []*net.TCPConn{ch.client, ch.upstream} {
		go func() { _, _, err := stream(w, uint64(i+10), 16<<20); errc <- err }()
	}
	// Read a little of each so both directions have certainly started.
	for _, c := range []*net.TCPConn{ch.client, ch.upstream} {
		_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := io.ReadFull(c, make([]byte, 64<<10)); err != nil {
			t.Fatalf("read while both directions are busy: %v", err)
		}
	}
	t.Cleanup(func() {
		_ = ch.client.Close()
		_ = ch.upstream.Close()
		for range 2 {
			<-errc
		}
	})
}

// reset closes c with a RST (SO_LINGER 0).
func reset(t testing.TB, c *net.TCPConn) {
	t.Helper()
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReset: a RST from either side, with both directions busy or only
// the resetting side's, ends the pair: the peer's reads end (with a FIN or
// a RST), done is called once with the error.
func TestReset(t *testing.T) {
	for _, side := range []string{"client", "upstream"} {
		for _, busy := range []bool{true, false} {
			name := side + " resets, both directions busy"
			if !busy {
				name = side + " resets, other direction idle"
			}
			t.Run(name, func(t *testing.T) {
				each(t, func(t *testing.T, f Forwarder) {
					ch := newChain(t, newListener(t))
					r := start(t, f, ch.pair)
					resetter, peer := ch.client, ch.upstream
					if side == "upstream" {
						resetter, peer = peer, resetter
					}
					if busy {
						inFlight(t, ch)
					} else {
						write(t, resetter, bytes.Repeat([]byte{'x'}, 100<<10))
						expect(t, peer, bytes.Repeat([]byte{'x'}, 100<<10))
					}
					reset(t, resetter)
					err := ended(t, peer, "peer")
					// With both directions busy the peer's own writer may
					// take the ECONNRESET (a socket reports it once).
					if _, ok := f.(*User); ok && !busy && !errors.Is(err, syscall.ECONNRESET) {
						t.Errorf("peer's read ended with %v; the event loop passes the RST on", err)
					}
					res := r.wait(t)
					if res.Err == nil {
						t.Errorf("Result = %+v, want the reset as its error", res)
					}
					if !busy && res.In != 100<<10 && side == "client" {
						t.Errorf("Result.In = %d, want %d", res.In, 100<<10)
					}
				})
			})
		}
	}
}

// TestStop: Stop in the middle of a transfer both ways closes both sides,
// calls done once with no error, and the Result counts lie between what
// arrived and what was sent. Stop from several goroutines is harmless.
func TestStop(t *testing.T) {
	each(t, func(t *testing.T, f Forwarder) {
		ch := newChain(t, newListener(t))
		r := start(t, f, ch.pair)
		sent := make([]chan streamed, 2)
		got := make([]chan streamed, 2)
		for i, c := range []*net.TCPConn{ch.client, ch.upstream} {
			sent[i], got[i] = make(chan streamed, 1), make(chan streamed, 1)
			go func() { s, n, err := stream(c, uint64(i+20), 1<<30); sent[i] <- streamed{s, n, err} }()
		}
		// Wait until both directions have moved a few MiB.
		for _, c := range []*net.TCPConn{ch.upstream, ch.client} {
			_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
			if _, err := io.ReadFull(c, make([]byte, 4<<20)); err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range []*net.TCPConn{ch.upstream, ch.client} {
			go func() { _, n, err := drain(c); got[i] <- streamed{n: n + 4<<20, err: err} }()
		}
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(r.h.Stop)
		}
		wg.Wait()
		res := r.wait(t)
		if res.Err != nil {
			t.Errorf("Result.Err = %v, want nil after Stop", res.Err)
		}
		// Both sides see their connection end, so both writers stop.
		up, down := <-got[0], <-got[1]
		cs, us := <-sent[0], <-sent[1]
		if cs.err == nil || us.err == nil {
			t.Errorf("writers ended with %v and %v, want both cut off", cs.err, us.err)
		}
		// Nothing written before Stop is lost: each end receives exactly
		// what Result counts as written to it.
		if res.In != up.n || res.Out != down.n || res.In > cs.n || res.Out > us.n {
			t.Errorf("Result = %+v; the upstream read %d of %d sent, the client %d of %d", res, up.n, cs.n, down.n, us.n)
		}
		r.h.Stop()
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if n := r.calls.Load(); n != 1 {
			t.Errorf("done called %d times, want once", n)
		}
	})
}

// TestCloseStopsPairs: Close stops every pair still running, each one's
// done is called once, and both ends of each see the connection end.
func TestCloseStopsPairs(t *testing.T) {
	each(t, func(t *testing.T, f Forwarder) {
		ln := newListener(t)
		var chains []chain
		var runs []*run
		for range 10 {
			ch := newChain(t, ln)
			chains = append(chains, ch)
			runs = append(runs, start(t, f, ch.pair))
			write(t, ch.client, []byte("ping"))
			expect(t, ch.upstream, []byte("ping"))
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		for i, r := range runs {
			if n := r.calls.Load(); n != 1 {
				t.Errorf("pair %d: done called %d times, want once", i, n)
			}
			if res := r.wait(t); res.In != 4 || res.Err != nil {
				t.Errorf("pair %d: Result = %+v, want In 4 and no error", i, res)
			}
			ended(t, chains[i].client, "client")
			ended(t, chains[i].upstream, "upstream")
		}
	})
}

// TestProgress: Progress moves while a long transfer runs, and ends equal
// to the Result.
func TestProgress(t *testing.T) {
	const size, part = 64 << 20, 8 << 20
	each(t, func(t *testing.T, f Forwarder) {
		ch := newChain(t, newListener(t))
		r := start(t, f, ch.pair)
		sent := make(chan streamed, 1)
		go func() {
			s, n, err := stream(ch.client, 30, size)
			if err == nil {
				err = ch.client.CloseWrite()
			}
			sent <- streamed{s, n, err}
		}()
		_ = ch.upstream.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := io.ReadFull(ch.upstream, make([]byte, part)); err != nil {
			t.Fatal(err)
		}
		// The upstream has read part bytes, so at least that much was
		// written; it has read no more, so socket buffers bound the rest.
		if in, out := r.h.Progress(); in < part || in >= size || out != 0 {
			t.Fatalf("Progress = %d, %d in the middle of the transfer, want at least %d in and nothing out", in, out, part)
		}
		if n, err := io.Copy(io.Discard, ch.upstream); n != size-part || err != nil {
			t.Fatalf("upstream read %d more (%v), want %d", n, err, size-part)
		}
		if s := <-sent; s.err != nil {
			t.Fatal(s.err)
		}
		_ = ch.upstream.CloseWrite()
		eof(t, ch.client, "client")
		res := r.wait(t)
		if in, out := r.h.Progress(); res.In != size || in != res.In || out != res.Out {
			t.Fatalf("Result = %+v, Progress = %d, %d; want In = %d and Progress equal to it", res, in, out, size)
		}
	})
}

// TestWriteThenClose: a client that writes and closes at once, before or
// right after Start, still has all its bytes delivered.
func TestWriteThenClose(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	for _, when := range []string{"before", "after"} {
		t.Run("closed "+when+" Start", func(t *testing.T) {
			each(t, func(t *testing.T, f Forwarder) {
				ch := newChain(t, newListener(t))
				var r *run
				if when == "after" {
					r = start(t, f, ch.pair)
				}
				go func() { _, _ = ch.client.Write(data); _ = ch.client.Close() }()
				if when == "before" {
					r = start(t, f, ch.pair)
				}
				expect(t, ch.upstream, data)
				eof(t, ch.upstream, "upstream")
				_ = ch.upstream.Close()
				if res := r.wait(t); res.In != int64(len(data)) {
					t.Fatalf("Result = %+v, want In = %d", res, len(data))
				}
			})
		})
	}
}

// TestStartAfterClose: a closed forwarder refuses new pairs and closes
// their sockets.
func TestStartAfterClose(t *testing.T) {
	u, err := NewUser()
	if err != nil {
		t.Skip(err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	ch := newChain(t, newListener(t))
	if _, err := u.Start(ch.pair, func(Result) { t.Error("done called after a failed Start") }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v, want ErrClosed", err)
	}
	eof(t, ch.client, "client")
	eof(t, ch.upstream, "upstream")
}

// TestStopRace: pairs that end by themselves while Stop is called from
// other goroutines, all started at once: done is called once for each.
func TestStopRace(t *testing.T) {
	const pairs = 50
	each(t, func(t *testing.T, f Forwarder) {
		ln := newListener(t)
		chains := make([]chain, pairs)
		for i := range chains {
			chains[i] = newChain(t, ln)
		}
		runs := make([]*run, pairs)
		var wg sync.WaitGroup
		for i := range chains {
			wg.Go(func() { runs[i] = start(t, f, chains[i].pair) })
		}
		wg.Wait()
		for i, ch := range chains {
			wg.Go(func() {
				_ = ch.client.CloseWrite()
				_ = ch.upstream.CloseWrite()
			})
			if i%2 == 0 {
				wg.Go(runs[i].h.Stop)
			}
		}
		wg.Wait()
		for _, r := range runs {
			r.wait(t)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		for i, r := range runs {
			if n := r.calls.Load(); n != 1 {
				t.Errorf("pair %d: done called %d times, want once", i, n)
			}
		}
	})
}

// TestStartFails: a Pair whose connection is already closed is refused,
// the other connection is closed, and done is never called.
func TestStartFails(t *testing.T) {
	u, err := NewUser()
	if err != nil {
		t.Skip(err)
	}
	defer u.Close()
	ch := newChain(t, newListener(t))
	_ = ch.pair.Client.Close()
	if _, err := u.Start(ch.pair, func(Result) { t.Error("done called after a failed Start") }); err == nil {
		t.Fatal("Start with a closed client connection succeeded")
	}
	eof(t, ch.upstream, "upstream")
}
