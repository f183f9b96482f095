// Package test holds distgate's end-to-end tests: the real binary in front of
// real Erlang/OTP nodes and clients, epmdless, over loopback.
//
// Every scenario uses the topology of the design document: the node is
// app@127.0.0.1 bound to 127.0.0.2:P, distgate listens on 127.0.0.1:P with
// upstream 127.0.0.2:P, and clients (-dist_listen false -hidden) dial
// app@127.0.0.1 on port P. Sources are told apart by binding clients to
// 127.0.0.3, 127.0.0.4, ….
package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var (
	// distgateBin is the binary under test, built once by TestMain.
	distgateBin string
	// erlBin is the erl found on PATH.
	erlBin string
	// tmpRoot holds what lives for the whole run (the binary, the Elixir
	// release); TestMain removes it.
	tmpRoot string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	var err error
	erlBin, err = exec.LookPath("erl")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: the end-to-end tests need Erlang/OTP 25 or later: `erl` is not on PATH.\n"+
			"Install it (Debian/Ubuntu: apt-get install erlang-base erlang-crypto), then run the tests again.")
		return 1
	}
	tmpRoot, err = os.MkdirTemp("", "distgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer os.RemoveAll(tmpRoot)

	distgateBin = filepath.Join(tmpRoot, "distgate")
	args := []string{"build", "-o", distgateBin}
	if raceEnabled {
		// A race-enabled test run also runs distgate with the detector, so
		// races in the proxy under real traffic fail the test that hit them.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/distgate")...)
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: go build ./cmd/distgate:", err)
		return 1
	}
	return m.Run()
}
