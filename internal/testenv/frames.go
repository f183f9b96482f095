package testenv

// The handshake frames after the first message, built and read here by
// hand from their layouts (erlang-dist-facts.md §2.2–2.6 and the captured
// exchange in §11.1) until package wire has encoders and parsers for
// them. Everything else in this package goes through these functions, so
// switching to wire's means changing this file only.

import (
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/distgate/distgate/wire"
)

// Tags of the frames after the first message.
const (
	tagChallenge = 'N' // send_challenge, new layout (§2.3); what OTP 25+ sends
	tagReply     = 'r' // challenge_reply (§2.5)
	tagAck       = 'a' // challenge_ack (§2.6)
)

// frame prefixes body with its 2-byte length.
func frame(dst []byte, body ...[]byte) []byte {
	n := 0
	for _, b := range body {
		n += len(b)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	for _, b := range body {
		dst = append(dst, b...)
	}
	return dst
}

// appendStatus appends a recv_status frame: 's' and the status word.
func appendStatus(dst []byte, status string) []byte {
	return frame(dst, []byte{wire.TagStatus}, []byte(status))
}

// appendChallenge appends a new-layout send_challenge frame: 'N', the
// acceptor's flags (8), its challenge (4), its creation (4), the length of
// its name (2) and the name.
func appendChallenge(dst []byte, flags uint64, challenge, creation uint32, name string) []byte {
	var b [19]byte
	b[0] = tagChallenge
	binary.BigEndian.PutUint64(b[1:], flags)
	binary.BigEndian.PutUint32(b[9:], challenge)
	binary.BigEndian.PutUint32(b[13:], creation)
	binary.BigEndian.PutUint16(b[17:], uint16(len(name)))
	return frame(dst, b[:], []byte(name))
}

// appendReply appends a challenge_reply frame: 'r', the initiator's own
// challenge (4) and its digest of the acceptor's challenge (16).
func appendReply(dst []byte, challenge uint32, digest [16]byte) []byte {
	var b [5]byte
	b[0] = tagReply
	binary.BigEndian.PutUint32(b[1:], challenge)
	return frame(dst, b[:], digest[:])
}

// appendAck appends a challenge_ack frame: 'a' and the acceptor's digest
// of the initiator's challenge (16).
func appendAck(dst []byte, digest [16]byte) []byte {
	return frame(dst, []byte{tagAck}, digest[:])
}

// digest is md5 over the cookie followed by the challenge as an unsigned
// decimal string (§2.6).
func digest(cookie string, challenge uint32) [16]byte {
	return md5.Sum([]byte(cookie + strconv.FormatUint(uint64(challenge), 10)))
}

var errFrame = errors.New("unexpected handshake frame")

// readFrame reads one 2-byte-framed message into buf (grown as needed) and
// returns its body. It reads exactly the frame, never beyond it, so what
// follows stays in the socket for the caller.
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var pre [2]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(pre[:]))
	if n == 0 {
		return nil, fmt.Errorf("%w: empty", errFrame)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// parseChallenge returns the acceptor's challenge from a send_challenge
// body.
func parseChallenge(body []byte) (uint32, error) {
	if len(body) < 19 || body[0] != tagChallenge {
		return 0, fmt.Errorf("%w: want a challenge, got % x", errFrame, body[:min(len(body), 19)])
	}
	return binary.BigEndian.Uint32(body[9:]), nil
}

// parseReply returns the initiator's challenge from a challenge_reply body.
func parseReply(body []byte) (uint32, error) {
	if len(body) != 21 || body[0] != tagReply {
		return 0, fmt.Errorf("%w: want a challenge reply, got % x", errFrame, body[:min(len(body), 21)])
	}
	return binary.BigEndian.Uint32(body[1:]), nil
}

// isAck reports whether body is a challenge_ack.
func isAck(body []byte) bool { return len(body) == 17 && body[0] == tagAck }
