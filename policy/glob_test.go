package policy

import (
	"errors"
	"strings"
	"testing"
)

func mustGlob(t testing.TB, pattern string) Glob {
	t.Helper()
	g, err := CompileGlob(pattern)
	if err != nil {
		t.Fatalf("CompileGlob(%q): %v", pattern, err)
	}
	return g
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern string
		name    string
		want    bool
	}{
		// Literals.
		{"a@h", "a@h", true},
		{"a@h", "a@hh", false},
		{"a@h", "a@", false},
		{"a@h", "", false},

		// '*': any run, including the empty run and '@'.
		{"*", "", true},
		{"*", "anything@at.all", true},
		{"**", "x", true},
		{"a*", "a", true},
		{"a*", "abc", true},
		{"a*", "ba", false},
		{"*a", "bca", true},
		{"*a", "ab", false},
		{"a*b", "ab", true},
		{"a*b", "a@b", true},
		{"a*b", "a@bc", false},
		{"node*", "node@host", true},
		{"*@*", "a@b", true},
		{"*@*", "ab", false},
		{"*@host", "x@y@host", true},
		{"a*b*c", "abbbc", true},
		{"a*b*c", "acb", false},

		// '?': exactly one byte.
		{"?", "a", true},
		{"?", "", false},
		{"?", "ab", false},
		{"a?c@h", "abc@h", true},
		{"a?c@h", "ac@h", false},
		{"a??", "a@b", true},
		{"?*", "", false},
		{"?*", "x", true},

		// Classes.
		{"[abc]@h", "a@h", true},
		{"[abc]@h", "c@h", true},
		{"[abc]@h", "d@h", false},
		{"[a-z]", "m", true},
		{"[a-z]", "a", true},
		{"[a-z]", "z", true},
		{"[a-z]", "A", false},
		{"[a-z]", "0", false},
		{"[!a-z]", "A", true},
		{"[!a-z]", "9", true},
		{"[!a-z]", "q", false},
		{"[!a-z]", "", false},
		{"[a-cx-z]", "b", true},
		{"[a-cx-z]", "y", true},
		{"[a-cx-z]", "m", false},
		{"[0-9][0-9]@h", "42@h", true},
		{"[0-9][0-9]@h", "4x@h", false},
		{"[]]", "]", true},   // ']' first is a literal member
		{"[!]]", "]", false}, // ... also after '!'
		{"[!]]", "a", true},
		{"[a-]", "-", true}, // trailing '-' is literal
		{"[a-]", "b", false},
		{`[\]]`, "]", true},
		{`[\!a]`, "!", true}, // escaped '!' is a member, not negation
		{`[\!a]`, "b", false},
		{"[*]", "*", true}, // '*' inside a class is literal
		{"[*]", "x", false},
		{"[?]", "?", true},
		{"[?]", "x", false},

		// Escapes.
		{`\*`, "*", true},
		{`\*`, "x", false},
		{`\?`, "?", true},
		{`\?`, "x", false},
		{`\[a]`, "[a]", true},
		{`\[a]`, "a", false},
		{`\\`, `\`, true},
		{`\a@h`, "a@h", true},
		{`a\*b*`, "a*bcd", true},
		{`a\*b*`, "axbcd", false},

		// Case sensitivity: node names are atoms.
		{"a@h", "A@h", false},
		{"A@H", "A@H", true},
		{"[a-z]@h", "Q@h", false},
		{"MyApp@*", "myapp@h", false},

		// The shapes in the example configuration, against real captured names.
		{"rem-*-myapp@*", "rem-a0cf-myapp@127.0.0.1", true},
		{"rem-*-myapp@*", "rpc-a9d5-myapp@127.0.0.1", false},
		{"rpc-*-myapp@*", "rpc-a9d5-myapp@127.0.0.1", true},
		{"rpc-*-myapp@*", "rem-a0cf-myapp@127.0.0.1", false},
		{"rem-*-myapp@*", "AAAAAA@AAAAAAA", false},
		{"rpc-*-myapp@*", "AAAAAA@AAAAAAA", false},
		{"rpc-*-myapp@*", "rpc-a9d5-otherapp@127.0.0.1", false},
		{"rpc-*-myapp@*", "rpc--myapp@h", true},
		{"rpc-*-myapp@*", "rpc-a9d5-myapp@", true},
		{"rpc-????-myapp@127.0.0.1", "rpc-a9d5-myapp@127.0.0.1", true},
		{"rpc-????-myapp@127.0.0.1", "rpc-a9d-myapp@127.0.0.1", false},
		{"*@127.0.0.1", "b@127.0.0.1", true},
		{"*@127.0.0.1", "b@127.0.0.10", false},
		{"*", "AAAAAA@AAAAAAA", true},
	}
	for _, tt := range tests {
		g := mustGlob(t, tt.pattern)
		if got := g.Match([]byte(tt.name)); got != tt.want {
			t.Errorf("Glob(%q).Match(%q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
		if got := g.MatchString(tt.name); got != tt.want {
			t.Errorf("Glob(%q).MatchString(%q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestGlobString(t *testing.T) {
	const p = "rem-*-myapp@*"
	if got := mustGlob(t, p).String(); got != p {
		t.Errorf("String() = %q, want %q", got, p)
	}
}

func TestCompileGlobErrors(t *testing.T) {
	bad := []string{
		"",
		"[",
		"[abc",
		"a@[h",
		"[!",
		"[]",    // ']' right after '[' is a member, so still unclosed
		"[!]",   // likewise after '!'
		`[\]`,   // the ']' is escaped
		`[a\`,   // backslash inside an unclosed class
		`\`,     // trailing backslash
		`a@h\`,  // trailing backslash
		`a\\\`,  // escaped backslash, then a trailing one
		"x[a-z", // unclosed range
	}
	for _, p := range bad {
		g, err := CompileGlob(p)
		if !errors.Is(err, ErrBadGlob) {
			t.Errorf("CompileGlob(%q) = %v, %v; want an ErrBadGlob error", p, g, err)
		}
	}

	good := []string{"*", "?", "a", "]", "a]", "[]]", "[!]]", `\\`, `\[`, "[a-z]", `a\*`}
	for _, p := range good {
		if _, err := CompileGlob(p); err != nil {
			t.Errorf("CompileGlob(%q): %v", p, err)
		}
	}
}

func TestGlobMatchDoesNotAllocate(t *testing.T) {
	g := mustGlob(t, "rpc-*-my[a-z]pp@*")
	names := [][]byte{
		[]byte("rpc-a9d5-myapp@127.0.0.1"),
		[]byte("rem-a0cf-myapp@127.0.0.1"),
		[]byte("AAAAAA@AAAAAAA"),
	}
	var sink bool
	allocs := testing.AllocsPerRun(100, func() {
		for _, n := range names {
			sink = g.Match(n) != sink
		}
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per run, want 0", allocs)
	}
}

// A naive recursive matcher is exponential here; this one must finish and
// get the right answer.
func TestGlobPathological(t *testing.T) {
	g := mustGlob(t, "a*a*a*a*a*b")
	as := strings.Repeat("a", 255)
	if g.Match([]byte(as)) {
		t.Error("matched 255 'a's without a 'b'")
	}
	if !g.Match([]byte(as[:254] + "b")) {
		t.Error("did not match 254 'a's followed by 'b'")
	}
	if g.Match([]byte(as[:4] + "b")) {
		t.Error("matched only four 'a's before 'b'; the pattern needs five")
	}
	if !g.Match([]byte(as[:5] + "b")) {
		t.Error("did not match five 'a's followed by 'b'")
	}
}

func BenchmarkGlobMatch(b *testing.B) {
	g := mustGlob(b, "rpc-*-myapp@*")
	name := []byte("rpc-a9d5-myapp@127.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		g.Match(name)
	}
}
