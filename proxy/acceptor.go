package proxy

import (
	"errors"
	"net"
	"net/netip"
	"os"
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
	f    *os.File     // the bare socket as a file, once conn has been tried
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
func (p *pending) drop(reset bool) {
	switch {
	case p.c != nil:
		if reset {
			_ = p.c.SetLinger(0)
		}
		_ = p.c.Close()
	case p.f != nil:
		if reset {
			lingerZero(p.fd)
		}
		_ = p.f.Close()
	default:
		if reset {
			lingerZero(p.fd)
		}
		closeSocket(p.fd)
	}
}

// conn returns the connection as a *net.TCPConn, building it from the bare
// socket if need be. On error nothing is closed: with EMFILE the caller may
// back off and try again, as it would for an accept that failed.
func (p *pending) conn() (*net.TCPConn, error) {
	if p.c != nil {
		// Keep-alive is turned on only now, for connections that passed
		// the accept checks, so a denial costs no setsockopt calls (the
		// listener has it off). net.FileConn below turns it on itself.
		_ = p.c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true})
		return p.c, nil
	}
	if p.f == nil {
		p.f = os.NewFile(uintptr(p.fd), "conn")
	}
	c, err := net.FileConn(p.f) // duplicates the descriptor
	if err != nil {
		return nil, err
	}
	_ = p.f.Close()
	tc, ok := c.(*net.TCPConn)
	if !ok {
		_ = c.Close()
		return nil, errNotTCP
	}
	p.c, p.f = tc, nil
	return tc, nil
}
