package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame limits for the first handshake message.
const (
	// MaxBody caps the declared length of the first message. A genuine one is
	// at most 15+255 bytes ('N') or 7+255 bytes ('n'); 'N' may carry ignored
	// trailing bytes, so the cap leaves room for them without letting a
	// client make us buffer more than 1 KiB.
	MaxBody = 1024
	// MaxFrame is MaxBody plus the 2-byte length prefix.
	MaxFrame = 2 + MaxBody
	// MaxNameLen is the longest node name: a node name is an atom, and an atom
	// holds at most 255 characters (sent as Latin-1 bytes).
	MaxNameLen = 255

	// TagNew is the protocol v6 send_name tag (OTP 23+).
	TagNew = 'N'
	// TagOld is the legacy v5 send_name tag (what scanners send).
	TagOld = 'n'
	// TLSRecord is the first byte of a TLS handshake record, which is what a
	// node started with -proto_dist inet_tls sends first.
	TLSRecord = 0x16

	headerNew = 15 // tag(1) flags(8) creation(4) nlen(2)
	headerOld = 7  // tag(1) version(2) flags(4)
)

// Errors returned by Parse and CheckLength. All of them mean "not a genuine
// first message" and are reported as bad_handshake.
var (
	ErrShort    = errors.New("wire: message shorter than its layout")
	ErrLength   = errors.New("wire: length prefix does not match the message")
	ErrTooLong  = errors.New("wire: declared length over the cap")
	ErrTLS      = errors.New("wire: TLS record, not a distribution handshake")
	ErrTag      = errors.New("wire: unknown first message tag")
	ErrName     = errors.New("wire: malformed node name")
	ErrNameLong = errors.New("wire: node name over 255 bytes")
)

// ScannerProbe is the whole first message (length prefix included) that
// internet scanners send: the CouchDB-era exploit probe of CVE-2022-24706, also
// in a Metasploit module. It is a legacy 'n' send_name with version 7 (the
// spec says 5; a handy fingerprint), flags 0x0003499C (no HANDSHAKE_23, so
// every OTP 25+ node refuses it) and the name AAAAAA@AAAAAAA
// (erlang-dist-facts.md §4). Tests, the probe command and the stress tools take
// it from here so that they all send exactly these 23 bytes. Do not modify it.
var ScannerProbe = []byte("\x00\x15n\x00\x07\x00\x03\x49\x9cAAAAAA@AAAAAAA")

// Handshake is a decoded first message (send_name). Name and Extra alias the
// buffer given to Parse; copy them if they must outlive it.
type Handshake struct {
	Tag      byte   // TagNew or TagOld
	Version  uint16 // 'n' only: the version field (5 in the spec, 7 from the CouchDB scanner)
	Flags    uint64 // capability flags; only the low 32 bits exist in an 'n' message
	Creation uint32 // 'N' only
	Name     []byte // name@host, or just host when NAME_ME is set
	Extra    []byte // 'N' only: trailing bytes that receivers ignore
}

// Hidden reports whether the caller is a hidden node (PUBLISHED unset), as remote
// shells and rpc helpers are.
func (h *Handshake) Hidden() bool { return h.Flags&FlagPublished == 0 }

// NameMe reports whether the caller asks for a dynamic name: Name is then only
// a host.
func (h *Handshake) NameMe() bool { return h.Tag == TagNew && h.Flags&FlagNameMe != 0 }

// CheckLength vets the 2-byte length prefix before any body byte is read, so a
// reader knows how much to read and never reads more than MaxBody.
func CheckLength(prefix [2]byte) (int, error) {
	if prefix[0] == TLSRecord {
		return 0, ErrTLS
	}
	n := int(binary.BigEndian.Uint16(prefix[:]))
	if n > MaxBody {
		return 0, ErrTooLong
	}
	if n < headerOld+3 { // the shortest genuine message: 'n' with name "a@b"
		return 0, ErrShort
	}
	return n, nil
}

