//go:build !linux

package proxy

import (
	"net"
	"syscall"
)

func newAcceptor(ln net.Listener) acceptor { return stdAcceptor{ln} }

// Bare sockets exist only on Linux; these are never reached elsewhere.
func closeSocket(fd int, _ bool) { _ = syscall.Close(fd) }

func socketConn(int) (*net.TCPConn, error) { return nil, errNotTCP }
