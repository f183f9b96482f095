package kernel

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// TestSoakMixed is not a unit test: it runs only with
// DISTGATE_KERNEL_SOAK_MIXED set to a duration, e.g.
//
//	DISTGATE_KERNEL_SOAK_MIXED=30m go test -run SoakMixed -timeout 40m -v ./forward/kernel/
//
// It is the traffic distribution carries, with the default options: in
// each round eight pairs exchange 2 000 length-prefixed requests and
// replies of 16 B to 4 KiB each (an erpc:call is a few such frames), and
// a ninth sends one 64 MiB message and gets a short reply (a large term
// in one call). Every byte is checked. A pair that fails does not stop
// it, so the rates show; at the end it fails on any pair that did not end
// exactly and on any intervention (watchdog, stall, overrun, duplicate),
// and logs the Stats.
func TestSoakMixed(t *testing.T) {
	dur := soakDuration(t, "DISTGATE_KERNEL_SOAK_MIXED")
	var ev events
	k, _ := newKernel(t, Options{Events: ev.add})
	end := time.Now().Add(dur)
	rounds, calls, bigs := 0, 0, 0
	var mu sync.Mutex
	var failed []string // pairs that did not end exactly; the soak goes on
	// t.Failed() only by a setup failure (newWorld, Start): that ends it.
	for time.Now().Before(end) && !t.Failed() {
		var wg sync.WaitGroup
		for i := range 9 {
			wg.Go(func() {
				w := newWorld(t)
				defer func() {
					// Now, not at the test's end: a soak makes thousands.
					_ = w.client.Close()
					_ = w.node.Close()
				}()
				_ = w.client.SetDeadline(time.Now().Add(5 * time.Minute))
				_ = w.node.SetDeadline(time.Now().Add(5 * time.Minute))
				w.start(t, k, nil, nil)
				seed := uint64(rounds*9 + i)
				var err error
				if i == 8 {
					err = bigCall(w, seed)
				} else {
					err = rpcCalls(w, seed, 2000)
				}
				_ = w.client.CloseWrite()
				_ = w.node.CloseWrite()
				r := w.result(t)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil || r.Err != nil:
					failed = append(failed, fmt.Sprintf("round %d pair %d: %v; result %+v", rounds, i, err, r))
				case i == 8:
					bigs++
				default:
					calls += 2000
				}
			})
		}
		wg.Wait()
		rounds++
	}
	s := k.Stats()
	t.Logf("%d rounds: %d request/reply exchanges and %d 64 MiB messages exact; %d pairs failed; stats %+v; events %v",
		rounds, calls, bigs, len(failed), s, ev.kinds())
	for i, f := range failed {
		if i == 10 {
			t.Errorf("… and %d more", len(failed)-10)
			break
		}
		t.Error(f)
	}
	if s.Watchdog != 0 || s.Stalled != 0 || s.Overrun != 0 || s.Duplicate != 0 {
		t.Errorf("interventions during the soak: %+v", s)
	}
}

// rpcCalls runs n request/reply exchanges of random sizes over w, the
// node checking each request and the client each reply.
func rpcCalls(w *world, seed uint64, n int) error {
	errc := make(chan error, 1)
	go func() {
		r := rand.New(rand.NewPCG(seed, 1))
		for i := range n {
			req, err := readFrame(w.node)
			if err != nil {
				errc <- fmt.Errorf("node, request %d: %w", i, err)
				return
			}
			if want := frameBody(r, 16+r.IntN(4081)); !bytes.Equal(req, want) {
				errc <- fmt.Errorf("node, request %d: %d bytes differ from the %d sent", i, len(req), len(want))
				return
			}
			if err := writeFrame(w.node, frameBody(r, 16+r.IntN(4081))); err != nil {
				errc <- fmt.Errorf("node, reply %d: %w", i, err)
				return
			}
		}
		errc <- nil
	}()
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range n {
		if err := writeFrame(w.client, frameBody(r, 16+r.IntN(4081))); err != nil {
			return fmt.Errorf("client, request %d: %w", i, err)
		}
		want := frameBody(r, 16+r.IntN(4081))
		got, err := readFrame(w.client)
		if err != nil {
			return fmt.Errorf("client, reply %d: %w", i, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("client, reply %d: %d bytes differ from the %d sent", i, len(got), len(want))
		}
	}
	return <-errc
}

// bigCall sends one 64 MiB message from the client and a short reply
// back, both checked.
func bigCall(w *world, seed uint64) error {
	const size = 64 << 20
	errc := make(chan error, 1)
	go func() {
		if err := expectN(w.node, pattern(seed, size), size); err != nil {
			errc <- fmt.Errorf("node: %w", err)
			return
		}
		errc <- writeFrame(w.node, []byte("ok"))
	}()
	if err := send(w.client, pattern(seed, size), false); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	got, err := readFrame(w.client)
	if err != nil || string(got) != "ok" {
		return fmt.Errorf("client reply %q: %v", got, err)
	}
	return <-errc
}

// expectN reads exactly n bytes from c and compares them with want.
func expectN(c *net.TCPConn, want io.Reader, n int64) error {
	ws, _, err := sum(want)
	if err != nil {
		return err
	}
	gs, gn, err := sum(io.LimitReader(c, n))
	if err != nil || gn != n || gs != ws {
		return fmt.Errorf("got %d of %d bytes (equal: %v): %v", gn, n, gs == ws, err)
	}
	return nil
}

func frameBody(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func writeFrame(c *net.TCPConn, b []byte) error {
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err := c.Write(buf)
	return err
}

func readFrame(c *net.TCPConn) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(h[:]))
	_, err := io.ReadFull(c, b)
	return b, err
}
