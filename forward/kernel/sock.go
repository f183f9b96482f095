package kernel

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Raw socket helpers. Once a pair is in the kernel, distgate holds each
// socket as a bare non-blocking descriptor (a dup of the net.TCPConn's,
// whose own descriptor is closed so Go's poller forgets it): the only
// thing user space still does is look at it now and then.

// control runs f on c's descriptor without waiting for readiness: every
// call made through it is non-blocking.
func control(c *net.TCPConn, f func(fd int)) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { f(int(fd)) })
}

// dupConn returns a close-on-exec duplicate of c's descriptor. It shares
// the open file, so it is non-blocking like Go's.
func dupConn(c *net.TCPConn) (int, error) {
	nfd := -1
	var derr error
	if err := control(c, func(fd int) {
		nfd, derr = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup socket: %w", derr)
	}
	return nfd, nil
}

// fdConn turns a raw descriptor back into a *net.TCPConn for the user
// space path and closes fd (net.FileConn keeps a duplicate of its own).
func fdConn(fd int) (*net.TCPConn, error) {
	f := os.NewFile(uintptr(fd), "tcp")
	c, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("socket back to user space: %w", err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		_ = c.Close()
		return nil, fmt.Errorf("socket back to user space: not TCP (%T)", c)
	}
	return tc, nil
}

// socketCookie is the kernel's id for the socket behind fd, the key of
// every map.
func socketCookie(fd int) (uint64, error) {
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("SO_COOKIE: %w", err)
	}
	return c, nil
}

// sendPos is how far the socket's send queue has been filled:
// tcpi_bytes_acked + SIOCOUTQ, i.e. write_seq relative to the start.
// Redirected bytes have reached the peer's send queue once its sendPos has
// moved by as many bytes as the program counted (trap 6).
//
// TCP_INFO is read first: an ACK between the two calls then makes the sum
// smaller than the truth, never larger, so a wait on it never ends early.
// outq is returned as well: an empty send queue with bytes still owed to
// it is what a kernel stall looks like (trap 9).
func sendPos(fd int) (pos uint64, outq int, err error) {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, 0, fmt.Errorf("TCP_INFO: %w", err)
	}
	q, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return 0, 0, fmt.Errorf("SIOCOUTQ: %w", err)
	}
	return ti.Bytes_acked + uint64(q), q, nil
}

// sendPosExact is sendPos when nothing writes to the socket: it re-reads
// until no ACK came in between, so the base a wait is measured from is
// never too high (which would make the wait end early).
func sendPosExact(fd int) (uint64, error) {
	for range 100 {
		ti1, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return 0, fmt.Errorf("TCP_INFO: %w", err)
		}
		q, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		if err != nil {
			return 0, fmt.Errorf("SIOCOUTQ: %w", err)
		}
		ti2, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return 0, fmt.Errorf("TCP_INFO: %w", err)
		}
		if ti1.Bytes_acked == ti2.Bytes_acked {
			return ti1.Bytes_acked + uint64(q), nil
		}
	}
	return 0, errors.New("send queue position: ACKs kept moving")
}

// consumed is how many bytes TCP received on fd that are no longer in
// its receive queue. It must be called before the socket is in any map
// (with a psock, SIOCINQ may count the psock's queue instead). TCP_INFO
// is read first: data arriving between the two calls makes the result
// smaller than the truth, never larger.
func consumed(fd int) (uint64, error) {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, fmt.Errorf("TCP_INFO: %w", err)
	}
	inq, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return 0, fmt.Errorf("SIOCINQ: %w", err)
	}
	return ti.Bytes_received - min(ti.Bytes_received, uint64(inq)), nil
}

// queued reports what a non-blocking MSG_PEEK sees: data waiting to be
// read (not redirected), EOF, or nothing.
func queued(fd int) (data, eof bool, err error) {
	var b [1]byte
	for {
		n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false, false, nil
		case err != nil:
			return false, false, err
		}
		return n > 0, n == 0, nil
	}
}

// readQueued appends to dst what fd has queued, without blocking, until
// the queue is empty, EOF, or dst would grow past limit. over says the
// limit was reached with data still queued.
func readQueued(fd int, dst []byte, limit int) (out []byte, eof, over bool, err error) {
	var buf [16 << 10]byte
	for {
		room := limit - len(dst)
		if room <= 0 {
			data, e, err := queued(fd)
			return dst, e, data, err
		}
		n, _, err := unix.Recvfrom(fd, buf[:min(room, len(buf))], unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return dst, false, false, nil
		case err != nil:
			return dst, false, false, err
		case n == 0:
			return dst, true, false, nil
		}
		dst = append(dst, buf[:n]...)
	}
}

// writeSome writes b to fd without blocking and returns how much went in.
func writeSome(fd int, b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Write(fd, b[done:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return done, nil
		case err != nil:
			return done, err
		}
		done += n
	}
	return done, nil
}

// discard reads and drops what fd has queued, a bounded amount: a socket
// closed with unread data sends a reset, which would throw away its own
// send queue (bytes already forwarded to that side).
func discard(fd int) {
	var buf [16 << 10]byte
	for range 64 {
		n, _, err := unix.Recvfrom(fd, buf[:], unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return
		}
	}
}

// acked reports whether every byte written to fd, whose sending side was
// shut down, has been acknowledged by the peer. SIOCOUTQ counts the
// unacknowledged sequence space, of which the FIN takes one; its own ACK
// is not waited for (a peer in delayed-ACK mode holds it up to 40 ms). An
// error means there is nothing left to wait for (the socket was reset).
func acked(fd int) bool {
	q, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	return err != nil || q <= 1
}

// setLingerZero makes the next close send a reset: how a reset from one
// side is passed on to the other (trap 7).
func setLingerZero(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
}

// sockError reads and clears the socket's pending error.
func sockError(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if v == 0 {
		return nil
	}
	return unix.Errno(v)
}
