package proxy

import (
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/forward"
	"github.com/distgate/distgate/policy"
)

// Forwarding through a gate, judged by what the two ends see: every byte
// each way, in order; a half-close passed on while the other direction
// keeps flowing; a reset from either side ending both; and the counts on
// the closed line exact in each case. None of it depends on how the
// Forwarder moves the bytes.

// bigWait bounds the tests that move many megabytes; under -race on a busy
// machine they take a few seconds at most.
const bigWait = 60 * time.Second

// sendStream writes n pseudo-random bytes from seed to w and returns their
// sha256.
func sendStream(w io.Writer, seed uint64, n int64) ([32]byte, error) {
	h := sha256.New()
	src := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'd', 'g'})
	_, err := io.CopyN(io.MultiWriter(w, h), src, n)
	return [32]byte(h.Sum(nil)), err
}

// recvStream reads r until it fails and returns the count and sha256 of what
// arrived, and the error that ended it (io.EOF for a FIN).
func recvStream(r io.Reader) (int64, [32]byte, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err == nil {
		err = io.EOF
	}
	return n, [32]byte(h.Sum(nil)), err
}

type streamResult struct {
	n   int64
	sum [32]byte
	err error
}

// recvAsync runs recvStream on c in a goroutine.
func recvAsync(c net.Conn) <-chan streamResult {
	ch := make(chan streamResult, 1)
	go func() {
		n, sum, err := recvStream(c)
		ch <- streamResult{n, sum, err}
	}()
	return ch
}

func longDeadline(cs ...*net.TCPConn) {
	for _, c := range cs {
		_ = c.SetDeadline(time.Now().Add(bigWait))
	}
}

// TestForwardBothWaysAtOnce streams many megabytes each way at the same
// time and half-closes both: each end gets exactly what the other sent, and
// the closed line and the Observer count exactly that.
func TestForwardBothWaysAtOnce(t *testing.T) {
	t.Parallel()
	const toNode, toClient = 24 << 20, 17<<20 + 12345
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))
	c, u := admit(t, h, up, "127.0.0.2", "a@h")
	longDeadline(c, u)

	atNode, atClient := recvAsync(u), recvAsync(c)
	sums := make(chan [32]byte, 2)
	errc := make(chan error, 2)
	for _, tc := range []struct {
		w    *net.TCPConn
		seed uint64
		n    int64
	}{{c, 1, toNode}, {u, 2, toClient}} {
		go func() {
			sum, err := sendStream(tc.w, tc.seed, tc.n)
			if err == nil {
				err = tc.w.CloseWrite()
			}
			sums <- sum
			errc <- err
		}()
	}
	// The sums come back in either order; recompute them by seed.
	want := map[uint64][32]byte{}
	for seed, n := range map[uint64]int64{1: toNode, 2: toClient} {
		sum, _ := sendStream(io.Discard, seed, n)
		want[seed] = sum
	}
	for range 2 {
		<-sums
		if err := <-errc; err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	for _, tc := range []struct {
		who  string
		got  <-chan streamResult
		n    int64
		want [32]byte
	}{{"node", atNode, toNode, want[1]}, {"client", atClient, toClient, want[2]}} {
		r := <-tc.got
		if r.err != io.EOF || r.n != tc.n || r.sum != tc.want {
			t.Errorf("%s got %d bytes then %v (sha256 match %v), want %d then EOF", tc.who, r.n, r.err, r.sum == tc.want, tc.n)
		}
	}
	e := h.log.waitFor(t, "closed", from(c))
	hl, ho := hsIn(t, "a@h"), hsOut(t)
	if e.num("bytes_in") != hl+toNode || e.num("bytes_out") != ho+toClient || e.has("reason") {
		t.Errorf("closed line = %v, want bytes_in %d, bytes_out %d, no reason", e, hl+toNode, ho+toClient)
	}
	waitUntil(t, "the connection to end", func() bool { return h.obs.view().active == 0 })
	if v := h.obs.view(); v.in != hl+toNode || v.out != ho+toClient {
		t.Errorf("Observer moved %d/%d, want %d/%d", v.in, v.out, hl+toNode, ho+toClient)
	}
}

