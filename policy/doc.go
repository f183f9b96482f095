// Package policy decides whether a connection may pass a gate: the source
// allowlist, node-name globs, required capability flags, per-source token
// buckets and concurrency caps. It is pure decision logic over netip.Addr and
// decoded handshakes; it owns no sockets and reads no clock it was not given.
package policy
