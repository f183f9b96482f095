package test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/distgate/distgate/internal/testenv"
)

// A flag given twice is an error, not "the last one wins": with two
// -config, which file was checked or run would depend on the order.
func TestCheckConfigFlagTwice(t *testing.T) {
	t.Parallel()
	good, err := filepath.Abs(filepath.Join("..", "config.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	other := checkFile(t, "a", "127.0.0.2:9100", checkAllow())
	for _, cmd := range []string{"check", "run"} {
		stdout, stderr, code := testenv.RunDistgate(t, nil, cmd, "-config", other, "-config", good)
		if code != 2 || !strings.Contains(stderr, "-config") || !strings.Contains(stderr, "twice") {
			t.Errorf("%s -config A -config B: exit %d, want 2 saying -config was given twice; stderr:\n%s", cmd, code, stderr)
		}
		if stdout != "" {
			t.Errorf("%s -config A -config B printed:\n%s", cmd, stdout)
		}
	}
}

// A usage error prints the usage once.
func TestRunUsageOnce(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"run", "-config"}, {"check", "-config"}, {"-config"}, {"run", "-bogus"}, {"check", "extra"}} {
		_, stderr, code := testenv.RunDistgate(t, nil, args...)
		if code != 2 || strings.Count(stderr, "usage:") != 1 || strings.Contains(stderr, "Usage of") {
			t.Errorf("%q: exit %d, want 2 with the usage once; stderr:\n%s", args, code, stderr)
		}
	}
	// -h asks for it: exit 0, once, on stdout.
	stdout, stderr, code := testenv.RunDistgate(t, nil, "run", "-h")
	if code != 0 || strings.Count(stdout+stderr, "usage:") != 1 {
		t.Errorf("run -h: exit %d; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
