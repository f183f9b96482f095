package policy

import (
	"strings"
	"testing"
)

func TestGlobNeverMatches(t *testing.T) {
	tests := []struct {
		pat  string
		kind GlobKind
		want string // "" means it can match
	}{
		{"*", GlobName, ""},
		{"rpc-*-app@*", GlobName, ""},
		{"?", GlobName, ""},
		{"a[@]b", GlobName, ""},
		{`a\@b`, GlobName, ""},
		{"[z-a]*", GlobName, `the class "[z-a]" matches no visible ASCII byte`},
		{"[!!-~]*", GlobName, `the class "[!!-~]" matches no visible ASCII byte`},
		{" a@b", GlobName, `it holds " ", and node names are visible ASCII only`},
		{"a@b ", GlobName, `it holds " "`},
		{"a@\xc3\xa9", GlobName, `it holds "\xc3"`},
		{"a@b@c", GlobName, "more than one '@'"},
		{`a\@b\@c`, GlobName, "more than one '@'"},
		{"node", GlobName, "no '@' and no wildcard for one"},
		{"[a-z]x", GlobName, "no '@'"},
		{"*.example", GlobHost, ""},
		{"gate.lab ", GlobHost, `it holds " ", and host names are visible ASCII only`},
		{"[z-a].lab", GlobHost, `the class "[z-a]"`},
		{"CN with spaces", GlobIdentity, ""},
		{" ops", GlobIdentity, "leading or trailing space"},
		{"ops ", GlobIdentity, "leading or trailing space"},
		{"[\x01]", GlobIdentity, ""},
		{"[z-a]", GlobIdentity, `the class "[z-a]" matches no byte`},
		{"[]-]x", GlobIdentity, ""},
	}
	for _, tt := range tests {
		g, err := CompileGlob(tt.pat)
		if err != nil {
			t.Fatalf("%q: %v", tt.pat, err)
		}
		got := g.NeverMatches(tt.kind)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%q (kind %d): %q, want %q", tt.pat, tt.kind, got, tt.want)
		}
	}
}
