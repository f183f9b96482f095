package attack

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distgate/distgate/wire"
)

// Hello returns the first message an OTP 25+ hidden node named name sends:
// an 'N' send_name with the default hidden flags.
func Hello(name string) []byte {
	b, err := wire.Append(nil, wire.Handshake{Tag: wire.TagNew, Flags: wire.DefaultHiddenFlags,
		Creation: 0x5eed, Name: []byte(name)})
	if err != nil {
		panic(fmt.Sprintf("attack.Hello(%q): %v", name, err))
	}
	return b
}

// Record is what the Upstream saw on one connection.
type Record struct {
	Name  string   // the node name in the first message
	Hello []byte   // the first message, length prefix included
	N     int64    // bytes after the first message
	Sum   [32]byte // their sha256
	Err   error    // how reading ended: nil for a FIN
	Done  bool     // the connection has ended
}

// Upstream stands in for the node behind the gate: it reads the first
// message of each connection, then echoes every further byte back and
// hashes it. It keeps a Record per node name. It is safe for concurrent use.
type Upstream struct {
	ln       *net.TCPListener
	accepts  atomic.Int64
	noHello  atomic.Int64 // connections that ended before a whole first message
	mu       sync.Mutex
	recs     map[string]*Record
	changed  chan struct{}
	wg       sync.WaitGroup
	closing  chan struct{}
	connsMu  sync.Mutex
	conns    map[*net.TCPConn]struct{}
	stopOnce sync.Once
}

// NewUpstream listens on addr (e.g. "127.0.0.2:0") and serves until Close.
func NewUpstream(addr string) (*Upstream, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	u := &Upstream{ln: ln.(*net.TCPListener), recs: make(map[string]*Record), changed: make(chan struct{}),
		closing: make(chan struct{}), conns: make(map[*net.TCPConn]struct{})}
	u.wg.Add(1)
	go u.serve()
	return u, nil
}

// Addr returns the address it listens on.
func (u *Upstream) Addr() string { return u.ln.Addr().String() }

// Accepts returns how many connections reached it.
func (u *Upstream) Accepts() int64 { return u.accepts.Load() }

// NoHello returns how many connections ended before a whole first message.
func (u *Upstream) NoHello() int64 { return u.noHello.Load() }

// Close stops listening, closes every connection and waits for its
// goroutines.
func (u *Upstream) Close() {
	u.stopOnce.Do(func() {
		close(u.closing)
		_ = u.ln.Close()
		u.connsMu.Lock()
		for c := range u.conns {
			_ = c.Close()
		}
		u.connsMu.Unlock()
	})
	u.wg.Wait()
}

func (u *Upstream) serve() {
	defer u.wg.Done()
	for {
		c, err := u.ln.AcceptTCP()
		if err != nil {
			select {
			case <-u.closing:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // EMFILE and the like
			continue
		}
		u.accepts.Add(1)
		u.connsMu.Lock()
		select {
		case <-u.closing:
			u.connsMu.Unlock()
			_ = c.Close()
			return
		default:
		}
		u.conns[c] = struct{}{}
		u.connsMu.Unlock()
		u.wg.Add(1)
		go u.echo(c)
	}
}

// echo reads the first message, then copies everything back, hashing it.
func (u *Upstream) echo(c *net.TCPConn) {
	defer u.wg.Done()
	defer func() {
		u.connsMu.Lock()
		delete(u.conns, c)
		u.connsMu.Unlock()
		_ = c.Close()
	}()
	var pre [2]byte
	if _, err := io.ReadFull(c, pre[:]); err != nil {
		u.noHello.Add(1)
		return
	}
	n := int(binary.BigEndian.Uint16(pre[:]))
	frame := make([]byte, 2+n)
	copy(frame, pre[:])
	if _, err := io.ReadFull(c, frame[2:]); err != nil {
		u.noHello.Add(1)
		return
	}
	h, err := wire.Parse(frame)
	name := fmt.Sprintf("unparsed-%p", c)
	if err == nil {
		name = string(h.Name)
	}
	rec := &Record{Name: name, Hello: frame}
	u.put(rec)
	sum := sha256.New()
	nc, err := io.Copy(c, io.TeeReader(c, sum))
	if err == nil {
		_ = c.CloseWrite()
		// Wait for the client's own close, so a late RST is not taken for ours.
		_, _ = io.Copy(io.Discard, c)
	}
	u.finish(name, nc, sum, err)
}

func (u *Upstream) put(r *Record) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.recs[r.Name] = r
	close(u.changed)
	u.changed = make(chan struct{})
}

func (u *Upstream) finish(name string, n int64, sum hash.Hash, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	r := u.recs[name]
	r.N, r.Err, r.Done = n, err, true
	copy(r.Sum[:], sum.Sum(nil))
	close(u.changed)
	u.changed = make(chan struct{})
}

// Record returns a copy of the record for name, if that name arrived.
func (u *Upstream) Record(name string) (Record, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	r, ok := u.recs[name]
	if !ok {
		return Record{}, false
	}
	return *r, true
}

// Names returns every node name that arrived.
func (u *Upstream) Names() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]string, 0, len(u.recs))
	for n := range u.recs {
		out = append(out, n)
	}
	return out
}

