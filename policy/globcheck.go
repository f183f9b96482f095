package policy

import (
	"fmt"
	"strings"
)

// GlobKind says what a glob is matched against, which decides what it can
// never match.
type GlobKind int

// The kinds of value a glob is matched against.
const (
	// GlobName: a node name, visible ASCII (0x21–0x7e) with exactly one
	// '@'; anything else is refused as bad_handshake before names are
	// checked.
	GlobName GlobKind = iota
	// GlobHost: a TLS server name, a host name (visible ASCII).
	GlobHost
	// GlobIdentity: a certificate's CN or SAN, which may hold spaces.
	GlobIdentity
)

// NeverMatches returns why g can never match a value of the given kind, or
// "" if it can. It catches
// the mistakes that make an allow entry silently useless: a class whose
// range is backwards ("[z-a]"), a stray space, a name without its '@'.
func (g Glob) NeverMatches(kind GlobKind) string {
	pattern := g.pat
	if kind == GlobIdentity && strings.TrimSpace(pattern) != pattern {
		return "it has a leading or trailing space"
	}
	visible := func(c byte) bool { return 0x21 <= c && c <= 0x7e }
	ats, atWild := 0, false // literal '@'s; whether a wildcard can stand for one
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch c {
		case '*', '?':
			atWild = true
			continue
		case '[':
			end, ok := classEnd(pattern, i)
			if !ok {
				return "" // cannot happen for a compiled pattern; stay quiet
			}
			class := pattern[i : end+1]
			cg, err := CompileGlob(class)
			if err != nil {
				return ""
			}
			any := false
			for b := 0; b < 256; b++ {
				if (kind == GlobIdentity || visible(byte(b))) && cg.Match([]byte{byte(b)}) {
					any = true
					atWild = atWild || b == '@'
				}
			}
			if !any {
				if kind == GlobIdentity {
					return fmt.Sprintf("the class %q matches no byte", class)
				}
				return fmt.Sprintf("the class %q matches no visible ASCII byte", class)
			}
			i = end
			continue
		case '\\':
			i++
			c = pattern[i]
		}
		if kind != GlobIdentity && !visible(c) {
			return fmt.Sprintf("it holds %q, and %s", string([]byte{c}), map[GlobKind]string{
				GlobName: "node names are visible ASCII only",
				GlobHost: "host names are visible ASCII only",
			}[kind])
		}
		if c == '@' {
			ats++
		}
	}
	if kind == GlobName {
		switch {
		case ats > 1:
			return "it has more than one '@', and a node name has exactly one"
		case ats == 0 && !atWild:
			return "it has no '@' and no wildcard for one, and a node name is NAME@HOST"
		}
	}
	return ""
}
