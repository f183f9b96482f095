package kernel

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/distgate/distgate/forward"
)

// Self-test sizes: big enough to cross many skbs and fill the queues,
// small enough to finish well inside the timeout on two shared cores.
const (
	selfTestBulk  = 64 << 20
	selfTestBack  = 8 << 20
	selfTestEarly = 32 << 10 // queued on a socket before Start
	selfTestRace  = 16 << 10 // written while Start inserts
)

// SelfTest forwards two pairs of its own through k over loopback and
// checks what the kernel's SOCKMAP code paths (which changed repeatedly
// between 5.19 and 6.x) must get right before distgate trusts them
// (forwarding-facts.md, trap 9):
//
//   - early data: the pair's early bytes, bytes already queued on both
//     sockets before Start, and bytes written while Start inserts arrive
//     once each and in order (traps 2 and 3);
//   - half-close both ways: the client closes first on one pair, the node
//     on the other, and the reply still flows back after the EOF (trap 6);
//   - integrity: 64 MiB one way while 8 MiB flow back, sha256-equal, and
//     Result counts exact;
//   - both pairs stay in the kernel (none falls back or is taken back).
//
// It fails with an error wrapping ErrSelfTest, at the latest after
// timeout.
func (k *Kernel) SelfTest(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return fmt.Errorf("%w: listen: %w", ErrSelfTest, err)
	}
	defer ln.Close()

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, clientFirst := range []bool{true, false} {
		st, err := newSelfTestPair(ln, deadline)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSelfTest, err)
		}
		wg.Go(func() {
			defer st.close()
			if err := st.run(k, clientFirst, deadline); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if len(all) > 0 {
		return fmt.Errorf("%w: %w", ErrSelfTest, errors.Join(all...))
	}
	return nil
}

// selfTestPair is a client talking through the forwarder to a node:
// client ↔ c (proxy side), u (proxy side) ↔ node.
type selfTestPair struct {
	client, c, u, node *net.TCPConn
}

func newSelfTestPair(ln *net.TCPListener, deadline time.Time) (*selfTestPair, error) {
	link := func() (*net.TCPConn, *net.TCPConn, error) {
		out, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
		if err != nil {
			return nil, nil, err
		}
		_ = ln.SetDeadline(deadline)
		in, err := ln.AcceptTCP()
		if err != nil {
			_ = out.Close()
			return nil, nil, err
		}
		return out, in, nil
	}
	st := &selfTestPair{}
	var err error
	if st.client, st.c, err = link(); err != nil {
		return nil, fmt.Errorf("loopback pair: %w", err)
	}
	if st.u, st.node, err = link(); err != nil {
		st.close()
		return nil, fmt.Errorf("loopback pair: %w", err)
	}
	_ = st.client.SetDeadline(deadline)
	_ = st.node.SetDeadline(deadline)
	return st, nil
}

func (st *selfTestPair) close() {
	for _, c := range []*net.TCPConn{st.client, st.c, st.u, st.node} {
		if c != nil {
			_ = c.Close()
		}
	}
}

// run forwards the pair. clientFirst: the client half-closes first and
// the node replies after its EOF; otherwise the other way round. The bulk
// runs on the client-first pair.
func (st *selfTestPair) run(k *Kernel, clientFirst bool, deadline time.Time) error {
	name := "client closes first"
	bulk, back := int64(4096), int64(4096)
	if clientFirst {
		bulk, back = selfTestBulk, selfTestBack
	} else {
		name = "node closes first"
	}
	seed := uint64(deadline.UnixNano())
	if !clientFirst {
		seed++
	}
	up := newStream(seed, "HS-UP", selfTestEarly, selfTestRace, bulk)
	down := newStream(seed+100, "HS-DN", selfTestEarly, selfTestRace, back)

	// Queued before Start (trap 2).
	if _, err := st.client.Write(up.early()); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if _, err := st.node.Write(down.early()); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	// Written while Start inserts (trap 3), a bounded amount so the
	// early drain stays under its cap.
	var race sync.WaitGroup
	raceWrite := func(c *net.TCPConn, b []byte) {
		race.Go(func() {
			for len(b) > 0 {
				n := min(1024, len(b))
				if _, err := c.Write(b[:n]); err != nil {
					return
				}
				b = b[n:]
			}
		})
	}
	raceWrite(st.client, up.race())
	raceWrite(st.node, down.race())

	res := make(chan forward.Result, 1)
	h, err := k.Start(forward.Pair{Client: st.c, Upstream: st.u, ToUpstream: up.hs(), ToClient: down.hs()},
		func(r forward.Result) { res <- r })
	st.c, st.u = nil, nil // the forwarder's now
	if err != nil {
		race.Wait()
		return fmt.Errorf("%s: start: %w", name, err)
	}
	race.Wait()

	// Rest of each stream, then half-closes in the chosen order, with
	// the reply after the EOF.
	first, second := st.client, st.node
	firstS, secondS := up, down
	if !clientFirst {
		first, second, firstS, secondS = st.node, st.client, down, up
	}
	errc := make(chan error, 4)
	var sendSecond sync.WaitGroup
	sendSecond.Add(1)
	go func() { errc <- firstS.sendRest(first, nil) }()
	go func() { errc <- secondS.sendRest(second, &sendSecond) }()
	go func() { errc <- firstS.receive(second, func() { sendSecond.Done() }) }()
	go func() { errc <- secondS.receive(first, nil) }()
	for range 4 {
		if err := <-errc; err != nil {
			h.Stop()
			<-res
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	var r forward.Result
	select {
	case r = <-res:
	case <-time.After(time.Until(deadline)):
		h.Stop()
		<-res
		return fmt.Errorf("%s: pair did not end after both half-closes", name)
	}
	if r.Err != nil {
		return fmt.Errorf("%s: result: %w", name, r.Err)
	}
	if r.In != up.total() || r.Out != down.total() {
		return fmt.Errorf("%s: result counts in=%d out=%d, want %d %d", name, r.In, r.Out, up.total(), down.total())
	}
	// The bulk pair may have gone to user space because its reader fell
	// MaxQueued behind on a loaded machine: that is the backpressure
	// working, not a failure. Anything else means the kernel did not
	// behave as this package expects.
	if kh := h.(*Handle); kh.Path() != "kernel" && !(clientFirst && kh.moved() == whyBackpressure) {
		return fmt.Errorf("%s: pair left the kernel path (%s: %s)", name, kh.Path(), kh.moved())
	}
	return nil
}

// stream is one direction's bytes: a handshake-like prefix in the Pair,
// bytes queued before Start, bytes raced with Start, then the bulk.
type stream struct {
	prefix     string
	early0     []byte
	race0      []byte
	seed, bulk int64
}

func newStream(seed uint64, prefix string, early, race int, bulk int64) *stream {
	r := rand.New(rand.NewChaCha8(chachaSeed(seed)))
	s := &stream{prefix: prefix, early0: make([]byte, early), race0: make([]byte, race), seed: int64(seed), bulk: bulk}
	fill(r, s.early0)
	fill(r, s.race0)
	return s
}

func chachaSeed(seed uint64) [32]byte {
	var b [32]byte
	for i := range 8 {
		b[i] = byte(seed >> (8 * i))
	}
	return b
}

func fill(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

func (s *stream) hs() []byte    { return []byte(s.prefix) }
func (s *stream) early() []byte { return s.early0 }
func (s *stream) race() []byte  { return s.race0 }
func (s *stream) total() int64 {
	return int64(len(s.prefix)+len(s.early0)+len(s.race0)) + s.bulk
}

// bulkReader is the bulk part, reproducible from the seed.
func (s *stream) bulkReader() io.Reader {
	return io.LimitReader(&chachaReader{r: rand.NewChaCha8(chachaSeed(uint64(s.seed) ^ 0x5eed))}, s.bulk)
}

type chachaReader struct{ r *rand.ChaCha8 }

func (c *chachaReader) Read(p []byte) (int, error) { return c.r.Read(p) }

// sendRest writes the bulk and half-closes. If wait is set, it first
// waits for it (the reply that must flow after the other side's EOF).
func (s *stream) sendRest(c *net.TCPConn, wait *sync.WaitGroup) error {
	if wait != nil {
		wait.Wait()
	}
	buf := make([]byte, 256<<10)
	r := s.bulkReader()
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return fmt.Errorf("send: %w", werr)
			}
		}
		if err != nil {
			break // the bulk reader only ends
		}
	}
	if err := c.CloseWrite(); err != nil {
		return fmt.Errorf("half-close: %w", err)
	}
	return nil
}

// receive reads everything up to EOF from c and compares it with the
// stream; atEOF runs once reading ended, also on error, so the other
// side's reply is never left waiting.
func (s *stream) receive(c *net.TCPConn, atEOF func()) error {
	if atEOF != nil {
		defer atEOF()
	}
	want := sha256.New()
	want.Write(s.hs())
	want.Write(s.early0)
	want.Write(s.race0)
	if _, err := io.Copy(want, s.bulkReader()); err != nil {
		return err
	}
	got := sha256.New()
	n, err := io.Copy(got, c)
	if err != nil {
		return fmt.Errorf("receive after %d bytes: %w", n, err)
	}
	if n != s.total() {
		return fmt.Errorf("received %d bytes, want %d", n, s.total())
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		return errors.New("received bytes differ (sha256)")
	}
	return nil
}
