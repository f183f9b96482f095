package testenv

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distgate/distgate/wire"
)

// After the handshake, a fake node's client sends one command: a byte and a
// big-endian uint64 argument.
const (
	CmdEcho   = 'E' // echo every byte back until EOF, hashing them; then half-close
	CmdSink   = 'S' // read arg bytes, then write their count (8 bytes)
	CmdSource = 'O' // write arg bytes, then half-close
)

// FakeName is the node name in a fake node's challenge.
const FakeName = "fake@127.0.0.1"

// Hello returns the first message an OTP 25+ hidden node named name sends:
// an 'N' send_name with the default hidden flags.
func Hello(name string) []byte {
	b, err := wire.Append(nil, wire.Handshake{Tag: wire.TagNew, Flags: wire.DefaultHiddenFlags,
		Creation: 0x5eed, Name: []byte(name)})
	if err != nil {
		panic(fmt.Sprintf("testenv.Hello(%q): %v", name, err))
	}
	return b
}

// Handshake plays a hidden node named name on c, as far as a real one goes
// before the connection is up: it sends Hello(name), reads the status
// (which must be ok) and the challenge, answers with 'r' and reads the
// node's 'a'. It reads exactly those frames. sent and got count the bytes
// it wrote and read.
func Handshake(c io.ReadWriter, name string) (sent, got int, err error) {
	hello := Hello(name)
	if _, err := c.Write(hello); err != nil {
		return 0, 0, fmt.Errorf("send_name: %w", err)
	}
	sent = len(hello)
	buf := make([]byte, 64)
	body, err := readFrame(c, buf)
	if err != nil {
		return sent, got, fmt.Errorf("reading the status: %w", err)
	}
	got += 2 + len(body)
	if st, err := wire.ParseStatus(body); err != nil || !st.Is(wire.StatusOK) {
		return sent, got, fmt.Errorf("%w: want status ok, got %q", errFrame, body)
	}
	if body, err = readFrame(c, buf); err != nil {
		return sent, got, fmt.Errorf("reading the challenge: %w", err)
	}
	got += 2 + len(body)
	theirs, err := parseChallenge(body)
	if err != nil {
		return sent, got, err
	}
	reply := appendReply(nil, rand.Uint32(), digest(Cookie, theirs))
	if _, err := c.Write(reply); err != nil {
		return sent, got, fmt.Errorf("challenge_reply: %w", err)
	}
	sent += len(reply)
	if body, err = readFrame(c, buf); err != nil {
		return sent, got, fmt.Errorf("reading the ack: %w", err)
	}
	got += 2 + len(body)
	if !isAck(body) {
		return sent, got, fmt.Errorf("%w: want an ack, got % x", errFrame, body)
	}
	return sent, got, nil
}

// Command sends a fake node its command.
func Command(w io.Writer, cmd byte, arg uint64) error {
	var b [9]byte
	b[0] = cmd
	binary.BigEndian.PutUint64(b[1:], arg)
	_, err := w.Write(b[:])
	return err
}

// Record is what a fake node saw on one connection.
type Record struct {
	Name  string   // the node name in the first message
	Hello []byte   // the first message, length prefix included
	N     int64    // bytes after the command
	Sum   [32]byte // their sha256 (echo only)
	Err   error    // how reading ended: nil for a FIN
	Done  bool     // the connection has ended
}

// FakeNode stands in for the Erlang node behind a gate. On each
// connection it completes the acceptor's side of the distribution
// handshake up to 'a' (status ok, an 'N' challenge, any 'r' accepted,
// then 'a'; no digest is checked), and then either serves one command
// (CmdEcho, CmdSink, CmdSource) or, in hand-over mode, gives the
// connection to the caller (Next). It keeps a Record per node name. It is
// safe for concurrent use.
type FakeNode struct {
	ln      *net.TCPListener
	hand    chan handed // nil unless in hand-over mode
	accepts atomic.Int64
	noHello atomic.Int64 // connections that ended before a whole first message

	mu      sync.Mutex
	recs    map[string]*Record
	changed chan struct{}

	wg       sync.WaitGroup
	closing  chan struct{}
	connsMu  sync.Mutex
	conns    map[*net.TCPConn]struct{}
	stopOnce sync.Once
	tb       testing.TB
}