// TestForwardHalfCloseWhileReplying: one side half-closes while the other
// is in the middle of a long reply. The FIN reaches the other side, and the
// reply goes on flowing to the end, whole: its second half is written only
// after the replier has seen the FIN.
func TestForwardHalfCloseWhileReplying(t *testing.T) {
	for _, closer := range []string{"client", "node"} {
		t.Run(closer+" closes first", func(t *testing.T) {
			t.Parallel()
			const request, half = 100 << 10, 4 << 20
			up := newUpstream(t, "127.0.0.1:0")
			h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))
			c, u := admit(t, h, up, "127.0.0.2", "a@h")
			longDeadline(c, u)
			closing, replier := c, u
			if closer == "node" {
				closing, replier = u, c
			}

			// The closing side reads the whole reply, and says when its
			// first bytes are in: the reply is flowing.
			flowing := make(chan struct{})
			atCloser := make(chan streamResult, 1)
			go func() {
				first := make([]byte, 64<<10)
				_, err := io.ReadFull(closing, first)
				close(flowing)
				if err != nil {
					atCloser <- streamResult{err: err}
					return
				}
				n, sum, err := recvStream(io.MultiReader(strings.NewReader(string(first)), closing))
				atCloser <- streamResult{n, sum, err}
			}()
			reply := rand.NewChaCha8([32]byte{'r', 'e', 'p', 'l', 'y'})
			firstHalf := make(chan error, 1)
			go func() { _, err := io.CopyN(replier, reply, half); firstHalf <- err }()
			<-flowing

			reqSum, err := sendStream(closing, 8, request)
			if err != nil {
				t.Fatal(err)
			}
			if err := closing.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			n, sum, err := recvStream(replier)
			if err != io.EOF || n != request || sum != reqSum {
				t.Fatalf("replier got %d bytes then %v, want the %d-byte request then EOF", n, err, request)
			}
			// After the FIN: the rest of the reply.
			if err := <-firstHalf; err != nil {
				t.Fatalf("first half of the reply: %v", err)
			}
			if _, err := io.CopyN(replier, reply, half); err != nil {
				t.Fatalf("second half of the reply, after the FIN: %v", err)
			}
			if err := replier.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			whole := sha256.New()
			_, _ = io.CopyN(whole, rand.NewChaCha8([32]byte{'r', 'e', 'p', 'l', 'y'}), 2*half)
			r := <-atCloser
			if r.err != io.EOF || r.n != 2*half || r.sum != [32]byte(whole.Sum(nil)) {
				t.Fatalf("closing side got %d bytes of the reply then %v (intact: %v), want %d then EOF",
					r.n, r.err, r.sum == [32]byte(whole.Sum(nil)), 2*half)
			}
			e := h.log.waitFor(t, "closed", from(c))
			hl, ho := hsIn(t, "a@h"), hsOut(t)
			in, out := hl+request, ho+int64(2*half)
			if closer == "node" {
				in, out = hl+2*half, ho+request
			}
			if e.num("bytes_in") != in || e.num("bytes_out") != out {
				t.Errorf("closed line = %v, want bytes_in %d, bytes_out %d", e, in, out)
			}
		})
	}
}

// TestForwardReset: a RST from either side ends the other side too, and
// the closed line counts exactly what was delivered before it.
func TestForwardReset(t *testing.T) {
	for _, side := range []string{"client", "node"} {
		t.Run(side+" resets", func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, "127.0.0.1:0")
			h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))
			c, u := admit(t, h, up, "127.0.0.2", "a@h")
			toNode, toClient := randBytes(70000), randBytes(90000)
			write(t, c, toNode)
			expect(t, u, toNode)
			write(t, u, toClient)
			expect(t, c, toClient)

			resetter, other := c, u
			if side == "node" {
				resetter, other = u, c
			}
			if err := resetter.SetLinger(0); err != nil {
				t.Fatal(err)
			}
			remote := c.LocalAddr().String()
			_ = resetter.Close()
			got, err := readToEnd(t, other)
			if len(got) != 0 || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
				t.Errorf("other side after the RST: %d bytes then %v, want none then EOF or ECONNRESET", len(got), err)
			}
			e := h.log.waitFor(t, "closed", func(e entry) bool { return e.str("remote") == remote })
			in, out := hsIn(t, "a@h")+int64(len(toNode)), hsOut(t)+int64(len(toClient))
			if e.num("bytes_in") != in || e.num("bytes_out") != out || e.has("reason") {
				t.Errorf("closed line = %v, want bytes_in %d, bytes_out %d, no reason", e, in, out)
			}
			waitUntil(t, "the gate to let go", func() bool { return h.g.Live() == 0 && h.g.conns.Total() == 0 })
		})
	}
}

