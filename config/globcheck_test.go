package config

import (
	"strings"
	"testing"
)

func TestGlobNeverMatches(t *testing.T) {
	tests := []struct {
		pat  string
		kind globKind
		want string // "" means it can match
	}{
		{"*", globName, ""},
		{"rpc-*-app@*", globName, ""},
		{"?", globName, ""},
		{"a[@]b", globName, ""},
		{`a\@b`, globName, ""},
		{"[z-a]*", globName, `the class "[z-a]" matches no visible ASCII byte`},
		{"[!!-~]*", globName, `the class "[!!-~]" matches no visible ASCII byte`},
		{" a@b", globName, `it holds " ", and node names are visible ASCII only`},
		{"a@b ", globName, `it holds " "`},
		{"a@\xc3\xa9", globName, `it holds "\xc3"`},
		{"a@b@c", globName, "more than one '@'"},
		{`a\@b\@c`, globName, "more than one '@'"},
		{"node", globName, "no '@' and no wildcard for one"},
		{"[a-z]x", globName, "no '@'"},
		{"*.example", globHost, ""},
		{"gate.lab ", globHost, `it holds " ", and host names are visible ASCII only`},
		{"[z-a].lab", globHost, `the class "[z-a]"`},
		{"CN with spaces", globIdentity, ""},
		{" ops", globIdentity, "leading or trailing space"},
		{"ops ", globIdentity, "leading or trailing space"},
		{"[\x01]", globIdentity, ""},
		{"[z-a]", globIdentity, `the class "[z-a]" matches no byte`},
		{"[]-]x", globIdentity, ""},
	}
	for _, tt := range tests {
		got := globNeverMatches(tt.pat, tt.kind)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%q (kind %d): %q, want %q", tt.pat, tt.kind, got, tt.want)
		}
	}
}

func TestGateNamesAndZones(t *testing.T) {
	for _, name := range []string{"a", "my-app_2.prod", strings.Repeat("n", 64)} {
		mustLoad(t, strings.Replace(goodGate, `name = "g"`, `name = "`+name+`"`, 1))
	}
	for _, name := range []string{`a\u001bb`, `a\u0000`, `a\nb`, "a b", strings.Repeat("n", 65), "a:b", "é"} {
		err := loadErr(t, strings.Replace(goodGate, `name = "g"`, `name = "`+name+`"`, 1))
		if !strings.Contains(err, "gate[0].name: ") || strings.ContainsAny(err, "\x1b\x00\n") && !strings.Contains(err, "\n/") {
			t.Errorf("name %q: %q", name, err)
		}
	}
	for _, src := range []string{"fe80::1%eth0", "fe80::1%eth0/128", "fe80::%2/64"} {
		err := loadErr(t, strings.Replace(goodGate, `"127.0.0.1"]`, `"`+src+`"]`, 1))
		if !strings.Contains(err, `allow[0].sources[0]: "`+src+`" has a zone (`) {
			t.Errorf("%s: %q", src, err)
		}
	}
	err := loadErr(t, gateWith("", "[gate.ban]\nnever = [\"fe80::1%lo\"]\n"))
	if !strings.Contains(err, `ban.never[0]: "fe80::1%lo" has a zone (%lo)`) {
		t.Errorf("never with a zone: %q", err)
	}
}
