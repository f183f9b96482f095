package admin

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Exit codes (design.md, Admin socket).
const (
	exitOK      = 0 // done; also an unban of an address that was not banned
	exitFailed  = 1 // the daemon could not be reached, or refused
	exitUsage   = 2 // bad flags, address or duration; no socket configured
	maxTextRows = 100
)

// EnvSocket names the variable the commands (and run) read the socket from.
const EnvSocket = "DISTGATE_ADMIN_SOCKET"

// CLI runs the status, ban and unban commands. Each method takes the
// command's arguments (after its name) and the environment as KEY=VALUE
// pairs, writes to stdout and stderr, and returns the exit code.
//
// The socket comes from -socket, else DISTGATE_ADMIN_SOCKET, else the
// configuration's [admin] socket, which ConfigSocket reads.
type CLI struct {
	// ConfigSocket returns the [admin] socket of the configuration file at
	// path (path "" means what run would load: DISTGATE_CONFIG, else the
	// embedded default), or "" if it has none. An error is a configuration
	// error (exit 2). Nil: only -socket and DISTGATE_ADMIN_SOCKET work.
	ConfigSocket func(path string, environ []string) (string, error)
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
}

// usageError is a command-line mistake: exit 2.
type usageError struct{ error }

// target is the flags every command has.
type target struct {
	socket, config string
}

func (t *target) register(fs *flag.FlagSet) {
	fs.StringVar(&t.socket, "socket", "", "the admin socket `path` (default: $"+EnvSocket+", else [admin] socket in the -config file)")
	fs.StringVar(&t.config, "config", "", "the configuration `file` to read [admin] socket from (default: $DISTGATE_CONFIG)")
}

// socket finds the socket path.
func (cli CLI) socket(t target, environ []string) (string, error) {
	if t.socket != "" {
		return t.socket, nil
	}
	if v := getenv(environ, EnvSocket); v != "" {
		return v, nil
	}
	if cli.ConfigSocket != nil {
		s, err := cli.ConfigSocket(t.config, environ)
		if err != nil {
			return "", usageError{err}
		}
		if s != "" {
			return s, nil
		}
		if t.config != "" {
			return "", usageError{fmt.Errorf("%s has no [admin] socket: set it there (and restart distgate), or give -socket PATH", t.config)}
		}
	}
	return "", usageError{errors.New("no admin socket: give -socket PATH, set " + EnvSocket + ", or give -config FILE whose [admin] socket is set")}
}

func getenv(environ []string, key string) string {
	v := ""
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val // the last one wins, as in os.Getenv
		}
	}
	return v
}

func (cli CLI) client(socket string) Client { return Client{Socket: socket, Timeout: cli.Timeout} }

// command holds one command's flag set and output.
type command struct {
	name   string
	fs     *flag.FlagSet
	stderr io.Writer
	target target
}

func newCommand(name, synopsis string, stderr io.Writer) *command {
	c := &command{name: name, fs: flag.NewFlagSet(name, flag.ContinueOnError), stderr: stderr}
	c.fs.SetOutput(stderr)
	c.fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: distgate %s %s\n", name, synopsis)
		c.fs.PrintDefaults()
	}
	c.target.register(c.fs)
	return c
}

// parse parses args, with flags allowed before and after the operands
// ("ban 203.0.113.9 -for 1h"), and returns the operands.
func (c *command) parse(args []string) ([]string, error) {
	var operands []string
	for {
		if err := c.fs.Parse(args); err != nil {
			return nil, err // the flag package has printed it and the usage
		}
		args = c.fs.Args()
		if len(args) == 0 {
			return operands, nil
		}
		operands = append(operands, args[0])
		args = args[1:]
	}
}

// fail prints err and returns its exit code.
func (c *command) fail(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(c.stderr, "distgate %s: %v\n", c.name, ue.error)
		return exitUsage
	}
	fmt.Fprintf(c.stderr, "distgate %s: %v\n", c.name, err)
	return exitFailed
}

