package forward

import (
	"net"

	"golang.org/x/sys/unix"
)

// sent reports whether every byte written to fd, whose sending side was
// shut down, has been acknowledged by the peer. SIOCOUTQ counts the
// unacknowledged sequence space, and the FIN takes one: the FIN's own ACK
// is not waited for, since a peer that has not answered it yet is in
// delayed-ACK mode (up to 40 ms on Linux, measured as 55 ms per stopped
// idle pair when waiting for it). An error means there is nothing left to
// wait for (the socket was reset).
func sent(fd int) bool {
	q, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	return err != nil || q <= 1
}

// sendQueueEmpty is sent for a conn.
func sendQueueEmpty(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return true
	}
	empty := true
	if err := rc.Control(func(fd uintptr) { empty = sent(int(fd)) }); err != nil {
		return true
	}
	return empty
}
