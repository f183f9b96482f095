package cliflags

import (
	"errors"
	"flag"
	"io"
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	j := fs.Bool("json", false, "")
	n := fs.String("node", "", "")
	rest, err := Parse(fs, []string{"a", "-json", "b", "-node", "n@h.x", "c"})
	if err != nil || !*j || *n != "n@h.x" || !slices.Equal(rest, []string{"a", "b", "c"}) {
		t.Errorf("rest %q, json %v, node %q, err %v", rest, *j, *n, err)
	}
	if _, err := Parse(fs, []string{"a", "-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
	if _, err := Parse(fs, []string{"-nosuch"}); err == nil {
		t.Error("an unknown flag parsed")
	}
}
