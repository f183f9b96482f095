package test

// Configuration defects found by attacking the command line and the
// configuration (docs/SECURITY.md, "Configuration attacks"): each test runs
// the built binary as an operator would.

import (
	"strings"
	"testing"
)

// checkGate is a one-gate configuration with the given upstream.
func checkGate(upstream string) string {
	return "[[gate]]\nname = \"a\"\nlisten = \"127.0.0.1:9100\"\nupstream = \"" + upstream + "\"\n" + cliAllow
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
		stdout, stderr, code := runDistgate(t, nil, "check", "-config", tempConfig(t, checkGate(up)))
		if code != 2 || !strings.Contains(stderr, `upstream: "`+up+`"`) {
			t.Errorf("upstream %q: exit %d, want 2 naming the value; stderr:\n%s", up, code, stderr)
		}
		if stdout != "" {
			t.Errorf("upstream %q: check printed a configuration", up)
		}
	}
	for _, up := range []string{"localhost:19101", "127.0.0.1:19101", "[::1]:19101"} {
		_, stderr, code := runDistgate(t, nil, "check", "-config", tempConfig(t, checkGate(up)))
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
		stdout, stderr, code := runDistgate(t, []string{v}, "check")
		if code != 2 || !strings.Contains(stderr, k) {
			t.Errorf("%q: exit %d, want 2 naming %s; stderr:\n%s\nstdout:\n%s", v, code, k, stderr, stdout)
		}
	}
	stdout, stderr, code := runDistgate(t, []string{"DISTGATE_ALLOW_NAMES=*"}, "check")
	if code != 0 {
		t.Fatalf("DISTGATE_ALLOW_NAMES=*: exit %d; stderr:\n%s", code, stderr)
	}
	if c := decodeCheck(t, stdout); len(c.Gate) != 1 || len(c.Gate[0].Allow) != 1 || len(c.Gate[0].Allow[0].Names) != 1 || c.Gate[0].Allow[0].Names[0] != "*" {
		t.Errorf("DISTGATE_ALLOW_NAMES=*:\n%s", stdout)
	}
}
