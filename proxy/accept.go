package proxy

import (
	"errors"
	"net"
	"net/netip"
)

// acceptor yields the connections a gate accepts. The checks that need no
// read run on what accept returns (the peer address) before anything else is
// built, so a denial costs as little as the platform allows.
type acceptor interface {
	accept() (pending, error)
	close() error
}

// pending is an accepted connection the gate has not decided to keep yet:
// either a *net.TCPConn, or (Linux) a bare socket that becomes one only when
// the connection passes the checks made at accept.
type pending struct {
	c    *net.TCPConn // nil for a bare socket
	fd   int          // the bare socket; -1 when c is set
	peer netip.AddrPort
}

// errNotTCP is returned for a listener that yields something other than TCP.
var errNotTCP = errors.New("accepted a non-TCP connection")

// stdAcceptor accepts through the net package.
type stdAcceptor struct{ ln net.Listener }

func (a stdAcceptor) accept() (pending, error) {
	c, err := a.ln.Accept()
	if err != nil {
		return pending{fd: -1}, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		_ = c.Close()
		return pending{fd: -1}, errNotTCP
	}
	return pending{c: tc, fd: -1, peer: remoteAddrPort(tc)}, nil
}

func (a stdAcceptor) close() error { return a.ln.Close() }

// remoteAddrPort returns the peer's address (IPv4-mapped IPv6 unmapped) and
// port; the zero value, never allowed, if it cannot be read.
func remoteAddrPort(c *net.TCPConn) netip.AddrPort {
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// drop closes a connection that was denied at accept, with RST if reset.
func (p pending) drop(reset bool) {
	if p.c != nil {
		if reset {
			_ = p.c.SetLinger(0)
		}
		_ = p.c.Close()
		return
	}
	closeSocket(p.fd, reset)
}

// conn returns the connection as a *net.TCPConn, building it from the bare
// socket if need be. On error the socket is closed.
func (p pending) conn() (*net.TCPConn, error) {
	if p.c != nil {
		return p.c, nil
	}
	return socketConn(p.fd)
}
