package proxy

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// rawAcceptor accepts with accept4(2) on the listening socket itself. The net
// package's Accept registers every new socket with the poller and reads its
// local address before returning it: six system calls and a handful of
// allocations that a connection from a source that is not allowed never
// needs. Here a denial is accept4 and close, nothing more; a connection that
// passes the accept-time checks is handed to the net package then.
type rawAcceptor struct {
	f  *os.File // a non-blocking duplicate of the listening socket
	rc syscall.RawConn
}

// newAcceptor uses accept4 for a TCP listener and the net package otherwise.
// It takes over ln: the returned acceptor's close also closes it.
func newAcceptor(ln net.Listener) acceptor {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return stdAcceptor{ln}
	}
	a, err := newRawAcceptor(tl)
	if err != nil {
		return stdAcceptor{ln}
	}
	// The duplicate holds the socket open; the net package's copy would
	// only get readiness events nobody waits for.
	_ = tl.Close()
	return a
}

func newRawAcceptor(tl *net.TCPListener) (*rawAcceptor, error) {
	src, err := tl.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var derr error
	if err := src.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		_ = unix.Close(nfd)
		return nil, err
	}
	// A non-blocking descriptor makes os.NewFile register it with the
	// runtime poller, so RawConn.Read parks instead of blocking a thread.
	f := os.NewFile(uintptr(nfd), "listener")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &rawAcceptor{f: f, rc: rc}, nil
}

func (a *rawAcceptor) accept() (pending, error) {
	// syscall's Accept4, not x/sys/unix's: the latter asks every IPv4
	// socket for SO_PROTOCOL (to spot L2TP), one more system call per
	// connection for nothing.
	var (
		nfd  = -1
		sa   syscall.Sockaddr
		aerr error
	)
	err := a.rc.Read(func(fd uintptr) bool {
		for {
			// Blocking on purpose: os.NewFile then leaves the socket out
			// of the poller, and net.FileConn registers its own duplicate
			// (setting O_NONBLOCK on the shared file description).
			nfd, sa, aerr = syscall.Accept4(int(fd), syscall.SOCK_CLOEXEC)
			switch aerr {
			case syscall.EINTR, syscall.ECONNABORTED:
				continue // nothing to report: take the next one
			case syscall.EAGAIN:
				return false // wait until the listener is readable
			}
			return true
		}
	})
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			return pending{fd: -1}, net.ErrClosed
		}
		return pending{fd: -1}, err
	}
	if aerr != nil {
		return pending{fd: -1}, os.NewSyscallError("accept4", aerr)
	}
	var peer netip.AddrPort
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		peer = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *syscall.SockaddrInet6:
		peer = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return pending{fd: nfd, peer: peer}, nil
}

func (a *rawAcceptor) close() error { return a.f.Close() }

// lingerZero makes the next close of fd send RST.
func lingerZero(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
}

// closeSocket closes a bare socket.
func closeSocket(fd int) { _ = unix.Close(fd) }
