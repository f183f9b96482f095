package scaffold

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/cliflags"
)

// Exit codes (design: Command line).
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// Usage is the synopsis of `distgate init`.
const Usage = "usage: distgate init elixir|erlang -node NAME@HOST -public ADDR -allow CIDR [-allow CIDR]... [-port 9100] [-out DIR] [-force]\n"

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// Main runs `distgate init` with args (after the word init) and returns the
// exit code: 0 written, 1 a file could not be written, 2 usage (a bad
// flag, a node name OTP would refuse, a file that exists without -force).
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	var allow listFlag
	fs.StringVar(&o.Node, "node", "", "the node's `NAME@HOST`; HOST needs a dot or must be an IP address")
	fs.StringVar(&o.Public, "public", "", "the `address` clients reach this machine on; distgate listens there")
	fs.Var(&allow, "allow", "a source that may connect: `CIDR` or address (repeat for more)")
	fs.IntVar(&o.Port, "port", DefaultPort, "the distribution `port`, the same for the node (on 127.0.0.1) and distgate")
	out := fs.String("out", ".", "the `directory` to write into (for elixir: the mix project)")
	force := fs.Bool("force", false, "overwrite files that exist")
	fs.Usage = func() {
		fmt.Fprint(stderr, Usage+"  writes distgate.toml and, for elixir, rel/env.sh.eex, rel/vm.args.eex and rel/remote.vm.args.eex\n")
		fs.PrintDefaults()
	}
	bad := func(err error) int {
		fmt.Fprintf(stderr, "distgate: init: %v\n", err)
		return exitUsage
	}
	// The kind and the flags in any order, as probe takes them.
	rest, err := cliflags.Parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	switch len(rest) {
	case 0:
		return bad(errors.New("say which kind of node: distgate init elixir ... or distgate init erlang ...\n" + Usage))
	case 1:
		o.Kind = rest[0]
	default:
		return bad(fmt.Errorf("unexpected argument %q after %q", rest[1], rest[0]))
	}
	o.Allow = allow
	files, err := Plan(o)
	if err != nil {
		return bad(err)
	}
	if err := Write(*out, files, *force); err != nil {
		if errors.Is(err, ErrExists) {
			return bad(err)
		}
		fmt.Fprintf(stderr, "distgate: init: %v\n", err)
		return exitRuntime
	}
	s, _ := check(o) // Plan accepted it
	for _, f := range files {
		fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(*out, filepath.FromSlash(f.Path)))
	}
	// What `distgate check` would warn about (a /0 source, say).
	if l, err := config.Load(filepath.Join(*out, "distgate.toml"), nil); err == nil {
		for _, w := range l.Warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
	}
	fmt.Fprint(stdout, "\nnext:\n")
	for _, c := range nextCommands(s, *out) {
		fmt.Fprintf(stdout, "  # %s\n  %s\n", c[1], c[0])
	}
	fmt.Fprint(stdout, then(s))
	return exitOK
}

// nextCommands are the three commands after init, with what each does.
func nextCommands(s *setup, out string) [][2]string {
	conf := filepath.Join(out, "distgate.toml")
	gate := [2]string{"distgate run -config " + conf, "the gate, on " + s.listen()}
	if s.Kind == KindElixir {
		build, bin := "MIX_ENV=prod mix release", filepath.Join("_build", "prod", "rel", s.name, "bin", s.name)
		if out != "." {
			build = "(cd " + out + " && " + build + ")"
			bin = filepath.Join(out, bin)
		}
		return [][2]string{
			{build, "build the release with these rel/ files"},
			{bin + " daemon", "the node, on " + s.upstream()},
			gate,
		}
	}
	return [][2]string{
		{fmt.Sprintf("erl -name %s -start_epmd false -erl_epmd_port %d -kernel inet_dist_use_interface '{127,0,0,1}' -noshell -noinput",
			s.Node, s.Port), "the node, on " + s.upstream()},
		gate,
		{fmt.Sprintf("erl -name ops@%s -start_epmd false -erl_epmd_port %d -dist_listen false -hidden -remsh %s", s.host, s.Port, s.Node),
			"a shell on the node, from an allowed source"},
	}
}

// then says what an allowed client needs, after the three commands.
func then(s *setup) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nthen, from %s", strings.Join(s.sources, ", "))
	if !s.hostIsIP() {
		fmt.Fprintf(&b, ", with %s resolving to %s\n(DNS, or the line \"%s %s\" in /etc/hosts)", s.host, s.public, s.public, s.host)
	}
	if s.Kind == KindElixir {
		fmt.Fprintf(&b, ":\n  bin/%s rpc 'IO.puts(node())'\n  bin/%s remote\n", s.name, s.name)
	} else {
		b.WriteString(":\n  the third command. Both ends read the cookie from ~/.erlang.cookie (erl writes\n" +
			"  a random one the first time): copy it to the machines you connect from. Leave\n" +
			"  the shell with Ctrl-G, then q (q(). would stop the node).\n")
	}
	return b.String()
}
