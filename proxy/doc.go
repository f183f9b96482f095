// Package proxy owns distgate's sockets: the accept loop of each gate, the
// exact read of the first handshake message under a deadline (inside TLS
// on a terminating gate), the dial to the upstream node, the watch of the
// rest of the handshake to its outcome, and the hand-over of the two raw
// TCP connections to a forward.Forwarder (or, for a terminated TLS
// connection, to the gate's own user-space copy).
// Decisions are delegated to package policy, the handshake's judgement to
// wire.Watch.
//
// The files follow a connection through a gate; read them in this order:
//
//	gate.go      Gate, Config, NewGate, Update, Serve
//	accept.go    the accept loop and the checks on the peer address alone
//	             (steps 1–4, bans included), and the admission a passing
//	             connection holds
//	conn.go      one connection's life, top to bottom: the first message,
//	             flags, name, dial, the first message upstream, the
//	             handshake watch, forwarding, the end; and the TLS
//	             gates' own steps (terminate, passthrough)
//	tls.go       TLS at the gate: the first flight read exactly, the TLS
//	             handshake, the client certificate's identities, and the
//	             user-space forwarding of a terminated pair (path tls)
//	watch.go     the handshake watch: both directions frame by frame to
//	             the node's 'a' (or another outcome), re-framed between a
//	             TLS client's 4-byte frames and the node's 2-byte ones
//	sessions.go  live connections: revocation, the drain, byte counts
//	bans.go      failures, bans, and the methods the admin socket uses
//	logging.go   denied, admitted, handshake and closed lines, and denial
//	             sampling
//	status.go    a gate's state for the admin socket
//
// and, underneath: acceptor*.go (accept4 on Linux), handshake.go (the
// exact read), progress_*.go (TCP_INFO), settings.go, observer.go.
package proxy
