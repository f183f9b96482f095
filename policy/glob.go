package policy

import (
	"errors"
	"fmt"
)

// ErrBadGlob is returned by CompileGlob for a pattern that cannot match
// anything as written (an unclosed class, a trailing backslash).
var ErrBadGlob = errors.New("bad glob")

// Glob matches node names. '*' matches any run of bytes (including '@' and
// the empty run), '?' one byte, '[abc]', '[a-z]' and '[!a-z]' a class of
// bytes, and '\' makes the next byte literal. Matching is on bytes and is
// case-sensitive, as node names are atoms.
type Glob struct{ pat string }

// CompileGlob validates pattern and returns it as a Glob.
func CompileGlob(pattern string) (Glob, error) {
	if pattern == "" {
		return Glob{}, fmt.Errorf("%w: empty pattern", ErrBadGlob)
	}
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '\\':
			if i+1 == len(pattern) {
				return Glob{}, fmt.Errorf("%w %q: ends in a backslash", ErrBadGlob, pattern)
			}
			i++
		case '[':
			end, ok := classEnd(pattern, i)
			if !ok {
				return Glob{}, fmt.Errorf("%w %q: unclosed '['", ErrBadGlob, pattern)
			}
			i = end
		}
	}
	return Glob{pat: pattern}, nil
}

// String returns the pattern.
func (g Glob) String() string { return g.pat }

// Match reports whether name matches the whole pattern. It does not allocate.
func (g Glob) Match(name []byte) bool { return match(g.pat, name) }

// MatchString is Match for a string (a certificate's names, a server name).
func (g Glob) MatchString(name string) bool { return match(g.pat, name) }

func match[T string | []byte](p string, n T) bool {
	// Classic backtracking over the last '*': linear in practice, and
	// O(len(p)*len(n)) at worst: node and server names are under 256
	// bytes, and a certificate's names come from a CA the gate trusts.
	starP, starN := -1, 0
	pi, ni := 0, 0
	for ni < len(n) {
		if pi < len(p) {
			switch c := p[pi]; c {
			case '*':
				starP, starN = pi, ni
				pi++
				continue
			case '?':
				pi++
				ni++
				continue
			case '[':
				end, _ := classEnd(p, pi)
				if matchClass(p[pi+1:end], n[ni]) {
					pi = end + 1
					ni++
					continue
				}
			case '\\':
				if p[pi+1] == n[ni] {
					pi += 2
					ni++
					continue
				}
			default:
				if c == n[ni] {
					pi++
					ni++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starN++
		pi, ni = starP+1, starN
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// classEnd returns the index of the ']' closing the class that opens at i.
// A ']' right after '[' or '[!' is a literal member.
func classEnd(p string, i int) (int, bool) {
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
			return j, true
		}
	}
	return 0, false
}

// matchClass matches c against a class body (between '[' and ']').
func matchClass(body string, c byte) bool {
	negate := len(body) > 0 && body[0] == '!'
	if negate {
		body = body[1:]
	}
	in := false
	for i := 0; i < len(body); i++ {
		lo := body[i]
		if lo == '\\' && i+1 < len(body) {
			i++
			lo = body[i]
		}
		hi := lo
		if i+2 < len(body) && body[i+1] == '-' {
			hi = body[i+2]
			if hi == '\\' && i+3 < len(body) {
				hi = body[i+3]
				i++
			}
			i += 2
		}
		if lo <= c && c <= hi {
			in = true
		}
	}
	return in != negate
}
