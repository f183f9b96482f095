package probe

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/distgate/distgate/internal/cliflags"
	"github.com/distgate/distgate/wire"
)

// Exit codes of Main (design.md, Command line).
const (
	exitOK      = 0
	exitExposed = 1
	exitUsage   = 2
	// exitUnprobed is "nothing could be probed": a host given without a
	// port where no epmd answered.
	exitUnprobed = 3
)

// Main runs the command `distgate probe` with args (after its name) and
// returns its exit code: 0 nothing exposed, 1 something exposed, 2 usage
// error, 3 nothing could be probed on a host given without a port (a silent
// all-clear would mislead cron).
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the results as JSON")
	timeout := fs.Duration("timeout", DefaultTimeout, "how long to wait for a connect, and then for a reply")
	epmdPort := fs.Int("epmd-port", wire.EpmdPort, "epmd `port` to query on each host (0: do not query epmd)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: distgate probe [-json] [-timeout 3s] [-epmd-port 4369] TARGET...\n"+
			"  TARGET is HOST, HOST:PORT or [IPv6]:PORT; probe only hosts you own.\n")
		fs.PrintDefaults()
	}
	// Flags may come before, between or after the targets.
	targets, err := cliflags.Parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "distgate: probe: %s\n", fmt.Sprintf(format, a...))
		return exitUsage
	}
	if len(targets) == 0 {
		return bad("no TARGET given (HOST, HOST:PORT or [IPv6]:PORT)")
	}
	if *timeout <= 0 || *timeout > time.Minute {
		return bad("-timeout %s: must be more than 0 and at most 1m", *timeout)
	}
	if *epmdPort < 0 || *epmdPort > 65535 {
		return bad("-epmd-port %d: not a port (0 skips epmd)", *epmdPort)
	}
	rep, err := Run(context.Background(), targets,
		Options{Timeout: *timeout, EpmdPort: *epmdPort, NoEpmd: *epmdPort == 0})
	if err != nil {
		return bad("%v", err)
	}
	write := WriteText
	if *asJSON {
		write = WriteJSON
	}
	// The exit code carries the verdict even when stdout is gone.
	_ = write(stdout, rep)
	for _, m := range rep.UnprobedMessages() {
		fmt.Fprintf(stderr, "distgate: probe: %s\n", m)
	}
	switch {
	case rep.Exposed:
		return exitExposed
	case len(rep.Unprobed) > 0:
		return exitUnprobed
	}
	return exitOK
}
