package test

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/testenv"
)

// The forwarding paths (design.md, Forwarding). The end-to-end tests that
// move bytes run once per path, through the same assertions: whatever
// forwards the bytes, the nodes and clients must not be able to tell.
const (
	pathUser   = "user"
	pathKernel = "kernel"
)

// Capability bits (linux/capability.h).
const (
	capNetAdmin = 12
	capBPF      = 39
)

// kernelMissing says why distgate, started by these tests, cannot take
// the kernel path here; "" when it can (the tests run as root, or with
// CAP_BPF and CAP_NET_ADMIN, which distgate inherits).
func kernelMissing() string {
	if runtime.GOOS != "linux" {
		return "the kernel forwarding path is Linux only"
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "cannot read the capabilities: " + err.Error()
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return "cannot read the capabilities: " + err.Error()
		}
		if caps&(1<<capBPF) == 0 || caps&(1<<capNetAdmin) == 0 {
			return "the kernel forwarding path needs CAP_BPF and CAP_NET_ADMIN (run the tests as root); it was NOT tested"
		}
		return ""
	}
	return "no CapEff in /proc/self/status"
}

// forEachPath runs fn as a parallel subtest per forwarding path: "user"
// everywhere, "kernel" where the tests have its privileges (elsewhere the
// subtest is skipped and says why).
func forEachPath(t *testing.T, fn func(t *testing.T, path string)) {
	t.Helper()
	for _, path := range []string{pathUser, pathKernel} {
		t.Run(path, func(t *testing.T) {
			if path == pathKernel {
				if why := kernelMissing(); why != "" {
					t.Skip(why)
				}
			}
			t.Parallel()
			fn(t, path)
		})
	}
}

// onPath returns f with its top-level forward key set to path. A reload
// must keep it: forward is restart-only.
func onPath(f *config.File, path string) *config.File {
	f.Forward = path
	return f
}

// startOnPath starts distgate with f on path and fails the test unless
// every gate's listening line says that path: where these tests run the
// kernel path at all, a fallback to user space is a failure.
func startOnPath(t *testing.T, f *config.File, path string) *testenv.Gate {
	t.Helper()
	g := testenv.StartGate(t, onPath(f, path))
	for _, l := range g.WaitN(len(f.Gate), testenv.Msg("listening")) {
		if l.Str("path") != path {
			t.Fatalf("asked for forward = %q, the listening line says path %q; warnings: %v",
				path, l.Str("path"), testenv.Filter(g.Lines(), testenv.Field("level", "warn")))
		}
	}
	return g
}

// closedPath checks the path on a closed line: the path the gate runs, or,
// on the kernel path, "user" for a pair the kernel moved to user space
// (allowMoved: a bulk transfer into a reader that fell behind).
func closedPath(t *testing.T, l testenv.Line, path string, allowMoved bool) {
	t.Helper()
	got := l.Str("path")
	if got == path || (allowMoved && path == pathKernel && got == pathUser) {
		return
	}
	t.Errorf("closed line with path %q on a gate forwarding on %q: %v", got, path, l)
}
