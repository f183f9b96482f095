package proxy

// TLS at the gate (design.md, TLS distribution; erlang-dist-facts.md §12).
//
// A terminating gate reads the client's first flight whole (tlshello),
// which decides bad_handshake before crypto/tls sees a byte, then runs the
// TLS handshake with the ClientHello replayed to crypto/tls (tls_failed),
// checks the verified certificate against the allow entries' identities
// (identity_not_allowed), and from there reads the distribution handshake
// from the TLS session: inside TLS, OTP's inet_tls_dist frames it with
// 4-byte lengths where a plain node expects 2 (§12.1), so the first message
// and the watch re-frame each handshake frame (watch.go's framed). After
// the node's 'a' both sides speak 4-byte frames and bytes pass unchanged,
// between the TLS session and the node's socket, in user space (tlsPair,
// path "tls"): the kernel cannot forward what it has to decrypt.
//
// A passthrough gate reads the first flight whole too, decides on the
// source, the limits and the server name, writes the records it read to
// the node and hands both raw sockets to the gate's forwarder: nothing in
// the bytes changes, so any path will do.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distgate/distgate/forward"
	"github.com/distgate/distgate/tlshello"
)

// tlsPath is how the closed line and the status name the forwarding of a
// terminated connection.
const tlsPath = "tls"

// tlsCopyBuf is the buffer of each direction of a terminated pair: one TLS
// record's worth of plaintext.
const tlsCopyBuf = 16 << 10

var helloPool = sync.Pool{New: func() any { return new([tlshello.MaxSize]byte) }}

// errNoTLSConfig: a terminating gate was given settings without a server
// configuration (a caller's bug; config never builds such settings).
var errNoTLSConfig = errors.New("no TLS server configuration")

