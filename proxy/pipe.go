package proxy

import (
	"io"
	"net"
)

// closeWriter is how a finished direction is half-closed.
type closeWriter interface{ CloseWrite() error }

var _ closeWriter = (*net.TCPConn)(nil)

// copyHook, when set by a test, sees exactly what each io.Copy is handed.
var copyHook func(dst, src any)

// pipe splices client and upstream both ways until both directions are done
// and returns the bytes copied client→upstream and upstream→client. Both
// conns are closed when it returns.
func pipe(client, upstream *net.TCPConn) (in, out int64) {
	done := make(chan int64, 1)
	go func() { done <- copyHalf(upstream, client) }()
	out = copyHalf(client, upstream)
	in = <-done
	_ = client.Close()
	_ = upstream.Close()
	return in, out
}

// copyHalf copies src to dst with io.Copy on the raw *net.TCPConns, which on
// Linux moves the bytes with splice(2) and never through user space. On EOF it
// half-closes dst so the peer sees the FIN and the other direction carries
// on; on an error (reset, a closed conn) it closes both so the other
// direction ends too. It is a named function so goroutine dumps say what it
// is.
func copyHalf(dst, src *net.TCPConn) int64 {
	if copyHook != nil {
		copyHook(dst, src)
	}
	n, err := io.Copy(dst, src)
	if err == nil {
		if cerr := dst.CloseWrite(); cerr == nil {
			return n
		}
	}
	_ = dst.Close()
	_ = src.Close()
	return n
}
