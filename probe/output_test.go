package probe

import (
	"bytes"
	"strings"
	"testing"
	"unicode"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain text – with … and é":   "plain text – with … and é",
		"\x1b[2J":                     `\x1b[2J`,
		"bell\a tab\t nl\n cr\r":      `bell\x07 tab\x09 nl\x0a cr\x0d`,
		"del\x7f nul\x00":             `del\x7f nul\x00`,
		"c1 \u009b and raw \x9b \xff": `c1 \u009b and raw \x9b \xff`,
		"bidi \u202e override":        `bidi \u202e override`,
		"\U000e0001 tag":              `\U000e0001 tag`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every string WriteText prints from a report goes through printable: no
// field of a hostile reply reaches the terminal raw.
func TestWriteTextEscapes(t *testing.T) {
	const evil = "\x1b]0;x\x07\nforged line\r\x9b"
	rep := Report{
		Epmd: []Epmd{{Host: "h" + evil, Addr: "127.0.0.1", Port: 4369, State: StateExposed,
			Nodes: []Node{{Name: evil, Port: 1}}, Error: evil, Verdict: "v " + evil, Fix: "f " + evil}},
		Ports: []Port{{Host: "h", Addr: "127.0.0.1", Port: 1, From: "epmd", State: StateExposed,
			Attempts: []Attempt{{Message: "scanner_n", Outcome: OutcomeError, Error: evil}}, Verdict: evil, Fix: evil}},
	}
	var b bytes.Buffer
	if err := WriteText(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for i, r := range out {
		if r != '\n' && !unicode.IsPrint(r) {
			t.Fatalf("raw %q at %d in:\n%s", r, i, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "forged") {
			t.Errorf("a reply forged a line: %q", l)
		}
	}
}