// TestForwardNodeWritesThenCloses: the node answers and closes at once (not
// a half-close); the client still gets every byte, then EOF.
func TestForwardNodeWritesThenCloses(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))
	c, u := admit(t, h, up, "127.0.0.2", "a@h")
	reply := randBytes(3 << 20)
	go func() {
		_, _ = u.Write(reply)
		_ = u.Close()
	}()
	n, sum, err := recvStream(c)
	if err != io.EOF || n != int64(len(reply)) || sum != sha256.Sum256(reply) {
		t.Fatalf("client got %d bytes then %v, want %d then EOF, intact", n, err, len(reply))
	}
	_ = c.Close() // the node's close was a FIN: the pair lasts until the client's side ends too
	if e := h.log.waitFor(t, "closed", from(c)); e.num("bytes_out") != hsOut(t)+int64(len(reply)) {
		t.Errorf("closed bytes_out = %d, want %d", e.num("bytes_out"), hsOut(t)+int64(len(reply)))
	}
}

// spyForwarder is a forward.Goroutines that records what the gate asks of
// it, and refuses every pair when refuse is set.
type spyForwarder struct {
	forward.Goroutines
	refuse error

	mu            sync.Mutex
	starts, stops int
}

func (f *spyForwarder) Start(p forward.Pair, done func(forward.Result)) (forward.Handle, error) {
	f.mu.Lock()
	f.starts++
	f.mu.Unlock()
	if f.refuse != nil {
		_ = p.Client.Close()
		_ = p.Upstream.Close()
		return nil, f.refuse
	}
	h, err := f.Goroutines.Start(p, done)
	if err != nil {
		return nil, err
	}
	return &spyHandle{Handle: h, f: f}, nil
}

func (f *spyForwarder) counts() (starts, stops int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.starts, f.stops
}

type spyHandle struct {
	forward.Handle
	f *spyForwarder
}

func (h *spyHandle) Stop() {
	h.f.mu.Lock()
	h.f.stops++
	h.f.mu.Unlock()
	h.Handle.Stop()
}

// newSpy returns a spyForwarder that is closed after the test's gates.
func newSpy(t *testing.T) *spyForwarder {
	f := &spyForwarder{}
	t.Cleanup(func() { _ = f.Close() }) // registered first, so it runs last
	return f
}

// TestForwarderFromConfig: a Forwarder given in Config gets every admitted
// pair, and a revocation goes through its Handle's Stop rather than
// closing the sockets under it.
func TestForwarderFromConfig(t *testing.T) {
	t.Parallel()
	f := newSpy(t)
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2", "127.0.0.3"}))),
		withForwarder(f))
	c2, u2 := admit(t, h, up, "127.0.0.2", "a@h")
	c3, u3 := admit(t, h, up, "127.0.0.3", "b@h")
	write(t, c2, []byte("ping"))
	expect(t, u2, []byte("ping"))
	if starts, stops := f.counts(); starts != 2 || stops != 0 {
		t.Fatalf("forwarder saw %d starts, %d stops; want 2, 0", starts, stops)
	}
	if n := h.g.Update(settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.3"})))); n != 1 {
		t.Fatalf("Update revoked %d, want 1", n)
	}
	expectClosed(t, c2)
	if e := h.log.waitFor(t, "closed", from(c2)); e.str("reason") != "revoked" || e.num("bytes_in") != hsIn(t, "a@h")+4 {
		t.Errorf("closed line = %v, want reason revoked and the bytes moved", e)
	}
	if _, stops := f.counts(); stops != 1 {
		t.Errorf("Handle.Stop called %d times, want 1", stops)
	}
	write(t, u3, []byte("pong"))
	expect(t, c3, []byte("pong"))
}

// TestForwarderRefuses: a pair the Forwarder will not take ends at once:
// both sides closed, a closed line saying why, every slot given back.
func TestForwarderRefuses(t *testing.T) {
	t.Parallel()
	f := newSpy(t)
	f.refuse = errors.New("no room for another pair")
	hs := policy.NewHandshakes(4)
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))),
		withForwarder(f), withHandshakes(hs))
	c, u := admit(t, h, up, "127.0.0.2", "a@h")
	expectClosed(t, c)
	if got, err := readToEnd(t, u); len(got) != 0 || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("node side: %d bytes then %v, want it closed", len(got), err)
	}
	e := h.log.waitFor(t, "closed", from(c))
	if !strings.Contains(e.str("error"), "no room") || e.num("bytes_in") != hsIn(t, "a@h") || e.num("bytes_out") != hsOut(t) {
		t.Errorf("closed line = %v, want the forwarder's error and only the handshake counted", e)
	}
	waitUntil(t, "the gate to let go", func() bool {
		return h.g.Live() == 0 && h.g.conns.Total() == 0 && hs.InProgress() == 0
	})
	if v := h.obs.view(); v.active != 0 || v.decided[policy.Admitted] != 1 {
		t.Errorf("observer: %+v, want one admission and nothing active", v)
	}
}