// WaitDone waits up to d for the connection of name to end and returns its
// record; ok is false if it did not end in time.
func (u *Upstream) WaitDone(name string, d time.Duration) (Record, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		u.mu.Lock()
		r, ok := u.recs[name]
		ch := u.changed
		if ok && r.Done {
			cp := *r
			u.mu.Unlock()
			return cp, true
		}
		u.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return Record{}, false
		}
	}
}

// StreamConfig describes one client stream through the gate: dial Target
// from Source, send Hello(Name), then send up to Max bytes of a stream that
// Seed determines, until Stop closes; read the echo back and check it byte for
// byte; then half-close and wait for the peer's close.
type StreamConfig struct {
	Source, Target, Name string
	Seed                 uint64
	Max                  int64
	Stop                 <-chan struct{} // nil: send Max bytes
	Chunk                int             // bytes per write; <= 0: 64 KiB
	// Pace, if set, is waited between writes (a stream that is alive but
	// not saturating the machine).
	Pace time.Duration
	// Linger bounds the wait for the rest of the echo after sending ends;
	// <= 0: 30 s.
	Linger time.Duration
}

// StreamResult is how a stream went.
type StreamResult struct {
	Sent     int64    // payload bytes written (after the first message)
	Echoed   int64    // payload bytes read back, each checked
	Mismatch int64    // offset of the first echoed byte that differs; -1: none
	Sum      [32]byte // sha256 of the payload sent
	// Complete: every byte sent came back intact and the peer then closed
	// with a FIN.
	Complete bool
	// Cut: the connection ended (FIN or RST) before the stream stopped
	// sending, or before its echo was whole.
	Cut bool
	Err error // what ended it when not Complete
}

// Stream runs one stream; see StreamConfig.
func Stream(ctx context.Context, cfg StreamConfig) StreamResult {
	res := StreamResult{Mismatch: -1}
	chunk := cfg.Chunk
	if chunk <= 0 {
		chunk = 64 << 10
	}
	linger := cfg.Linger
	if linger <= 0 {
		linger = 30 * time.Second
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	if cfg.Source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(cfg.Source)}
	}
	nc, err := d.DialContext(ctx, "tcp", cfg.Target)
	if err != nil {
		res.Err = err
		res.Cut = true
		return res
	}
	c := nc.(*net.TCPConn)
	defer c.Close()
	stopCtx := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stopCtx()

	if _, err := c.Write(Hello(cfg.Name)); err != nil {
		res.Err, res.Cut = err, true
		return res
	}

	type readEnd struct {
		n, mismatch int64
		err         error
	}
	rdone := make(chan readEnd, 1)
	go func() {
		gen := newGen(cfg.Seed)
		buf := make([]byte, 64<<10)
		want := make([]byte, 64<<10)
		var n int64
		mismatch := int64(-1)
		for {
			k, err := c.Read(buf)
			if k > 0 {
				gen.Read(want[:k])
				if mismatch < 0 && !bytes.Equal(buf[:k], want[:k]) {
					for i := range k {
						if buf[i] != want[i] {
							mismatch = n + int64(i)
							break
						}
					}
				}
				n += int64(k)
			}
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				rdone <- readEnd{n, mismatch, err}
				return
			}
		}
	}()

	gen := newGen(cfg.Seed)
	sum := sha256.New()
	buf := make([]byte, chunk)
	var werr error
	stopped := false
	for res.Sent < cfg.Max {
		if cfg.Stop != nil {
			select {
			case <-cfg.Stop:
				stopped = true
			default:
			}
			if stopped {
				break
			}
		}
		k := int(min(int64(chunk), cfg.Max-res.Sent))
		gen.Read(buf[:k])
		sum.Write(buf[:k])
		n, err := c.Write(buf[:k])
		res.Sent += int64(n)
		if err != nil {
			werr = err
			break
		}
		if cfg.Pace > 0 {
			time.Sleep(cfg.Pace) // bounded pacing of the load itself, not synchronisation
		}
	}
	// The sum covers what was handed to the kernel; a short write with an
	// error leaves the stream cut anyway.
	copy(res.Sum[:], sum.Sum(nil))
	if werr == nil {
		werr = c.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(linger))
	re := <-rdone
	res.Echoed, res.Mismatch = re.n, re.mismatch
	switch {
	case werr != nil:
		res.Err, res.Cut = werr, true
	case re.err != nil:
		res.Err, res.Cut = re.err, true
	case re.n != res.Sent:
		res.Err, res.Cut = fmt.Errorf("echo ended after %d of %d bytes", re.n, res.Sent), true
	case re.mismatch >= 0:
		res.Err = fmt.Errorf("echo differs at byte %d", re.mismatch)
	default:
		res.Complete = true
	}
	return res
}

// gen is the deterministic byte stream a seed gives; the writer and the
// reader of a stream each run one. It is AES-CTR keyed by the seed: random
// enough to catch any reordering or loss, and fast (in assembly) even in a
// race-enabled test binary.
type gen struct{ s cipher.Stream }

func newGen(seed uint64) *gen {
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err)
	}
	return &gen{s: cipher.NewCTR(b, make([]byte, aes.BlockSize))}
}

func (g *gen) Read(p []byte) {
	clear(p)
	g.s.XORKeyStream(p, p)
}
