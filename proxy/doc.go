// Package proxy owns distgate's sockets: the accept loop of each gate, the
// exact read of the first handshake message under a deadline, the dial to the
// upstream node and the zero-copy splice between the two raw TCP connections.
// Decisions are delegated to package policy.
package proxy
