// Package tlshello reads the first flight of a TLS client: the handshake
// records that carry its ClientHello. It is pure (no sockets): Need tells a
// reader how many more bytes to read, exactly, and Parse decodes what was
// read. A gate uses it to tell a TLS client from anything else before it
// decides, and to learn the server name (SNI) a passthrough gate admits on
// (erlang-dist-facts.md §12.3: OTP's inet_tls_dist always sends the host
// part of the target node's name there).
//
// The rules are those of RFC 8446 §4.1.2 and §5.1 (and RFC 5246, which has
// the same layout), applied strictly: a gate has no reason to be lenient
// with a first flight, and every byte it accepts is forwarded or handed to
// crypto/tls.
package tlshello

import (
	"encoding/binary"
	"errors"
)

// Sizes.
const (
	// RecordHeader is the size of a TLS record header: type(1)
	// legacy_record_version(2) length(2).
	RecordHeader = 5
	// MaxSize caps the records that carry one ClientHello, headers
	// included. A ClientHello is a few hundred bytes (OTP 25's is 263, Go's
	// with a post-quantum key share about 1.8 KiB); 16 KiB leaves room for
	// any real one and no more.
	MaxSize = 16 << 10
	// maxRecord is the largest plaintext record body (RFC 8446 §5.1).
	maxRecord = 1 << 14
	// maxServerName is the longest host name: a DNS name is at most 253
	// bytes, and a node name's host part at most 255.
	maxServerName = 255
)

const (
	recordHandshake      = 0x16
	typeClientHello      = 1
	extServerName        = 0
	extSupportedVersions = 43
	hostName             = 0 // server_name's name_type
	handshakeHeader      = 4 // msg_type(1) length(3)
)

// Errors. Every one means "not a TLS ClientHello" to a gate.
var (
	ErrNotTLS    = errors.New("tlshello: not a TLS handshake record")
	ErrNotHello  = errors.New("tlshello: the first handshake message is not a ClientHello")
	ErrTooLong   = errors.New("tlshello: ClientHello over the size cap")
	ErrMalformed = errors.New("tlshello: malformed ClientHello")
)

// Hello is what a ClientHello says that a gate cares about.
type Hello struct {
	// Version is legacy_version: 0x0303 for TLS 1.2 and for TLS 1.3
	// clients alike.
	Version uint16
	// Versions is the supported_versions extension (TLS 1.3 clients send
	// it); nil when absent, which means TLS 1.2 or older only, as OTP 25
	// sends (§12.3).
	Versions []uint16
	// ServerName is the host_name of the server_name extension (SNI), ""
	// when the client sent none. It is visible ASCII, as sent.
	ServerName string
	// Extensions are the extension types in the order sent.
	Extensions []uint16
	// Len is the number of bytes the records carrying the ClientHello
	// take, headers included: what Parse was given.
	Len int
}

// Need reports how many more bytes b, the start of a connection, must get
// before it holds the ClientHello whole: 0 when it does. Asked after each
// read, it never asks for a byte past the record that ends the ClientHello,
// so a reader that reads exactly what it is told leaves everything after
// the first flight unread. It fails as soon as b shows that it is not a
// ClientHello, or that the ClientHello would be over MaxSize. It walks b
// from the start; a reader that asks after every read uses a Scanner.
func Need(b []byte) (int, error) {
	var s Scanner
	return s.Need(b)
}

// Scanner is Need for a reader that asks after every read: it remembers the
// records already checked, so the work for a whole first flight is linear
// in its records however finely they are cut. The zero value is ready; one
// Scanner follows one buffer, which only grows between calls.
type Scanner struct {
	off  int                   // start of the first record not yet taken in whole
	have int                   // handshake bytes in the records taken in
	hdr  [handshakeHeader]byte // the handshake header, as far as it is in
}

// Need is the package's Need for b, which holds what the previous call saw
// and possibly more.
func (s *Scanner) Need(b []byte) (int, error) {
	for {
		rest := b[s.off:]
		if err := checkRecordHeader(rest); err != nil {
			return 0, err
		}
		if len(rest) < RecordHeader {
			return RecordHeader - len(rest), nil
		}
		n := int(binary.BigEndian.Uint16(rest[3:5]))
		end := s.off + RecordHeader + n
		if end > MaxSize {
			return 0, ErrTooLong
		}
		if len(b) < end {
			return end - len(b), nil
		}
		// The handshake header may itself be split across records.
		frag := rest[RecordHeader : RecordHeader+n]
		for i := 0; s.have+i < handshakeHeader && i < len(frag); i++ {
			s.hdr[s.have+i] = frag[i]
		}
		s.have += n
		s.off = end
		if s.hdr[0] != typeClientHello {
			return 0, ErrNotHello
		}
		if s.have >= handshakeHeader {
			msg := handshakeHeader + (int(s.hdr[1])<<16 | int(s.hdr[2])<<8 | int(s.hdr[3]))
			switch {
			case msg > MaxSize:
				return 0, ErrTooLong
			case s.have > msg:
				// A client sends nothing with its ClientHello: it waits
				// for the server's flight. A record that carries more is
				// not a first flight.
				return 0, ErrMalformed
			case s.have == msg:
				if end != len(b) {
					return 0, ErrMalformed // bytes past the hello: not what was asked for
				}
				return 0, nil
			}
		}
		if s.off == len(b) {
			return RecordHeader, nil
		}
	}
}

