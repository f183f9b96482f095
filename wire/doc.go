// Package wire parses and builds the Erlang distribution messages that distgate
// needs to see: the first handshake message (send_name, in its 'N' and 'n'
// layouts), the status frames, and the few epmd requests used by the probe.
//
// Everything here is pure: no sockets, no clocks, no deadlines. References are
// to the Erlang distribution protocol (erl_dist_protocol.md), to OTP's
// dist_util.erl, and by section number (§) to erlang-dist-facts.md, which
// holds the bytes captured from real nodes.
package wire
