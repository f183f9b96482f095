package config

import (
	"fmt"
	"strings"

	"github.com/distgate/distgate/policy"
)

// globKind says what a glob is matched against, which decides what it can
// never match.
type globKind int

const (
	// globName: a node name, visible ASCII (0x21–0x7e) with exactly one
	// '@'; anything else is refused as bad_handshake before names are
	// checked.
	globName globKind = iota
	// globHost: a TLS server name, a host name (visible ASCII).
	globHost
	// globIdentity: a certificate's CN or SAN, which may hold spaces.
	globIdentity
)

// globNeverMatches returns why pattern (already compiled, so well formed)
// can never match a value of the given kind, or "" if it can. It catches
// the mistakes that make an allow entry silently useless: a class whose
// range is backwards ("[z-a]"), a stray space, a name without its '@'.
func globNeverMatches(pattern string, kind globKind) string {
	if kind == globIdentity && strings.TrimSpace(pattern) != pattern {
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
			end := globClassEnd(pattern, i)
			class := pattern[i : end+1]
			cg, err := policy.CompileGlob(class)
			if err != nil {
				return "" // cannot happen for a compiled pattern; stay quiet
			}
			any := false
			for b := 0; b < 256; b++ {
				if (kind == globIdentity || visible(byte(b))) && cg.Match([]byte{byte(b)}) {
					any = true
					atWild = atWild || b == '@'
				}
			}
			if !any {
				if kind == globIdentity {
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
		if kind != globIdentity && !visible(c) {
			return fmt.Sprintf("it holds %q, and %s", string([]byte{c}), map[globKind]string{
				globName: "node names are visible ASCII only",
				globHost: "host names are visible ASCII only",
			}[kind])
		}
		if c == '@' {
			ats++
		}
	}
	if kind == globName {
		switch {
		case ats > 1:
			return "it has more than one '@', and a node name has exactly one"
		case ats == 0 && !atWild:
			return "it has no '@' and no wildcard for one, and a node name is NAME@HOST"
		}
	}
	return ""
}

// globClassEnd returns the index of the ']' that closes the class opening
// at i, with policy.Glob's rules: a ']' right after '[' or '[!' is a member,
// '\' escapes. The pattern is known to be well formed.
func globClassEnd(p string, i int) int {
	j := i + 1
	if j < len(p) && p[j] == '!' {
		j++
	}
	if j < len(p) && p[j] == ']' {
		j++
	}
	for ; j < len(p); j++ {
		switch p[j] {
		case '\\':
			j++
		case ']':
			return j
		}
	}
	return len(p) - 1
}
