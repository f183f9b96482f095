// Command loadgen is distgate's benchmark harness. It plays three parts:
//
//	loadgen upstream -listen ADDR     the echo/sink/source server every proxy fronts
//	loadgen run [flags]               start the proxies, measure, write the table
//	loadgen load [flags]              drive one load for a while
//	loadgen profile [flags]           profile distgate under those loads
//
// bench/run.sh builds it and calls "run"; see bench/README.md.
package main

import (
	"fmt"
	"os"
)

const usage = `usage:
  loadgen upstream -listen ADDR
  loadgen run -distgate BIN [-quick] [-out FILE] [-keep] [-only TESTS] [-variants user,kernel,tls,passthrough]
  loadgen load -kind setup|flood|pingpong -addr ADDR [-dur D] [-clients N]
  loadgen profile -distgate BIN [-out DIR] [-dur D] [-idle N]
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "upstream":
		err = cmdUpstream(os.Args[2:])
	case "run":
		err = cmdRun(os.Args[2:])
	case "load":
		err = cmdLoad(os.Args[2:])
	case "profile":
		err = cmdProfile(os.Args[2:])
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
}
