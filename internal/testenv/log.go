package testenv

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Line is one JSON log line of distgate, decoded.
type Line map[string]any

// Str returns a field as text ("" when absent); numbers print as Go does.
func (l Line) Str(k string) string {
	switch v := l[k].(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// Num returns a numeric field (0 when absent or not a number).
func (l Line) Num(k string) float64 {
	v, _ := l[k].(float64)
	return v
}

// ParseLog decodes the lines that are one JSON object each and counts
// those that are not.
func ParseLog(raw []string) (lines []Line, bad int) {
	lines = make([]Line, 0, len(raw))
	for _, s := range raw {
		var l Line
		if err := json.Unmarshal([]byte(s), &l); err != nil || l == nil {
			bad++
			continue
		}
		lines = append(lines, l)
	}
	return lines, bad
}

// Match is a predicate on a log line.
type Match func(Line) bool

// Msg matches lines whose message is m.
func Msg(m string) Match { return Field("message", m) }

// MsgPrefix matches lines whose message starts with p.
func MsgPrefix(p string) Match {
	return func(l Line) bool { return strings.HasPrefix(l.Str("message"), p) }
}

// Field matches lines whose field k prints as v.
func Field(k, v string) Match { return func(l Line) bool { return l.Str(k) == v } }

// Reason matches lines with reason r.
func Reason(r string) Match { return Field("reason", r) }

// NodeIs matches lines about the node name n.
func NodeIs(n string) Match { return Field("node", n) }

// From matches lines whose remote address has host ip.
func From(ip string) Match {
	return func(l Line) bool {
		h, _, err := net.SplitHostPort(l.Str("remote"))
		return err == nil && h == ip
	}
}

// All matches lines that every one of ms matches.
func All(ms ...Match) Match {
	return func(l Line) bool {
		for _, m := range ms {
			if !m(l) {
				return false
			}
		}
		return true
	}
}

// Filter returns the lines that match every one of ms.
func Filter(ls []Line, ms ...Match) []Line {
	var out []Line
	m := All(ms...)
	for _, l := range ls {
		if m(l) {
			out = append(out, l)
		}
	}
	return out
}