// readHello reads exactly the records that carry a ClientHello from c,
// before deadline, into buf: as much as tlshello asks for at each step, so
// nothing past the first flight is read. It fails with tlshello's error as
// soon as the bytes show they are not a ClientHello. The returned slice
// aliases buf. The read deadline is cleared on success.
func readHello(c *net.TCPConn, buf *[tlshello.MaxSize]byte, deadline time.Time) ([]byte, error) {
	if err := c.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	var s tlshello.Scanner
	n := 0
	for {
		more, err := s.Need(buf[:n])
		if err != nil {
			return nil, err
		}
		if more == 0 {
			break
		}
		if _, err := io.ReadFull(c, buf[n:n+more]); err != nil {
			return nil, err
		}
		n += more
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// replayConn is the socket as crypto/tls reads it on a terminating gate:
// first the ClientHello the gate has read already, then the socket. It
// embeds the net.Conn interface, not *net.TCPConn, so that no method of
// the socket that reads (WriteTo, ReadFrom) is promoted past Read.
type replayConn struct {
	net.Conn
	pre []byte
}

func (r *replayConn) Read(b []byte) (int, error) {
	if len(r.pre) > 0 {
		n := copy(b, r.pre)
		r.pre = r.pre[n:]
		return n, nil
	}
	return r.Conn.Read(b)
}

// handshakeTLS runs the server side of the TLS handshake on c, whose
// ClientHello (hello) has been read already, before deadline. The hello is
// copied: the caller may reuse its buffer at once. Both deadlines of c are
// cleared on success.
func handshakeTLS(c *net.TCPConn, hello []byte, cfg *tls.Config, deadline time.Time) (*tls.Conn, error) {
	if cfg == nil {
		return nil, errNoTLSConfig
	}
	tc := tls.Server(&replayConn{Conn: c, pre: bytes.Clone(hello)}, cfg)
	if err := c.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return tc, nil
}

// identities returns what allow entries' identities are matched against:
// the verified client certificate's subject CN (if any), then its DNS, URI
// and email SANs, in that order. Nil when the client presented no
// certificate that was verified (a gate without client_ca asks for none).
func identities(cs tls.ConnectionState) []string {
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	ids := make([]string, 0, 1+len(leaf.DNSNames)+len(leaf.URIs)+len(leaf.EmailAddresses))
	if cn := leaf.Subject.CommonName; cn != "" {
		ids = append(ids, cn)
	}
	ids = append(ids, leaf.DNSNames...)
	for _, u := range leaf.URIs {
		ids = append(ids, u.String())
	}
	return append(ids, leaf.EmailAddresses...)
}

// tlsPair forwards a terminated connection once the watch is over:
// plaintext, unchanged, between the client's TLS session and the node's
// socket, one goroutine per direction. Half-closes pass on: the client's
// close_notify (or a FIN at a record boundary) half-closes the node's
// socket; the node's FIN becomes close_notify and a FIN to the client.
// Stop closes both sockets under the TLS session, never sending an alert
// that a stalled client would have to read first.
type tlsPair struct {
	tc       *tls.Conn
	client   *net.TCPConn // the socket under tc
	up       *net.TCPConn
	toUp     []byte // read past the handshake: written first
	toClient []byte
	in, out  atomic.Int64
	stopped  atomic.Bool
}

var _ forward.Handle = (*tlsPair)(nil)

// Stop implements forward.Handle.
func (p *tlsPair) Stop() {
	p.stopped.Store(true)
	_ = p.client.Close()
	_ = p.up.Close()
}

// Progress implements forward.Handle: plaintext bytes, which are what the
// node sends and receives.
func (p *tlsPair) Progress() (in, out int64) { return p.in.Load(), p.out.Load() }

// start runs the pair on goroutines of its own and calls done once, when
// both directions are over.
func (p *tlsPair) start(done func(forward.Result)) {
	go func() { done(p.run()) }()
}

func (p *tlsPair) run() forward.Result {
	errc := make(chan error, 1)
	go func() { errc <- p.toNode() }()
	err := p.fromNode()
	if err2 := <-errc; err == nil {
		err = err2
	}
	_ = p.client.Close()
	_ = p.up.Close()
	if p.stopped.Load() {
		err = nil // the copies failed because Stop closed the sockets
	}
	return forward.Result{In: p.in.Load(), Out: p.out.Load(), Err: err}
}

// toNode copies the client's plaintext to the node; a named function, so
// that goroutine dumps say what it is.
func (p *tlsPair) toNode() error {
	fail := func(err error) error {
		_ = p.client.Close()
		_ = p.up.Close()
		return err
	}
	if len(p.toUp) > 0 {
		n, err := p.up.Write(p.toUp)
		p.in.Add(int64(n))
		if err != nil {
			return fail(err)
		}
	}
	buf := make([]byte, tlsCopyBuf)
	for {
		n, err := p.tc.Read(buf)
		if n > 0 {
			w, werr := p.up.Write(buf[:n])
			p.in.Add(int64(w))
			if werr != nil {
				return fail(werr)
			}
		}
		if err == io.EOF {
			if err := p.up.CloseWrite(); err != nil {
				return fail(err)
			}
			return nil
		}
		if err != nil {
			return fail(err)
		}
	}
}

// fromNode copies the node's bytes to the client's TLS session.
func (p *tlsPair) fromNode() error {
	fail := func(err error) error {
		_ = p.client.Close()
		_ = p.up.Close()
		return err
	}
	if len(p.toClient) > 0 {
		n, err := p.tc.Write(p.toClient)
		p.out.Add(int64(n))
		if err != nil {
			return fail(err)
		}
	}
	buf := make([]byte, tlsCopyBuf)
	for {
		n, err := p.up.Read(buf)
		if n > 0 {
			w, werr := p.tc.Write(buf[:n])
			p.out.Add(int64(w))
			if werr != nil {
				return fail(werr)
			}
		}
		if err == io.EOF {
			// close_notify, then the TCP FIN: the client learns the node
			// is done and may still send.
			if err := p.tc.CloseWrite(); err != nil {
				return fail(err)
			}
			if err := p.client.CloseWrite(); err != nil {
				return fail(err)
			}
			return nil
		}
		if err != nil {
			return fail(err)
		}
	}
}