// Status runs `distgate status [-json] [-socket PATH] [-config FILE]`.
func (cli CLI) Status(args, environ []string, stdout, stderr io.Writer) int {
	c := newCommand("status", "[-json] [-socket PATH] [-config FILE]", stderr)
	asJSON := c.fs.Bool("json", false, "print the status as JSON (field names are stable: docs/OPERATIONS.md)")
	operands, err := c.parse(args)
	if err != nil {
		return exitCodeOfParse(err)
	}
	if len(operands) > 0 {
		return c.fail(usageError{fmt.Errorf("unexpected argument %q", operands[0])})
	}
	sock, err := cli.socket(c.target, environ)
	if err != nil {
		return c.fail(err)
	}
	st, err := cli.client(sock).Status(context.Background())
	if err != nil {
		return c.fail(err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return c.fail(err)
		}
		return exitOK
	}
	writeStatus(stdout, st)
	return exitOK
}

// Ban runs `distgate ban [-gate NAME] [-for DUR] [-socket PATH] [-config FILE] ADDRESS`.
func (cli CLI) Ban(args, environ []string, stdout, stderr io.Writer) int {
	c := newCommand("ban", "[-gate NAME] [-for DURATION] [-socket PATH] [-config FILE] ADDRESS", stderr)
	gate := c.fs.String("gate", "", "ban on this gate only (default: every gate)")
	dur := c.fs.Duration("for", 0, "how long, e.g. 1h (default: each gate's ban.duration)")
	operands, err := c.parse(args)
	if err != nil {
		return exitCodeOfParse(err)
	}
	forSet := false
	c.fs.Visit(func(f *flag.Flag) { forSet = forSet || f.Name == "for" })
	if forSet && *dur <= 0 {
		return c.fail(usageError{fmt.Errorf("-for %v: give a positive duration, or leave -for out for the gate's ban.duration", *dur)})
	}
	addr, err := c.address(operands)
	if err != nil {
		return c.fail(err)
	}
	sock, err := cli.socket(c.target, environ)
	if err != nil {
		return c.fail(err)
	}
	results, err := cli.client(sock).Ban(context.Background(), *gate, addr, *dur)
	if err != nil {
		return c.fail(err)
	}
	return c.report(results, addr.String(), stdout)
}

// Unban runs `distgate unban [-gate NAME] [-socket PATH] [-config FILE] ADDRESS`.
func (cli CLI) Unban(args, environ []string, stdout, stderr io.Writer) int {
	c := newCommand("unban", "[-gate NAME] [-socket PATH] [-config FILE] ADDRESS", stderr)
	gate := c.fs.String("gate", "", "lift the ban on this gate only (default: every gate)")
	operands, err := c.parse(args)
	if err != nil {
		return exitCodeOfParse(err)
	}
	addr, err := c.address(operands)
	if err != nil {
		return c.fail(err)
	}
	sock, err := cli.socket(c.target, environ)
	if err != nil {
		return c.fail(err)
	}
	results, err := cli.client(sock).Unban(context.Background(), *gate, addr)
	if err != nil {
		return c.fail(err)
	}
	return c.report(results, addr.String(), stdout)
}

