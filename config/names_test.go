package config

import (
	"strings"
	"testing"
)

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
