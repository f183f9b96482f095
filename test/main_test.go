// Package test holds distgate's end-to-end tests: the real binary in front of
// real Erlang/OTP nodes and clients, epmdless, over loopback.
//
// Every scenario uses the topology of the design document (testenv.App,
// testenv.AppGate, testenv.Client): the node is app@127.0.0.1 bound to
// 127.0.0.2:P, distgate listens on 127.0.0.1:P with upstream 127.0.0.2:P, and
// clients (-dist_listen false -hidden) dial app@127.0.0.1 on port P. Sources
// are told apart by binding clients to 127.0.0.3, 127.0.0.4, …. The helpers
// (processes, ports, nodes, distgate and its log) are in internal/testenv.
package test

import (
	"fmt"
	"os"
	"testing"

	"github.com/distgate/distgate/internal/testenv"
)

func TestMain(m *testing.M) {
	if _, err := testenv.ErlPath(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: the end-to-end tests cannot run:", err)
		os.Exit(1)
	}
	os.Exit(testenv.Main(m))
}
