package wire

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Handshake framing (erlang-dist-facts.md §1, §12).
const (
	// HeaderTCP is the length header of a handshake frame on a plain TCP
	// connection ({packet,2}).
	HeaderTCP = 2
	// HeaderTLS is the length header of a handshake frame inside TLS: OTP's
	// inet_tls_dist uses {packet,4} from the first frame on (§12.1).
	HeaderTLS = 4
	// MaxHandshakeFrame caps the body of any handshake frame after the first
	// message. The longest genuine one is a challenge or a named: status with
	// a 255-byte name, under 300 bytes; a longer length is refused before a
	// byte of the body is needed, so a peer cannot make the reader buffer more.
	MaxHandshakeFrame = 1024
)

// Tags of the handshake frames after the first message (§2). The challenge
// reuses TagNew and TagOld; the status frame is TagStatus.
const (
	TagComplement = 'c' // send_complement, §2.4
	TagReply      = 'r' // challenge_reply, §2.5
	TagAck        = 'a' // challenge_ack, §2.6
)

// Fixed body sizes, tag included (§2.3–§2.6).
const (
	DigestLen      = 16
	ComplementLen  = 9             // 'c' FlagsHigh(4) Creation(4)
	ReplyLen       = 5 + DigestLen // 'r' Challenge(4) Digest(16)
	AckLen         = 1 + DigestLen // 'a' Digest(16)
	challengeNewHd = 19            // 'N' Flags(8) Challenge(4) Creation(4) Nlen(2)
	challengeOldHd = 11            // 'n' Version(2) Flags(4) Challenge(4)
)

// Errors returned by SplitFrame, AppendFrame and the frame decoders.
var (
	ErrFrameHeader  = errors.New("wire: frame header size is neither 2 nor 4")
	ErrFrameTooLong = errors.New("wire: handshake frame over the cap")
	ErrFrameTag     = errors.New("wire: unexpected handshake frame tag")
	ErrFrameSize    = errors.New("wire: handshake frame of the wrong size for its tag")
)

// SplitFrame cuts the first whole frame off buf, a stream of frames each made
// of a hdr-byte big-endian length (HeaderTCP or HeaderTLS) and that many body
// bytes. It returns the body (aliasing buf) and n, the bytes the frame used
// (header included), so buf[n:] is what follows.
//
// n == 0 with a nil error means buf does not yet hold a whole frame: read more
// and call again. A frame is returned as soon as its last byte is in buf, so a
// reader never has to read past a frame to get it. A declared length over limit
// is ErrFrameTooLong as soon as the header is in, whatever follows. An empty
// body (a zero length) is returned as such; whether it is allowed is the
// caller's business (in the handshake it is not: Watch calls it
// protocol_error).
func SplitFrame(buf []byte, hdr, limit int) (body []byte, n int, err error) {
	if hdr != HeaderTCP && hdr != HeaderTLS {
		return nil, 0, ErrFrameHeader
	}
	if len(buf) < hdr {
		return nil, 0, nil
	}
	var size uint64
	if hdr == HeaderTCP {
		size = uint64(binary.BigEndian.Uint16(buf))
	} else {
		size = uint64(binary.BigEndian.Uint32(buf))
	}
	// Compared as uint64 before any conversion to int, so a 4-byte length
	// cannot wrap on a 32-bit platform.
	if limit < 0 || size > uint64(limit) {
		return nil, 0, ErrFrameTooLong
	}
	end := hdr + int(size)
	if len(buf) < end {
		return nil, 0, nil
	}
	return buf[hdr:end:end], end, nil
}

// AppendFrame appends body to dst behind a hdr-byte length header: what a
// gate that re-frames the handshake between TLS and plain TCP writes (§12.1),
// and what tests use to build a byte stream.
func AppendFrame(dst []byte, hdr int, body []byte) ([]byte, error) {
	switch {
	case hdr == HeaderTCP && len(body) <= 0xffff:
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(body)))
	case hdr == HeaderTLS && uint64(len(body)) <= 0xffffffff:
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	case hdr == HeaderTCP || hdr == HeaderTLS:
		return dst, ErrFrameTooLong
	default:
		return dst, ErrFrameHeader
	}
	return append(dst, body...), nil
}

