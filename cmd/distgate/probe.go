package main

import (
	"fmt"
	"io"
)

// cmdProbe is implemented in probe_cmd.go when available.
func cmdProbe(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "distgate: probe: not implemented yet")
	return exitUsage
}
