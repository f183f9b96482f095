package kernel

import "errors"

var (
	// ErrPermission is returned by New when the kernel refuses the BPF
	// maps or program for lack of privilege: the path needs both CAP_BPF
	// and CAP_NET_ADMIN (either alone is not enough).
	ErrPermission = errors.New("kernel forwarding not permitted")
	// ErrSelfTest is returned by New when the path loaded but failed its
	// self-test on loopback: this kernel's SOCKMAP is not trusted.
	ErrSelfTest = errors.New("kernel forwarding self-test failed")
	// ErrStalled ends a pair whose redirected bytes stopped reaching the
	// peer's send queue although the queue had room (trap 9): those bytes
	// cannot be taken back, so both sides are reset rather than handed a
	// stream with a hole in it.
	ErrStalled = errors.New("kernel forwarding stalled")
	// ErrOverrun ends a pair moved to user space whose source kept
	// sending although its data was held (see holdLimit): the kernel did
	// not close the sender's window, and the only bound left is a reset.
	ErrOverrun = errors.New("kernel forwarding could not hold the sender back")
	// ErrDuplicate ends a pair whose program saw more bytes from a socket
	// than TCP received on it: the kernel handed the same data to the
	// verdict twice (seen on 6.18 in held mode, one whole 64 KiB skb
	// passed again right after itself). Both sides are reset before user
	// space writes what it read after the duplicate; a reset is better
	// than a stream with bytes in it twice.
	ErrDuplicate = errors.New("kernel forwarding saw bytes twice")
	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("kernel forwarder closed")
)