// Challenge is a decoded send_challenge frame, the node's (acceptor's) second
// frame (§2.3). Name and Extra alias the body given to ParseChallenge.
type Challenge struct {
	Tag       byte   // TagNew ('N', OTP 23+) or TagOld ('n', legacy)
	Version   uint16 // 'n' only: the version field (5)
	Flags     uint64 // the node's flags; only the low 32 bits exist in an 'n' frame
	Challenge uint32 // the random number the client's digest is made from
	Creation  uint32 // 'N' only
	Name      []byte // the node's full name, name@host
	Extra     []byte // 'N' only: trailing bytes, which OTP's initiator ignores
}

// ParseChallenge decodes a challenge body (after the length header). In the
// 'N' layout the body is 19+Nlen bytes; trailing bytes after the name are kept
// in Extra, because OTP's own initiator accepts and ignores them
// (dist_util recv_challenge_new splits the name off and drops the residue). In
// the legacy 'n' layout the name is the rest of the body. The name must have
// the shape OTP gives a node's own name: printable ASCII, at most 255 bytes,
// exactly one '@' with non-empty parts (a node checks its own name part against
// [0-9A-Za-z_-]+ when it starts, §2.10).
func ParseChallenge(body []byte) (Challenge, error) {
	var c Challenge
	if len(body) == 0 {
		return c, ErrFrameSize
	}
	c.Tag = body[0]
	switch c.Tag {
	case TagNew:
		if len(body) < challengeNewHd {
			return c, ErrFrameSize
		}
		c.Flags = binary.BigEndian.Uint64(body[1:9])
		c.Challenge = binary.BigEndian.Uint32(body[9:13])
		c.Creation = binary.BigEndian.Uint32(body[13:17])
		nlen := int(binary.BigEndian.Uint16(body[17:19]))
		if challengeNewHd+nlen > len(body) {
			return c, ErrFrameSize
		}
		c.Name = body[challengeNewHd : challengeNewHd+nlen]
		if rest := body[challengeNewHd+nlen:]; len(rest) > 0 {
			c.Extra = rest
		}
	case TagOld:
		if len(body) < challengeOldHd {
			return c, ErrFrameSize
		}
		c.Version = binary.BigEndian.Uint16(body[1:3])
		c.Flags = uint64(binary.BigEndian.Uint32(body[3:7]))
		c.Challenge = binary.BigEndian.Uint32(body[7:11])
		c.Name = body[challengeOldHd:]
	default:
		return c, ErrFrameTag
	}
	if err := checkName(c.Name, false); err != nil {
		return c, err
	}
	return c, nil
}

// AppendChallenge appends the body of c (no length header) to dst.
// ParseChallenge(AppendChallenge(nil, c)) gives c back for any c that
// ParseChallenge accepted. Fields the layout cannot carry are an error rather
// than silently dropped.
func AppendChallenge(dst []byte, c Challenge) ([]byte, error) {
	switch c.Tag {
	case TagNew:
		if c.Version != 0 {
			return dst, fmt.Errorf("%w: 'N' challenges carry no version", ErrFrameSize)
		}
		if len(c.Name) > 0xffff {
			return dst, ErrNameLong
		}
		dst = append(dst, TagNew)
		dst = binary.BigEndian.AppendUint64(dst, c.Flags)
		dst = binary.BigEndian.AppendUint32(dst, c.Challenge)
		dst = binary.BigEndian.AppendUint32(dst, c.Creation)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(c.Name)))
		dst = append(dst, c.Name...)
		return append(dst, c.Extra...), nil
	case TagOld:
		if len(c.Extra) > 0 || c.Creation != 0 {
			return dst, fmt.Errorf("%w: 'n' challenges carry no creation and no trailing bytes", ErrFrameSize)
		}
		if c.Flags>>32 != 0 {
			return dst, fmt.Errorf("wire: 'n' challenges carry only 32 flag bits, got %#x", c.Flags)
		}
		dst = append(dst, TagOld)
		dst = binary.BigEndian.AppendUint16(dst, c.Version)
		dst = binary.BigEndian.AppendUint32(dst, uint32(c.Flags))
		dst = binary.BigEndian.AppendUint32(dst, c.Challenge)
		return append(dst, c.Name...), nil
	default:
		return dst, ErrFrameTag
	}
}

