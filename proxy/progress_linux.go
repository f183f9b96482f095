package proxy

import (
	"net"

	"golang.org/x/sys/unix"
)

// tcpCounters reads, without touching the data path, how many bytes the
// kernel has received on c and how many of the bytes sent on c the peer has
// acknowledged.
func tcpCounters(c *net.TCPConn) (received, acked int64, ok bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	cerr := rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return
		}
		received, acked, ok = int64(info.Bytes_received), int64(info.Bytes_acked), true
	})
	return received, acked, ok && cerr == nil
}
