//go:build !linux

package proxy

import (
	"net"
	"syscall"
)

func newAcceptor(ln net.Listener) acceptor { return stdAcceptor{ln} }

// Bare sockets exist only on Linux; these are never reached elsewhere.
func lingerZero(int) {}

func closeSocket(fd int) { _ = syscall.Close(fd) }
