package test

import (
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/distgate/distgate/internal/testenv"
)

// TestVersion: `distgate version` carries the VCS revision when the binary
// is built in a checkout with VCS stamping on. Stamping is off when GOFLAGS
// holds -buildvcs=false (this machine's `go env` did), and the binary then
// says only "(devel)"; docs/OPERATIONS.md explains how to build a release.
func TestVersion(t *testing.T) {
	head, err := exec.Command("git", "-C", "..", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v (the test needs a git checkout and git on PATH)", err)
	}
	rev := strings.TrimSpace(string(head))

	version := func(t *testing.T, bin string) string {
		t.Helper()
		out, err := exec.Command(bin, "version").Output()
		if err != nil {
			t.Fatalf("distgate version: %v", err)
		}
		return strings.TrimSpace(string(out))
	}

	stamped := testenv.Distgate(t, "-buildvcs=true")
	t.Run("stamped", func(t *testing.T) {
		got := version(t, stamped)
		t.Logf("%s", got)
		f := strings.Fields(got)
		// distgate MODULE-VERSION (REVISION[+dirty], VCS-TIME) GO-VERSION
		if len(f) != 5 || f[0] != "distgate" || strings.TrimSuffix(strings.Trim(f[2], "(,"), "+dirty") != rev ||
			!strings.HasSuffix(f[3], ")") || f[4] != runtime.Version() {
			t.Fatalf("got %q, want distgate <version> (%s[+dirty], <time>) %s", got, rev, runtime.Version())
		}
		if !strings.HasPrefix(f[1], "v") {
			t.Errorf("module version %q: Go stamps a (pseudo-)version from VCS", f[1])
		}
		// The binary's own build info says the same.
		bi, err := exec.Command("go", "version", "-m", stamped).Output()
		if err != nil || !strings.Contains(string(bi), "vcs.revision="+rev) {
			t.Errorf("go version -m: %v\n%s", err, bi)
		}
	})

	t.Run("unstamped", func(t *testing.T) {
		got := version(t, testenv.Distgate(t, "-buildvcs=false"))
		if want := "distgate (devel) " + runtime.Version(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	})

	t.Run("extra argument", func(t *testing.T) {
		err := exec.Command(stamped, "version", "x").Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Fatalf("distgate version x: %v, want exit 2", err)
		}
	})
}
