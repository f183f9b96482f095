package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"time"

	"github.com/distgate/distgate/wire"
)

var framePool = sync.Pool{New: func() any { return new([wire.MaxFrame]byte) }}

func getFrameBuf() *[wire.MaxFrame]byte  { return framePool.Get().(*[wire.MaxFrame]byte) }
func putFrameBuf(b *[wire.MaxFrame]byte) { framePool.Put(b) }

// deadlineReader is the client side a first message is read from: the
// socket itself, or the TLS session on it.
type deadlineReader interface {
	io.Reader
	SetReadDeadline(time.Time) error
}

var (
	_ deadlineReader = (*net.TCPConn)(nil)
	_ deadlineReader = (*tls.Conn)(nil)
)

// readFrame reads exactly one first message from r before deadline into
// buf: behind a hdr-byte length (wire.HeaderTCP on a plain socket,
// wire.HeaderTLS inside TLS, erlang-dist-facts.md §12.1), vetted before
// anything else is read, then exactly that many bytes. It never reads past
// the message, so nothing is left in a buffer that the forwarder would have
// to replay. The deadline is cleared on success. The returned slice aliases
// buf and is the message behind a 2-byte length, as the node reads it.
func readFrame(r deadlineReader, hdr int, buf *[wire.MaxFrame]byte, deadline time.Time) ([]byte, error) {
	if err := r.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	var h [wire.HeaderTLS]byte
	if _, err := io.ReadFull(r, h[:hdr]); err != nil {
		return nil, err
	}
	if hdr == wire.HeaderTLS {
		// The message itself is the same; only its length is wider.
		if h[0]|h[1] != 0 || int(h[2])<<8|int(h[3]) > wire.MaxBody {
			return nil, wire.ErrTooLong
		}
		h[0], h[1] = h[2], h[3]
	}
	n, err := wire.CheckLength([2]byte{h[0], h[1]})
	if err != nil {
		return nil, err
	}
	buf[0], buf[1] = h[0], h[1]
	if _, err := io.ReadFull(r, buf[2:2+n]); err != nil {
		return nil, err
	}
	if err := r.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return buf[:2+n], nil
}
