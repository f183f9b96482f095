package config

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/wire"
)

// A list variable that is set must list something.
func TestEnvListsNeverEmpty(t *testing.T) {
	for _, v := range []string{
		"DISTGATE_ALLOW_NAMES=", "DISTGATE_ALLOW_NAMES= ", "DISTGATE_ALLOW_NAMES=\t,", "DISTGATE_ALLOW_NAMES=a@*,,b@*",
		"DISTGATE_ALLOW_SOURCES=", "DISTGATE_ALLOW_SOURCES= , ", "DISTGATE_ALLOW_SOURCES=127.0.0.1,",
	} {
		k, _, _ := strings.Cut(v, "=")
		_, err := Load("", []string{v})
		if err == nil || !strings.HasPrefix(err.Error(), k+": ") {
			t.Errorf("%q: %v", v, err)
		}
	}
	_, err := Load("", []string{"DISTGATE_ALLOW_NAMES= "})
	if err == nil || !strings.Contains(err.Error(), `any name is spelled "*"`) {
		t.Errorf("blank names: %v", err)
	}
}

// "*" is any name: it admits what an omitted names list admits, a
// dynamic-name (NAME_ME) request included.
func TestStarIsAnyName(t *testing.T) {
	src := netip.MustParseAddr("127.0.0.1")
	flags := wire.Mandatory25 | wire.FlagNameMe
	for _, env := range [][]string{nil, {"DISTGATE_ALLOW_NAMES=*"}, {"DISTGATE_ALLOW_NAMES=x@y,*"}} {
		l, err := Load("", env)
		if err != nil {
			t.Fatal(err)
		}
		r := l.Gates[0].Settings.Rules
		if got := r.Check(src, wire.TagNew, flags, []byte("127.0.0.1")); got != policy.Admitted {
			t.Errorf("%v: a NAME_ME request: %v", env, got)
		}
		if got := r.Check(src, wire.TagNew, wire.Mandatory25, []byte("any@host")); got != policy.Admitted {
			t.Errorf("%v: any@host: %v", env, got)
		}
	}
	// A list without "*" still narrows.
	l, err := Load("", []string{"DISTGATE_ALLOW_NAMES=x@*"})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Gates[0].Settings.Rules.Check(src, wire.TagNew, wire.Mandatory25, []byte("any@host")); got != policy.NameNotAllowed {
		t.Errorf("x@* admitted any@host: %v", got)
	}
	// An empty list in a file admits any name too, and says so.
	l = mustLoad(t, goodGate+"names = []\n")
	if !strings.Contains(strings.Join(l.Warnings, "\n"), `allow[0].names: an empty list admits any name; write ["*"]`) {
		t.Errorf("names = []: warnings %v", l.Warnings)
	}
}
