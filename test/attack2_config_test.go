package test

// Configuration defects found by attacking the command line and the
// configuration (docs/SECURITY.md, "Configuration attacks"): each test runs
// the built binary as an operator would.

import (
	"strings"
	"testing"

	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/testenv"
)

// checkFile is a one-gate configuration named "a" on 127.0.0.1:9100 in
// front of upstream, with the allow entry given. The values may be wrong:
// the TOML encoder writes them as they are, escaped, for `check` to judge.
func checkFile(t *testing.T, name, upstream string, allow config.Allow) string {
	t.Helper()
	return testenv.ConfigFile(t, testenv.GateFile(name, "127.0.0.1:9100", upstream, allow))
}

// checkAllow is the allow entry of the check tests: 127.0.0.1, any name
// unless names are given.
func checkAllow(names ...string) config.Allow {
	return testenv.Allow([]string{"127.0.0.1/32"}, names...)
}

// An upstream that is not a usable HOST:PORT is a configuration error that
// names the value; a host name must resolve, and resolving only to loopback
// addresses draws no warning.
func TestCheckUpstreamValidated(t *testing.T) {
	t.Parallel()
	for _, up := range []string{
		"127.0.0.1:99999", "127.0.0.1:abc", "127.0.0.1:-1", ":19101", "127.0.0.1: 19101",
		"no such host!!:19101", "127.0.0.1:0", "127.0.0.1", "[::1]:65536", "nosuch.invalid:19101",
	} {
		stdout, stderr, code := testenv.RunDistgate(t, nil, "check", "-config", checkFile(t, "a", up, checkAllow()))
		if code != 2 || !strings.Contains(stderr, `upstream: "`+up+`"`) {
			t.Errorf("upstream %q: exit %d, want 2 naming the value; stderr:\n%s", up, code, stderr)
		}
		if stdout != "" {
			t.Errorf("upstream %q: check printed a configuration", up)
		}
	}
	for _, up := range []string{"localhost:19101", "127.0.0.1:19101", "[::1]:19101"} {
		_, stderr, code := testenv.RunDistgate(t, nil, "check", "-config", checkFile(t, "a", up, checkAllow()))
		if code != 0 || strings.Contains(stderr, "warning") {
			t.Errorf("upstream %q: exit %d, want 0 without a warning; stderr:\n%s", up, code, stderr)
		}
	}
}

// A list variable that is set but empty or blank is an error, never "no
// restriction"; any name is spelled "*".
func TestEnvironmentEmptyLists(t *testing.T) {
	t.Parallel()
	for _, v := range []string{
		"DISTGATE_ALLOW_NAMES= ", "DISTGATE_ALLOW_NAMES=", "DISTGATE_ALLOW_NAMES=,", "DISTGATE_ALLOW_NAMES=rpc-*@*, ,rem-*@*",
		"DISTGATE_ALLOW_SOURCES= ", "DISTGATE_ALLOW_SOURCES=", "DISTGATE_ALLOW_SOURCES=127.0.0.1,",
	} {
		k, _, _ := strings.Cut(v, "=")
		stdout, stderr, code := testenv.RunDistgate(t, []string{v}, "check")
		if code != 2 || !strings.Contains(stderr, k) {
			t.Errorf("%q: exit %d, want 2 naming %s; stderr:\n%s\nstdout:\n%s", v, code, k, stderr, stdout)
		}
	}
	stdout, stderr, code := testenv.RunDistgate(t, []string{"DISTGATE_ALLOW_NAMES=*"}, "check")
	if code != 0 {
		t.Fatalf("DISTGATE_ALLOW_NAMES=*: exit %d; stderr:\n%s", code, stderr)
	}
	if c := decodeCheck(t, stdout); len(c.Gate) != 1 || len(c.Gate[0].Allow) != 1 || len(c.Gate[0].Allow[0].Names) != 1 || c.Gate[0].Allow[0].Names[0] != "*" {
		t.Errorf("DISTGATE_ALLOW_NAMES=*:\n%s", stdout)
	}
}

// A zone in a source is refused whichever way it is written: the gate
// matches addresses on every interface, so a zone would promise a scope
// that is not enforced.
func TestCheckSourceZones(t *testing.T) {
	t.Parallel()
	for _, src := range []string{"fe80::1%eth0", "fe80::1%eth0/128", "fe80::%lo/64"} {
		path := checkFile(t, "a", "127.0.0.2:9100", testenv.Allow([]string{src}))
		_, stderr, code := testenv.RunDistgate(t, nil, "check", "-config", path)
		if code != 2 || !strings.Contains(stderr, `allow[0].sources[0]: "`+src+`"`) || !strings.Contains(stderr, "zone") {
			t.Errorf("source %q: exit %d, want 2 naming it and the zone; stderr:\n%s", src, code, stderr)
		}
	}
}

// Gate names are [A-Za-z0-9_.-]{1,64}: a name with an ESC, a NUL, a line
// break or a space would reach log lines and metric labels as it is.
func TestCheckGateNames(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"a\x1b[2Jb", "a\x00b", "a\nb", "a b", "é", strings.Repeat("n", 65), "a/b", "a%d"} {
		path := checkFile(t, name, "127.0.0.2:9100", checkAllow())
		stdout, stderr, code := testenv.RunDistgate(t, nil, "check", "-config", path)
		if code != 2 || !strings.Contains(stderr, "gate[0].name") || stdout != "" {
			t.Errorf("name %q: exit %d, want 2 naming gate[0].name; stderr:\n%s", name, code, stderr)
		}
		if strings.ContainsAny(stderr, "\x1b\x00") {
			t.Errorf("name %q: the error carries the raw byte: %q", name, stderr)
		}
	}
	path := checkFile(t, "my-app_2.prod", "127.0.0.2:9100", checkAllow())
	if _, stderr, code := testenv.RunDistgate(t, nil, "check", "-config", path); code != 0 {
		t.Errorf("a valid name: exit %d; stderr:\n%s", code, stderr)
	}
}

// A glob that can never match is valid but certainly not meant: check
// warns, and the warning names the entry.
func TestCheckGlobWarnings(t *testing.T) {
	t.Parallel()
	for glob, why := range map[string]string{
		"[z-a]*":          `the class "[z-a]"`,
		" rpc-*@*":        `" "`,
		"rpc-*@* ":        `" "`,
		"rpc-a@b@c":       "more than one '@'",
		"rpc-node":        "no '@'",
		"a@[\x01]":        `the class`,
		"rpc\t*@*":        `"\t"`,
		"[!\x21-\x7e]*@*": `the class`,
	} {
		path := checkFile(t, "a", "127.0.0.2:9100", checkAllow(glob))
		_, stderr, code := testenv.RunDistgate(t, nil, "check", "-config", path)
		if code != 0 || !strings.Contains(stderr, "warning: ") || !strings.Contains(stderr, "allow[0].names[0]") ||
			!strings.Contains(stderr, "can never match") || !strings.Contains(stderr, why) {
			t.Errorf("glob %q: exit %d, want 0 with a warning naming allow[0].names[0] and %s; stderr:\n%s", glob, code, why, stderr)
		}
	}
	for _, glob := range []string{"*", "rpc-*-app@*", "[a-z]*@host", "a?b@*", `a\*@*`, "*a*", "?"} {
		path := checkFile(t, "a", "127.0.0.2:9100", checkAllow(glob))
		if _, stderr, code := testenv.RunDistgate(t, nil, "check", "-config", path); code != 0 || strings.Contains(stderr, "warning") {
			t.Errorf("glob %q: exit %d, want 0 without a warning; stderr:\n%s", glob, code, stderr)
		}
	}
}