// checkRecordHeader vets as much of a record header as b holds: a
// handshake record, a TLS record version (3.x), and a length neither zero
// (RFC 8446 §5.1 forbids empty handshake fragments) nor over 2^14.
func checkRecordHeader(b []byte) error {
	if len(b) >= 1 && b[0] != recordHandshake {
		return ErrNotTLS
	}
	if len(b) >= 2 && b[1] != 3 {
		return ErrNotTLS
	}
	if len(b) >= 3 && b[2] > 4 {
		return ErrNotTLS
	}
	if len(b) >= RecordHeader {
		if n := int(binary.BigEndian.Uint16(b[3:5])); n == 0 || n > maxRecord {
			return ErrNotTLS
		}
	}
	return nil
}

// Parse decodes b, which must be exactly the records of one ClientHello
// (Need(b) returned 0). The returned Hello does not alias b.
func Parse(b []byte) (Hello, error) {
	if need, err := Need(b); err != nil {
		return Hello{}, err
	} else if need != 0 {
		return Hello{}, ErrMalformed
	}
	// The handshake message, whole: aliased when one record carries it,
	// else gathered from the fragments.
	var msg []byte
	if n := int(binary.BigEndian.Uint16(b[3:5])); RecordHeader+n == len(b) {
		msg = b[RecordHeader:]
	} else {
		msg = make([]byte, 0, len(b))
		for off := 0; off < len(b); {
			n := int(binary.BigEndian.Uint16(b[off+3 : off+5]))
			msg = append(msg, b[off+RecordHeader:off+RecordHeader+n]...)
			off += RecordHeader + n
		}
	}
	h, err := parseClientHello(msg[handshakeHeader:])
	h.Len = len(b)
	return h, err
}

// reader takes big-endian fields off the front of a byte slice; every
// method reports false once the slice is too short.
type reader []byte

func (r *reader) u8() (int, bool) {
	if len(*r) < 1 {
		return 0, false
	}
	v := (*r)[0]
	*r = (*r)[1:]
	return int(v), true
}

func (r *reader) u16() (int, bool) {
	if len(*r) < 2 {
		return 0, false
	}
	v := binary.BigEndian.Uint16(*r)
	*r = (*r)[2:]
	return int(v), true
}

func (r *reader) bytes(n int) ([]byte, bool) {
	if len(*r) < n {
		return nil, false
	}
	v := (*r)[:n]
	*r = (*r)[n:]
	return v, true
}

// vec takes a vector behind a length of lenSize bytes (1 or 2).
func (r *reader) vec(lenSize int) (reader, bool) {
	var n int
	var ok bool
	if lenSize == 1 {
		n, ok = r.u8()
	} else {
		n, ok = r.u16()
	}
	if !ok {
		return nil, false
	}
	v, ok := r.bytes(n)
	return reader(v), ok
}

// parseClientHello decodes the body of a ClientHello (after its handshake
// header): legacy_version, random, legacy_session_id,
// cipher_suites, legacy_compression_methods, then extensions, if any.
func parseClientHello(body []byte) (Hello, error) {
	var h Hello
	r := reader(body)
	v, ok := r.u16()
	if !ok || v>>8 != 3 {
		return h, ErrMalformed
	}
	h.Version = uint16(v)
	if _, ok := r.bytes(32); !ok { // random
		return h, ErrMalformed
	}
	if sid, ok := r.vec(1); !ok || len(sid) > 32 {
		return h, ErrMalformed
	}
	if cs, ok := r.vec(2); !ok || len(cs) < 2 || len(cs)%2 != 0 {
		return h, ErrMalformed
	}
	if cm, ok := r.vec(1); !ok || len(cm) < 1 {
		return h, ErrMalformed
	}
	if len(r) == 0 {
		return h, nil // no extensions: allowed before TLS 1.3
	}
	exts, ok := r.vec(2)
	if !ok || len(r) != 0 {
		return h, ErrMalformed
	}
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		data, ok2 := exts.vec(2)
		if !ok1 || !ok2 {
			return h, ErrMalformed
		}
		for _, t := range h.Extensions {
			if int(t) == typ {
				return h, ErrMalformed // RFC 8446 §4.2: at most one of each type
			}
		}
		h.Extensions = append(h.Extensions, uint16(typ))
		var err error
		switch typ {
		case extServerName:
			h.ServerName, err = parseServerName(data)
		case extSupportedVersions:
			h.Versions, err = parseVersions(data)
		}
		if err != nil {
			return h, err
		}
	}
	return h, nil
}

// parseServerName decodes the server_name extension (RFC 6066 §3): a
// non-empty list holding at most one host_name, which must be a non-empty
// visible-ASCII name without a trailing dot, at most 255 bytes. Other name
// types are skipped, as crypto/tls does.
func parseServerName(data reader) (string, error) {
	list, ok := data.vec(2)
	if !ok || len(data) != 0 || len(list) == 0 {
		return "", ErrMalformed
	}
	var name []byte
	for len(list) > 0 {
		typ, ok1 := list.u8()
		n, ok2 := list.vec(2)
		if !ok1 || !ok2 {
			return "", ErrMalformed
		}
		if typ != hostName {
			continue
		}
		if name != nil || len(n) == 0 || len(n) > maxServerName || n[len(n)-1] == '.' {
			return "", ErrMalformed
		}
		for _, c := range n {
			if c <= 0x20 || c >= 0x7f {
				return "", ErrMalformed
			}
		}
		name = n
	}
	return string(name), nil
}

// parseVersions decodes the ClientHello form of supported_versions (RFC
// 8446 §4.2.1): a non-empty list of 2-byte versions behind a 1-byte length.
func parseVersions(data reader) ([]uint16, error) {
	list, ok := data.vec(1)
	if !ok || len(data) != 0 || len(list) < 2 || len(list)%2 != 0 {
		return nil, ErrMalformed
	}
	vs := make([]uint16, 0, len(list)/2)
	for len(list) > 0 {
		v, _ := list.u16()
		vs = append(vs, uint16(v))
	}
	return vs, nil
}