// Parse decodes a whole first message: the 2-byte length prefix followed by
// exactly that many bytes. It applies the checks OTP's acceptor applies before
// answering (dist_util recv_name), plus a few of its own: the name is printable
// ASCII and at most 255 bytes.
func Parse(frame []byte) (Handshake, error) {
	if len(frame) < 2 {
		return Handshake{}, ErrShort
	}
	n, err := CheckLength([2]byte{frame[0], frame[1]})
	if err != nil {
		return Handshake{}, err
	}
	if len(frame)-2 != n {
		return Handshake{}, ErrLength
	}
	return parseBody(frame[2:])
}

func parseBody(b []byte) (Handshake, error) {
	var h Handshake
	h.Tag = b[0]
	switch h.Tag {
	case TagNew:
		if len(b) < headerNew {
			return h, ErrShort
		}
		h.Flags = binary.BigEndian.Uint64(b[1:9])
		h.Creation = binary.BigEndian.Uint32(b[9:13])
		nlen := int(binary.BigEndian.Uint16(b[13:15]))
		if headerNew+nlen > len(b) {
			return h, ErrLength
		}
		h.Name = b[headerNew : headerNew+nlen]
		if rest := b[headerNew+nlen:]; len(rest) > 0 {
			h.Extra = rest
		}
	case TagOld:
		if len(b) < headerOld {
			return h, ErrShort
		}
		h.Version = binary.BigEndian.Uint16(b[1:3])
		h.Flags = uint64(binary.BigEndian.Uint32(b[3:7]))
		h.Name = b[headerOld:]
	case TLSRecord:
		return h, ErrTLS
	default:
		return h, ErrTag
	}
	if err := checkName(h.Name, h.NameMe()); err != nil {
		return h, err
	}
	return h, nil
}

// checkName enforces the shape OTP requires (exactly one '@' with non-empty
// parts, or a bare non-empty host for a dynamic-name request) and refuses any
// byte outside visible ASCII. OTP itself would take such names as atoms, but no
// release, remote shell or rpc helper sends one, and refusing them keeps
// control characters and newlines out of every log line.
func checkName(name []byte, nameMe bool) error {
	if len(name) == 0 {
		return ErrName
	}
	if len(name) > MaxNameLen {
		return ErrNameLong
	}
	at := -1
	for i, c := range name {
		if !Printable(c) {
			return ErrName
		}
		if c == '@' {
			if at >= 0 {
				return ErrName
			}
			at = i
		}
	}
	if nameMe {
		if at >= 0 {
			return ErrName
		}
		return nil
	}
	if at <= 0 || at == len(name)-1 {
		return ErrName
	}
	return nil
}

// Printable reports whether c may appear in a node name that distgate accepts:
// visible ASCII (0x21–0x7e). Everything else is refused as bad_handshake, which
// also means no accepted name can carry a byte that would forge a log line.
func Printable(c byte) bool { return c > 0x20 && c < 0x7f }

// Append encodes h as a whole first message (length prefix included) onto dst.
// Parse(Append(nil, h)) gives h back for any h that Parse accepted.
func Append(dst []byte, h Handshake) ([]byte, error) {
	var body int
	switch h.Tag {
	case TagNew:
		body = headerNew + len(h.Name) + len(h.Extra)
	case TagOld:
		if len(h.Extra) > 0 {
			return dst, fmt.Errorf("%w: 'n' messages carry no trailing bytes", ErrLength)
		}
		if h.Flags>>32 != 0 {
			return dst, fmt.Errorf("wire: 'n' messages carry only 32 flag bits, got %#x", h.Flags)
		}
		body = headerOld + len(h.Name)
	default:
		return dst, ErrTag
	}
	if body > MaxBody {
		return dst, ErrTooLong
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(body))
	dst = append(dst, h.Tag)
	if h.Tag == TagNew {
		dst = binary.BigEndian.AppendUint64(dst, h.Flags)
		dst = binary.BigEndian.AppendUint32(dst, h.Creation)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(h.Name)))
		dst = append(dst, h.Name...)
		dst = append(dst, h.Extra...)
	} else {
		dst = binary.BigEndian.AppendUint16(dst, h.Version)
		dst = binary.BigEndian.AppendUint32(dst, uint32(h.Flags))
		dst = append(dst, h.Name...)
	}
	return dst, nil
}
