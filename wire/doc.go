// Package wire parses and builds the Erlang distribution messages that distgate
// needs to see: the first handshake message (send_name, in its 'N' and 'n'
// layouts), the rest of the handshake up to the node's challenge_ack (status,
// challenge, complement, challenge_reply, challenge_ack frames, and the cookie
// digest), and the few epmd requests used by the probe.
//
// Watch follows a handshake frame by frame, in both directions, to its outcome
// (ok, auth_failed, refused, aborted, protocol_error); SplitFrame cuts those
// frames out of a byte stream, with the 2-byte headers of plain TCP or the
// 4-byte headers that OTP uses inside TLS.
//
// Everything here is pure: no sockets, no clocks, no deadlines. References are
// to the Erlang distribution protocol (erl_dist_protocol.md), to OTP's
// dist_util.erl, and by section number (§) to erlang-dist-facts.md, which
// holds the bytes captured from real nodes.
package wire
