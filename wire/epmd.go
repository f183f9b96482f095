package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// epmd, the Erlang port mapper, answers on TCP port 4369 by default. A
// request is a 2-byte length and the request; the reply has no length
// prefix and epmd closes the connection after it (erl_dist_protocol.md,
// "EPMD Protocol"; erlang-dist-facts.md §5).
const (
	// EpmdPort is epmd's default port (ERL_EPMD_PORT changes it).
	EpmdPort = 4369
	// EpmdNamesReq is the NAMES_REQ request code ('n').
	EpmdNamesReq = 110
	// MaxNamesReply caps how much of a NAMES reply a reader should keep.
	// Each line is at most about 30 bytes plus the name, so this holds
	// hundreds of nodes; a longer reply is not from a sane epmd.
	MaxNamesReply = 64 << 10
)

// Errors returned by ParseNames.
var (
	ErrNamesShort = errors.New("wire: epmd NAMES reply shorter than its 4-byte port")
	ErrNamesLine  = errors.New("wire: epmd NAMES reply line is not \"name NAME at port PORT\"")
)

// AppendNamesRequest appends a whole NAMES_REQ (length prefix included) to
// dst: 00 01 6e, what `echo -ne "\x00\x01\x6e" | nc HOST 4369` sends.
func AppendNamesRequest(dst []byte) []byte {
	return append(dst, 0, 1, EpmdNamesReq)
}

// EpmdNode is one node registered with epmd: its alive name (the part before
// the '@'; epmd never sees the host) and its distribution port.
type EpmdNode struct {
	Name string
	Port uint16
}

// Names is a decoded NAMES reply.
type Names struct {
	// EpmdPort is the port epmd says it listens on (the first four bytes).
	EpmdPort uint32
	// Nodes are the registered nodes, in the order epmd listed them.
	Nodes []EpmdNode
}

// ParseNames decodes a complete NAMES reply: a 4-byte big-endian port, then
// one line "name <alive> at port <port>\n" per registered node (epmd_srv.c,
// EPMD_NAMES_REQ). A name may itself contain spaces, so the port is taken
// from the last " at port " of a line. A last line without its newline is
// accepted, since a reader may have stopped at a byte cap. On ErrNamesLine
// the nodes before the bad line are returned too.
func ParseNames(b []byte) (Names, error) {
	var n Names
	if len(b) < 4 {
		return n, ErrNamesShort
	}
	n.EpmdPort = binary.BigEndian.Uint32(b[:4])
	rest := b[4:]
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		node, err := parseNamesLine(line)
		if err != nil {
			return n, fmt.Errorf("%w: %q", ErrNamesLine, line)
		}
		n.Nodes = append(n.Nodes, node)
	}
	return n, nil
}

func parseNamesLine(line []byte) (EpmdNode, error) {
	const prefix, mid = "name ", " at port "
	if !bytes.HasPrefix(line, []byte(prefix)) {
		return EpmdNode{}, ErrNamesLine
	}
	line = line[len(prefix):]
	i := bytes.LastIndex(line, []byte(mid))
	if i <= 0 {
		return EpmdNode{}, ErrNamesLine
	}
	port, err := strconv.ParseUint(string(line[i+len(mid):]), 10, 16)
	if err != nil {
		return EpmdNode{}, ErrNamesLine
	}
	return EpmdNode{Name: string(line[:i]), Port: uint16(port)}, nil
}

// AppendNames encodes n as epmd would send it; ParseNames(AppendNames(nil, n))
// gives n back when no name contains a newline or " at port ".
func AppendNames(dst []byte, n Names) []byte {
	dst = binary.BigEndian.AppendUint32(dst, n.EpmdPort)
	for _, nd := range n.Nodes {
		dst = append(dst, "name "...)
		dst = append(dst, nd.Name...)
		dst = append(dst, " at port "...)
		dst = strconv.AppendUint(dst, uint64(nd.Port), 10)
		dst = append(dst, '\n')
	}
	return dst
}
