package attack

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

// StreamConfig describes one client stream through the gate to a fake node
// (testenv.FakeNode): dial Target from Source, complete the handshake as
// Name (testenv.Handshake) and ask for an echo, then send up to Max bytes of
// a stream that Seed determines, until Stop closes; read the echo back and
// check it byte for byte; then half-close and wait for the peer's close.
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
	// PreSent and PreGot are the bytes written and read before the
	// payload: the handshake and the command.
	PreSent, PreGot int64
	Sent            int64    // payload bytes written (after the handshake and the command)
	Echoed          int64    // payload bytes read back, each checked
	Mismatch        int64    // offset of the first echoed byte that differs; -1: none
	Sum             [32]byte // sha256 of the payload sent
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

	// The handshake is bounded by the linger: a gate that neither forwards
	// nor closes fails the stream rather than hanging it.
	_ = c.SetDeadline(time.Now().Add(linger))
	sent, got, err := testenv.Handshake(c, cfg.Name)
	res.PreSent, res.PreGot = int64(sent), int64(got)
	_ = c.SetDeadline(time.Time{})
	stopCtx := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stopCtx()
	if err == nil {
		err = testenv.Command(c, testenv.CmdEcho, 0)
		res.PreSent += 9
	}
	if err != nil {
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
