// Package wire parses and builds the Erlang distribution messages that distgate
// needs to see: the first handshake message (send_name, in its 'N' and 'n'
// layouts), the rest of the handshake up to the node's challenge_ack (status,
// challenge, complement, challenge_reply and challenge_ack frames, the cookie
// digest, and SplitFrame to cut them out of a stream), and the few epmd
// requests used by the probe.
//
// Everything here is pure: no sockets, no clocks, no deadlines. References are
// to the Erlang distribution protocol (erl_dist_protocol.md), to OTP's
// dist_util.erl, and by section number (§) to erlang-dist-facts.md, which
// holds the bytes captured from real nodes.
package wire
