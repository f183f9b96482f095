//go:build !linux

package forward

import "errors"

// DefaultUserBuffer is the size of the buffers a direction reads into.
const DefaultUserBuffer = 64 << 10

// ErrClosed is returned by Start once Close has been called.
var ErrClosed = errors.New("forward: forwarder closed")

// User is the epoll event loop, Linux only: elsewhere NewUser fails and
// callers use Goroutines.
type User struct{}

var _ Forwarder = (*User)(nil)

// NewUser fails outside Linux.
func NewUser() (*User, error) { return nil, errors.New("forward: the user loop needs Linux epoll") }

// Start implements Forwarder; it always fails outside Linux.
func (*User) Start(p Pair, _ func(Result)) (Handle, error) {
	_ = p.Client.Close()
	_ = p.Upstream.Close()
	return nil, ErrClosed
}

// Path implements Forwarder.
func (*User) Path() string { return "user" }

// Close implements Forwarder.
func (*User) Close() error { return nil }