// Complement is a decoded send_complement frame: the high half of the flags
// and the creation of a client that opened with a legacy 'n' send_name and
// then received an 'N' challenge (§2.4).
type Complement struct {
	FlagsHigh uint32 // bits 32–63 of the client's flags
	Creation  uint32
}

// ParseComplement decodes a complement body: exactly 9 bytes, as OTP's
// recv_complement matches it.
func ParseComplement(body []byte) (Complement, error) {
	if len(body) == 0 || body[0] != TagComplement {
		return Complement{}, ErrFrameTag
	}
	if len(body) != ComplementLen {
		return Complement{}, ErrFrameSize
	}
	return Complement{
		FlagsHigh: binary.BigEndian.Uint32(body[1:5]),
		Creation:  binary.BigEndian.Uint32(body[5:9]),
	}, nil
}

// AppendComplement appends the 9-byte body of c to dst.
func AppendComplement(dst []byte, c Complement) []byte {
	dst = append(dst, TagComplement)
	dst = binary.BigEndian.AppendUint32(dst, c.FlagsHigh)
	return binary.BigEndian.AppendUint32(dst, c.Creation)
}

// Reply is a decoded challenge_reply frame, the client's last handshake frame
// (§2.5): its own challenge for the node, and its digest of the node's
// challenge.
type Reply struct {
	Challenge uint32 // the client's challenge; the node's 'a' digests it
	Digest    [DigestLen]byte
}

// ParseReply decodes a challenge_reply body: exactly 21 bytes.
func ParseReply(body []byte) (Reply, error) {
	var r Reply
	if len(body) == 0 || body[0] != TagReply {
		return r, ErrFrameTag
	}
	if len(body) != ReplyLen {
		return r, ErrFrameSize
	}
	r.Challenge = binary.BigEndian.Uint32(body[1:5])
	copy(r.Digest[:], body[5:])
	return r, nil
}

// AppendReply appends the 21-byte body of r to dst.
func AppendReply(dst []byte, r Reply) []byte {
	dst = append(dst, TagReply)
	dst = binary.BigEndian.AppendUint32(dst, r.Challenge)
	return append(dst, r.Digest[:]...)
}

// Ack is a decoded challenge_ack frame, the node's last handshake frame and
// the sign that the client is in (§2.6).
type Ack struct {
	Digest [DigestLen]byte // the node's digest of the client's challenge
}

// ParseAck decodes a challenge_ack body: exactly 17 bytes.
func ParseAck(body []byte) (Ack, error) {
	var a Ack
	if len(body) == 0 || body[0] != TagAck {
		return a, ErrFrameTag
	}
	if len(body) != AckLen {
		return a, ErrFrameSize
	}
	copy(a.Digest[:], body[1:])
	return a, nil
}

// AppendAck appends the 17-byte body of a to dst.
func AppendAck(dst []byte, a Ack) []byte {
	dst = append(dst, TagAck)
	return append(dst, a.Digest[:]...)
}

// Digest is the handshake digest: md5 of the cookie followed by the challenge
// written in unsigned decimal, as dist_util gen_digest computes it (§2.6,
// §11.2). The client's 'r' carries Digest(cookie, node's challenge); the
// node's 'a' carries Digest(cookie, client's challenge). The cookie is the
// text of the cookie atom, as bytes.
func Digest(cookie []byte, challenge uint32) [DigestLen]byte {
	// Built on the stack for any cookie up to 246 bytes (an Erlang cookie is
	// an atom, at most 255 characters), so computing it does not allocate.
	var buf [256]byte
	b := append(buf[:0], cookie...)
	b = strconv.AppendUint(b, uint64(challenge), 10)
	return md5.Sum(b)
}

// CheckDigest reports whether digest is Digest(cookie, challenge), comparing
// in constant time so the answer's timing says nothing about the right digest.
func CheckDigest(cookie []byte, challenge uint32, digest [DigestLen]byte) bool {
	want := Digest(cookie, challenge)
	return subtle.ConstantTimeCompare(want[:], digest[:]) == 1
}
