package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/distgate/distgate/internal/testenv"
)

// cmdUpstream runs the node every proxy fronts: a fake node
// (testenv.FakeNode) that completes the distribution handshake up to 'a'
// and then serves one command per connection (echo, sink or source). It
// runs in a process of its own so that its CPU is not the load
// generator's, until it is killed.
func cmdUpstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := testenv.NewFakeNode(*listen, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "upstream listening on %s\n", f.Addr())
	select {}
}