type handed struct {
	c     *net.TCPConn
	hello []byte
}

// NewFakeNode listens on addr (e.g. "127.0.0.2:0") and serves until Close.
// With handOver, connections go to Next once their handshake is done.
func NewFakeNode(addr string, handOver bool) (*FakeNode, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fake node on %s: %w", addr, err)
	}
	f := &FakeNode{ln: ln.(*net.TCPListener), recs: make(map[string]*Record), changed: make(chan struct{}),
		closing: make(chan struct{}), conns: make(map[*net.TCPConn]struct{})}
	if handOver {
		f.hand = make(chan handed, 64)
	}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// StartFakeNode is NewFakeNode for a test; cleanup closes it.
func StartFakeNode(t testing.TB, addr string, handOver bool) *FakeNode {
	t.Helper()
	f, err := NewFakeNode(addr, handOver)
	if err != nil {
		t.Fatal(err)
	}
	f.tb = t
	t.Cleanup(f.Close)
	return f
}

// Addr returns the address it listens on.
func (f *FakeNode) Addr() string { return f.ln.Addr().String() }

// Accepts returns how many connections reached it.
func (f *FakeNode) Accepts() int64 { return f.accepts.Load() }

// NoHello returns how many connections ended before a whole first message.
func (f *FakeNode) NoHello() int64 { return f.noHello.Load() }

// Close stops listening, closes every connection, handed over or not, and
// waits for its goroutines.
func (f *FakeNode) Close() {
	f.stopOnce.Do(func() {
		close(f.closing)
		_ = f.ln.Close()
		f.connsMu.Lock()
		for c := range f.conns {
			_ = c.Close()
		}
		f.connsMu.Unlock()
	})
	f.wg.Wait()
}