func exitCodeOfParse(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

// address takes the one ADDRESS operand.
func (c *command) address(operands []string) (a netip.Addr, err error) {
	switch len(operands) {
	case 0:
		return a, usageError{errors.New("no ADDRESS given (usage: distgate " + c.name + " [flags] ADDRESS)")}
	case 1:
	default:
		return a, usageError{fmt.Errorf("one ADDRESS at a time; got %q and %q", operands[0], operands[1])}
	}
	a, err = ParseAddress(operands[0])
	if err != nil {
		return a, usageError{err}
	}
	return a, nil
}

// report prints one line per gate: what was done on stdout, refusals on
// stderr. Any refusal makes the exit code 1.
func (c *command) report(results []BanResult, addr string, stdout io.Writer) int {
	code := exitOK
	for _, r := range results {
		gate := "gate " + strconv.Quote(r.Gate)
		switch r.Result {
		case ResultBanned:
			if r.Ban != nil {
				fmt.Fprintf(stdout, "%s: banned %s until %s (%s)\n", gate, r.Ban.Source, r.Ban.Until.Local().Format(time.RFC3339), roundDur(time.Until(r.Ban.Until)))
			} else {
				fmt.Fprintf(stdout, "%s: banned %s\n", gate, addr)
			}
		case ResultUnbanned:
			src := addr
			if r.Ban != nil {
				src = r.Ban.Source.String()
			}
			fmt.Fprintf(stdout, "%s: unbanned %s\n", gate, src)
		case ResultNotBanned:
			fmt.Fprintf(stdout, "%s: %s was not banned\n", gate, addr)
		default:
			code = exitFailed
			var why string
			switch r.Result {
			case ResultNever:
				why = "refused: " + addr + " is in the gate's ban.never and is never banned"
			case ResultUnknownGate:
				why = "no such gate"
			case ResultRefused:
				why = "refused"
			default:
				why = "unexpected result " + strconv.Quote(r.Result)
			}
			if r.Message != "" {
				why += ": " + clean(r.Message)
			}
			fmt.Fprintf(c.stderr, "distgate %s: %s: %s\n", c.name, gate, why)
		}
	}
	return code
}

// writeStatus prints a Status for people; status -json is for programs.
func writeStatus(w io.Writer, st *Status) {
	fmt.Fprintf(w, "distgate %s, pid %d, up %s, config %s\n", clean(st.Version), st.PID, roundDur(st.Time.Sub(st.Started)), clean(st.Config))
	for _, g := range st.Gates {
		fmt.Fprintf(w, "\ngate %s: %s -> %s, forward %s, tls %s\n", clean(g.Name), clean(g.Listen), clean(g.Upstream), clean(g.Forward), clean(g.TLS))
		fmt.Fprintf(w, "  %s\n", plural(len(g.Connections), "connection"))
		if len(g.Connections) > 0 {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "    REMOTE\tNODE\tOUTCOME\tFOR\tBYTES IN\tBYTES OUT\tPATH")
			for _, c := range g.Connections[:min(len(g.Connections), maxTextRows)] {
				outcome, path := c.Outcome, c.Path
				if outcome == "" {
					outcome = "(handshake)"
				}
				if path == "" {
					path = "-"
				}
				node := clean(c.Node)
				if c.Identity != "" {
					node += " (cert " + clean(c.Identity) + ")"
				}
				if c.SNI != "" {
					node += " (sni " + clean(c.SNI) + ")"
				}
				fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%d\t%d\t%s\n", c.Remote, node, clean(outcome), roundDur(st.Time.Sub(c.Since)), c.BytesIn, c.BytesOut, clean(path))
			}
			_ = tw.Flush()
			more(w, len(g.Connections))
		}
		t := g.BanTable
		fmt.Fprintf(w, "  %s; ban table: %d failing sources, %d ban records (cap %d each); rate limiter: %d sources\n",
			plural(len(g.Bans), "ban"), t.Failures, t.Records, t.Max, g.LimiterSources)
		if len(g.Bans) > 0 {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "    SOURCE\tUNTIL\tLEFT\tFAILURES\tLEVEL")
			for _, b := range g.Bans[:min(len(g.Bans), maxTextRows)] {
				fmt.Fprintf(tw, "    %s\t%s\t%s\t%d\t%d\n", b.Source, b.Until.Local().Format(time.RFC3339), roundDur(b.Until.Sub(st.Time)), b.Failures, b.Level)
			}
			_ = tw.Flush()
			more(w, len(g.Bans))
		}
	}
}

func more(w io.Writer, n int) {
	if n > maxTextRows {
		fmt.Fprintf(w, "    ... and %d more (distgate status -json lists them all)\n", n-maxTextRows)
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func roundDur(d time.Duration) time.Duration {
	return max(d, 0).Round(time.Second)
}

// clean returns s as it is when it is printable ASCII, else quoted, so
// nothing the daemon reports can drive the terminal.
func clean(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}
