package proxy

import (
	"io"
	"net"
	"sync"
	"time"

	"github.com/distgate/distgate/wire"
)

var framePool = sync.Pool{New: func() any { return new([wire.MaxFrame]byte) }}

func getFrameBuf() *[wire.MaxFrame]byte  { return framePool.Get().(*[wire.MaxFrame]byte) }
func putFrameBuf(b *[wire.MaxFrame]byte) { framePool.Put(b) }

// readFrame reads exactly one handshake message from c into buf before
// deadline: the 2-byte length, vetted before anything else is read, then
// exactly that many bytes. It never reads past the message, so nothing is
// left in a buffer that the forwarder would have to replay. The deadline is
// cleared on success. The returned slice aliases buf and includes the prefix.
func readFrame(c *net.TCPConn, buf *[wire.MaxFrame]byte, deadline time.Time) ([]byte, error) {
	if err := c.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(c, buf[:2]); err != nil {
		return nil, err
	}
	n, err := wire.CheckLength([2]byte{buf[0], buf[1]})
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(c, buf[2:2+n]); err != nil {
		return nil, err
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return buf[:2+n], nil
}
