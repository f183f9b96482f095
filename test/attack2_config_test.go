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
