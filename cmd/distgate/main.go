// Command distgate guards an Erlang/Elixir node's distribution port: it admits
// connections by source address, rate and the node name in the first
// handshake message, and splices admitted ones to the node on loopback.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/distgate/distgate/cmd/distgate/internal/early"
	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/version"
	"github.com/distgate/distgate/probe"
	"github.com/distgate/distgate/scaffold"
)

// Exit codes (design: Command line).
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

const usage = `usage:
  distgate [run] [-config FILE]     run the gates (no file: the embedded default)
  distgate check [-config FILE]     validate; print the effective config; exit 2 on any error
  distgate probe [-json] TARGET...  audit a host as a scanner would
  distgate init elixir|erlang -node N -public ADDR -allow CIDR... [-port P] [-out DIR] [-force]
                                    write distgate.toml (and an Elixir release's rel/ files)
  distgate status [-json]           live gates, connections, bans (admin socket)
  distgate ban [-gate G] [-for D] ADDR   ban a source now (admin socket)
  distgate unban [-gate G] ADDR     lift a ban (admin socket)
  distgate version
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// exitError carries an exit code other than 1, and whether the usage text
// helps.
type exitError struct {
	code  int
	usage bool
	err   error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(err error) error  { return &exitError{exitUsage, true, err} }
func configErr(err error) error { return &exitError{exitUsage, false, err} }

func realMain(args, environ []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = cmdRun(args, environ, stdout, stderr)
	case "check":
		err = cmdCheck(args, environ, stdout, stderr)
	case "probe":
		return probe.Main(args, stdout, stderr)
	case "init":
		return scaffold.Main(args, stdout, stderr)
	case "status":
		return adminCLI.Status(args, environ, stdout, stderr)
	case "ban":
		return adminCLI.Ban(args, environ, stdout, stderr)
	case "unban":
		return adminCLI.Unban(args, environ, stdout, stderr)
	case "version":
		err = cmdVersion(args, stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		err = usageErr(fmt.Errorf("unknown command %q", cmd))
	}
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(stderr, "distgate: %v\n", err)
	var e *exitError
	if errors.As(err, &e) {
		if e.usage {
			fmt.Fprint(stderr, usage)
		}
		return e.code
	}
	return exitRuntime
}

// configFlags parses the -config flag of run and check. The flag package
// writes nothing itself: a usage error is printed once, by realMain, and
// -h prints the usage on stdout.
func configFlags(name string, args []string, stdout io.Writer) (string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var path onceString
	fs.Var(&path, "config", "TOML configuration `file` (default: $DISTGATE_CONFIG, else the embedded default)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return "", err
		}
		return "", usageErr(fmt.Errorf("%s: %w", name, err))
	}
	if fs.NArg() > 0 {
		return "", usageErr(fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0)))
	}
	return path.v, nil
}

// onceString is a string flag that refuses a second value: with two
// -config, the file checked or run would depend on their order.
type onceString struct {
	v   string
	set bool
}

func (o *onceString) String() string { return o.v }

func (o *onceString) Set(s string) error {
	if o.set {
		return fmt.Errorf("given twice (%q, then %q)", o.v, s)
	}
	o.v, o.set = s, true
	return nil
}

// loadOrUsage loads the configuration and resolves the upstreams that are
// host names, as check and the start of run do (a reload does not resolve:
// upstreams cannot change on reload).
func loadOrUsage(path string, environ []string) (*config.Config, error) {
	l, err := config.Load(path, environ)
	if err != nil {
		return nil, configErr(err)
	}
	if err := l.ResolveUpstreams(context.Background(), nil); err != nil {
		return nil, configErr(err)
	}
	return l, nil
}

func cmdCheck(args, environ []string, stdout, stderr io.Writer) error {
	path, err := configFlags("check", args, stdout)
	if err != nil {
		return err
	}
	l, err := loadOrUsage(path, environ)
	if err != nil {
		return err
	}
	for _, w := range l.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprint(stdout, l.Encode())
	return nil
}

func cmdRun(args, environ []string, stdout, stderr io.Writer) error {
	// Package early caught the signals during initialization when the
	// command line is run's; when run is reached otherwise (tests), catch
	// them now.
	sigs := early.Run
	if sigs == nil {
		sigs = early.Catch()
	}
	defer sigs.Stop()
	ctx, stop := sigs.Context()
	defer stop()
	path, err := configFlags("run", args, stdout)
	if err != nil {
		return err
	}
	l, err := loadOrUsage(path, environ)
	if err != nil {
		return err
	}
	return run(ctx, l, path, environ, sigs.Hup(), stderr)
}

func cmdVersion(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return usageErr(fmt.Errorf("version: unexpected argument %q", args[0]))
	}
	fmt.Fprintln(stdout, version.String())
	return nil
}
