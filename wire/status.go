package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// TagStatus is the tag of a recv_status frame ('s'), which the acceptor sends
// right after the first message, and of the client's answer to alive
// (erlang-dist-facts.md §2.2, §11.3).
const TagStatus = 's'

// ErrStatus is returned by ParseStatus for a frame that is not a status.
var ErrStatus = errors.New("wire: not a recv_status frame")

// Status is a decoded status frame body. Text is the status word: ok,
// ok_simultaneous, nok, not_allowed, alive, or named: (whose Name and
// Creation are then set) from the node; true or false from the client. Text,
// Name and Extra alias the buffer given to ParseStatus.
type Status struct {
	Text     []byte
	Name     []byte // named: only, the node name granted
	Creation uint32 // named: only
	Extra    []byte // named: only, trailing bytes that receivers ignore
}

// The status words (dist_util recv_status).
const (
	StatusOK             = "ok"
	StatusOKSimultaneous = "ok_simultaneous"
	StatusNOK            = "nok"
	StatusNotAllowed     = "not_allowed"
	StatusAlive          = "alive"
	StatusNamed          = "named:"
	// The initiator's answer to alive.
	StatusTrue  = "true"
	StatusFalse = "false"
)

// ParseStatus decodes the body of a status frame (after the length header):
// 's' then the status text, or 's' "named:" Nlen(2) Name Creation(4) with any
// trailing bytes in Extra (OTP's initiator ignores them). The text and the
// granted name must be visible ASCII.
func ParseStatus(body []byte) (Status, error) {
	if len(body) < 2 || body[0] != TagStatus {
		return Status{}, ErrStatus
	}
	text := body[1:]
	if bytes.HasPrefix(text, []byte(StatusNamed)) {
		rest := text[len(StatusNamed):]
		if len(rest) < 2 {
			return Status{}, ErrStatus
		}
		n := int(rest[0])<<8 | int(rest[1])
		if len(rest) < 2+n+4 || n == 0 || n > MaxNameLen {
			return Status{}, ErrStatus
		}
		name := rest[2 : 2+n]
		for _, c := range name {
			if !Printable(c) {
				return Status{}, ErrStatus
			}
		}
		cr := rest[2+n : 2+n+4]
		s := Status{
			Text:     text[:len(StatusNamed)],
			Name:     name,
			Creation: uint32(cr[0])<<24 | uint32(cr[1])<<16 | uint32(cr[2])<<8 | uint32(cr[3]),
		}
		if extra := rest[2+n+4:]; len(extra) > 0 {
			s.Extra = extra
		}
		return s, nil
	}
	for _, c := range text {
		if !Printable(c) {
			return Status{}, ErrStatus
		}
	}
	return Status{Text: text}, nil
}

// AppendStatus appends the body of s (no length header) to dst: 's' and the
// word, or for named: the name, creation and trailing bytes.
// ParseStatus(AppendStatus(nil, s)) gives s back for any s that ParseStatus
// accepted. Fields the word cannot carry are an error rather than dropped.
func AppendStatus(dst []byte, s Status) ([]byte, error) {
	if len(s.Text) == 0 {
		return dst, ErrStatus
	}
	dst = append(dst, TagStatus)
	if !s.Is(StatusNamed) {
		if len(s.Name) > 0 || s.Creation != 0 || len(s.Extra) > 0 {
			return dst[:len(dst)-1], fmt.Errorf("%w: only named: carries a name, a creation or trailing bytes", ErrStatus)
		}
		return append(dst, s.Text...), nil
	}
	if len(s.Name) > 0xffff {
		return dst[:len(dst)-1], ErrNameLong
	}
	dst = append(dst, StatusNamed...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s.Name)))
	dst = append(dst, s.Name...)
	dst = binary.BigEndian.AppendUint32(dst, s.Creation)
	return append(dst, s.Extra...), nil
}

// Is reports whether the status word is w.
func (s Status) Is(w string) bool { return string(s.Text) == w }
