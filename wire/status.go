package wire

import (
	"bytes"
	"errors"
)

// TagStatus is the tag of a recv_status frame ('s'), which the acceptor sends
// right after the first message (erlang-dist-facts.md §2.2).
const TagStatus = 's'

// ErrStatus is returned by ParseStatus for a frame that is not a status.
var ErrStatus = errors.New("wire: not a recv_status frame")

// Status is a decoded status frame body. Text is the status word: ok,
// ok_simultaneous, nok, not_allowed, alive, or named: (whose Name and
// Creation are then set). Text aliases the buffer given to ParseStatus.
type Status struct {
	Text     []byte
	Name     []byte // named: only, the node name granted
	Creation uint32 // named: only
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

// ParseStatus decodes the body of a status frame (after the 2-byte length):
// 's' then the status text, or 's' "named:" Nlen(2) Name Creation(4) with
// trailing bytes ignored. The text must be visible ASCII.
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
		return Status{
			Text:     text[:len(StatusNamed)],
			Name:     name,
			Creation: uint32(cr[0])<<24 | uint32(cr[1])<<16 | uint32(cr[2])<<8 | uint32(cr[3]),
		}, nil
	}
	for _, c := range text {
		if !Printable(c) {
			return Status{}, ErrStatus
		}
	}
	return Status{Text: text}, nil
}

// Is reports whether the status word is w.
func (s Status) Is(w string) bool { return string(s.Text) == w }