// serve accepts until Close. Accept errors other than the close (EMFILE
// under a descriptor test) back off from 5 ms to 1 s, as net/http does.
func (f *FakeNode) serve() {
	defer f.wg.Done()
	var backoff time.Duration
	for {
		c, err := f.ln.AcceptTCP()
		if err != nil {
			select {
			case <-f.closing:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		f.accepts.Add(1)
		f.connsMu.Lock()
		select {
		case <-f.closing:
			f.connsMu.Unlock()
			_ = c.Close()
			return
		default:
		}
		f.conns[c] = struct{}{}
		f.connsMu.Unlock()
		f.wg.Add(1)
		go f.handle(c)
	}
}

var bigBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

func (f *FakeNode) handle(c *net.TCPConn) {
	defer f.wg.Done()
	keep := false
	defer func() {
		if keep {
			return
		}
		f.connsMu.Lock()
		delete(f.conns, c)
		f.connsMu.Unlock()
		_ = c.Close()
	}()
	body, err := readFrame(c, make([]byte, 64))
	if err != nil {
		f.noHello.Add(1)
		return
	}
	hello := frame(nil, body)
	name := fmt.Sprintf("unparsed-%p", c)
	if h, err := wire.Parse(hello); err == nil {
		name = string(h.Name)
	}
	f.put(&Record{Name: name, Hello: hello})
	if err := acceptorHandshake(c); err != nil {
		f.finish(name, 0, nil, err)
		return
	}
	if f.hand != nil {
		select {
		case f.hand <- handed{c, hello}:
			keep = true // the caller owns it now; Close still closes it
		case <-f.closing:
		}
		return
	}

	var cmd [9]byte
	if _, err := io.ReadFull(c, cmd[:]); err != nil {
		if err == io.EOF {
			err = nil // the setup-rate and idle clients close here
		}
		f.finish(name, 0, nil, err)
		return
	}
	arg := binary.BigEndian.Uint64(cmd[1:])
	switch cmd[0] {
	case CmdEcho:
		sum := sha256.New()
		n, err := io.Copy(c, io.TeeReader(c, sum))
		if err == nil {
			_ = c.CloseWrite()
			// Wait for the client's own close, so a late RST is not taken for ours.
			_, _ = io.Copy(io.Discard, c)
		}
		f.finish(name, n, sum, err)
	case CmdSink:
		bp := bigBufs.Get().(*[]byte)
		defer bigBufs.Put(bp)
		var got uint64
		var err error
		for got < arg && err == nil {
			var n int
			n, err = c.Read(*bp)
			got += uint64(n)
		}
		var ack [8]byte
		binary.BigEndian.PutUint64(ack[:], got)
		_, _ = c.Write(ack[:])
		_, _ = io.Copy(io.Discard, c) // until the client closes
		f.finish(name, int64(got), nil, err)
	case CmdSource:
		bp := bigBufs.Get().(*[]byte)
		defer bigBufs.Put(bp)
		var err error
		for left := arg; left > 0 && err == nil; {
			n := min(left, uint64(len(*bp)))
			_, err = c.Write((*bp)[:n])
			left -= n
		}
		if err == nil {
			_ = c.CloseWrite()
			_, _ = io.Copy(io.Discard, c)
		}
		f.finish(name, 0, nil, err)
	default:
		f.finish(name, 0, nil, fmt.Errorf("unknown command %q", cmd[0]))
	}
}

// acceptorHandshake answers a first message already read: status ok and a
// challenge (two writes, as a node sends them), then it reads the 'r' and
// answers 'a'. It checks the layout of 'r' and nothing else.
func acceptorHandshake(c *net.TCPConn) error {
	if _, err := c.Write(appendStatus(nil, wire.StatusOK)); err != nil {
		return err
	}
	flags := wire.DefaultHiddenFlags | wire.FlagPublished
	if _, err := c.Write(appendChallenge(nil, flags, rand.Uint32(), 0x5eed, FakeName)); err != nil {
		return err
	}
	body, err := readFrame(c, make([]byte, 32))
	if err != nil {
		return err
	}
	theirs, err := parseReply(body)
	if err != nil {
		return err
	}
	_, err = c.Write(appendAck(nil, digest(Cookie, theirs)))
	return err
}

func (f *FakeNode) put(r *Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recs[r.Name] = r
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *FakeNode) finish(name string, n int64, sum hash.Hash, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.recs[name]
	r.N, r.Err, r.Done = n, err, true
	if sum != nil {
		copy(r.Sum[:], sum.Sum(nil))
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// WaitDone waits up to d for the connection of name to end and returns its
// record; ok is false if it did not end in time.
func (f *FakeNode) WaitDone(name string, d time.Duration) (Record, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		r, ok := f.recs[name]
		ch := f.changed
		if ok && r.Done {
			cp := *r
			f.mu.Unlock()
			return cp, true
		}
		f.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return Record{}, false
		}
	}
}

// Next returns the next connection handed over, once its handshake is
// done, with the first message it began with. The connection carries a
// WaitTimeout deadline so that a stuck test fails rather than hangs, and
// cleanup closes it. (Hand-over mode, for a test.)
func (f *FakeNode) Next() (*net.TCPConn, []byte) {
	f.tb.Helper()
	select {
	case h := <-f.hand:
		f.tb.Cleanup(func() { _ = h.c.Close() })
		_ = h.c.SetDeadline(time.Now().Add(WaitTimeout))
		return h.c, h.hello
	case <-time.After(WaitTimeout):
		f.tb.Fatalf("the fake node got no connection within %v", WaitTimeout)
		return nil, nil
	}
}
