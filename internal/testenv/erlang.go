package testenv

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Cookie is the cookie of every node and client unless Erl.Cookie says
// otherwise.
const Cookie = "distgate-test"

// ErlFlags keep idle BEAMs from spinning on a shared machine: schedulers
// do not busy-wait.
var ErlFlags = []string{"+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"}

// ErlPath returns the erl on PATH, or an error that says how to install it.
func ErlPath() (string, error) {
	p, err := exec.LookPath("erl")
	if err != nil {
		return "", fmt.Errorf("`erl` is not on PATH; Erlang/OTP 25 or later is needed "+
			"(Debian/Ubuntu: apt-get install erlang-base erlang-crypto): %w", err)
	}
	return p, nil
}

// Erl describes an Erlang VM: a node, epmdless, listening on Addr:Port, or
// a hidden client without a listener that dials Target through Port.
type Erl struct {
	Name   string // -name, e.g. app@127.0.0.1
	Cookie string // "" means Cookie
	// Port is the epmdless distribution port (-erl_epmd_port): where a node
	// listens and a client dials. Zero leaves the VM to ask epmd.
	Port int
	// Addr is where a node listens (inet_dist_use_interface) or where a
	// client's connections come from (inet_dist_connect_options); "" means
	// the VM's default.
	Addr string
	IPv6 bool // -proto_dist inet6_tcp
	// TLS, if set, is the path of an ssl_dist_optfile (WriteDistOpts):
	// the VM runs TLS distribution, -proto_dist inet_tls (inet6_tls with
	// IPv6).
	TLS string
	// Hidden makes a client: -dist_listen false -hidden.
	Hidden bool
	// Target is the node a client calls; its body sees it as Node.
	Target string
	Args   []string // more arguments, after the common ones
	Env    []string // more environment, after ErlEnv's
	Log    string   // also copy the VM's output to this file
}

// Bind returns e with its address set: where a node listens, or where a
// client's connections come from.
func (e Erl) Bind(addr string) Erl { e.Addr = addr; return e }

// Argv returns the command line: erl, the common flags, the address and
// mode flags, e.Args, then extra.
func (e Erl) Argv(extra ...string) ([]string, error) {
	erl, err := ErlPath()
	if err != nil {
		return nil, err
	}
	a := []string{erl, "-name", e.Name, "-setcookie", cmp.Or(e.Cookie, Cookie), "-start_epmd", "false"}
	if e.Port != 0 {
		a = append(a, "-erl_epmd_port", strconv.Itoa(e.Port))
	}
	switch {
	case e.TLS != "" && e.IPv6:
		a = append(a, "-proto_dist", "inet6_tls", "-ssl_dist_optfile", e.TLS)
	case e.TLS != "":
		a = append(a, "-proto_dist", "inet_tls", "-ssl_dist_optfile", e.TLS)
	case e.IPv6:
		a = append(a, "-proto_dist", "inet6_tcp")
	}
	if e.Hidden {
		a = append(a, "-dist_listen", "false", "-hidden")
	}
	if e.Addr != "" {
		tuple, err := erlIP(e.Addr)
		if err != nil {
			return nil, err
		}
		if e.Hidden {
			a = append(a, "-kernel", "inet_dist_connect_options", "[{ip,"+tuple+"}]")
		} else {
			a = append(a, "-kernel", "inet_dist_use_interface", tuple)
		}
	}
	a = append(a, "-noshell")
	a = append(a, ErlFlags...)
	a = append(a, e.Args...)
	return append(a, extra...), nil
}

// erlIP writes an address as an Erlang tuple: {127,0,0,2}, or eight
// 16-bit groups for IPv6.
func erlIP(s string) (string, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return "", fmt.Errorf("erl address %q: %w", s, err)
	}
	var parts []string
	if ip.Is4() {
		for _, b := range ip.As4() {
			parts = append(parts, strconv.Itoa(int(b)))
		}
	} else {
		b := ip.As16()
		for i := 0; i < 16; i += 2 {
			parts = append(parts, strconv.Itoa(int(b[i])<<8|int(b[i+1])))
		}
	}
	return "{" + strings.Join(parts, ",") + "}", nil
}

// Cmd returns the command that runs e in dir with the extra arguments
// (-noinput, -eval ..., -run ...), in ErlEnv(dir).
func (e Erl) Cmd(dir string, extra ...string) (Cmd, error) {
	argv, err := e.Argv(extra...)
	if err != nil {
		return Cmd{}, err
	}
	return Cmd{Name: e.Name, Args: argv, Dir: dir, Env: ErlEnv(dir, e.Env...), Log: e.Log}, nil
}

// NodeEval runs on a watched node once distribution is up. It makes every
// connection that reaches the node visible in its output: net_kernel's
// verbose reports (logged at info) show each accepted connection that
// ends, and a monitor prints nodeup/nodedown for every node, hidden ones
// included. Then it prints "ready".
const NodeEval = `logger:set_primary_config(level, info), net_kernel:verbose(1),
Self = self(),
spawn(fun() ->
    ok = net_kernel:monitor_nodes(true, [{node_type, all}]),
    Self ! monitoring,
    (fun L() -> receive {E, N, _} -> io:format("~p ~p~n", [E, N]), L() end end)()
end),
receive monitoring -> io:format("ready~n") end.`

// Node is a running Erlang node.
type Node struct {
	*Proc
	Erl Erl
	// Mark is the index of the first output line that QuietUntil and
	// AwaitLine look at.
	Mark int
}

// StartNode starts e as a node in dir and returns once it is up; the
// caller stops it. A watched node runs NodeEval: StartNode waits for its
// "ready", then (when e.Port is set) connects to it and waits for its
// report of that bare connection, which proves that a connection reaching
// the node shows in its output; Mark points after it. An unwatched node is
// up once it accepts connections.
func (e Erl) StartNode(dir string, watch bool) (*Node, error) {
	extra := []string{"-noinput"}
	if watch {
		extra = append(extra, "-eval", NodeEval)
	}
	c, err := e.Cmd(dir, extra...)
	if err != nil {
		return nil, err
	}
	p, err := c.Start()
	if err != nil {
		return nil, err
	}
	n := &Node{Proc: p, Erl: e}
	if err := n.up(watch); err != nil {
		p.Kill()
		return nil, err
	}
	return n, nil
}

func (n *Node) up(watch bool) error {
	addr := Addr(cmp.Or(n.Erl.Addr, "127.0.0.1"), n.Erl.Port)
	if !watch {
		return WaitPort(addr, 2*WaitTimeout, n.Proc)
	}
	if _, err := n.WaitLine("ready", 0, 3*WaitTimeout); err != nil || n.Erl.Port == 0 {
		return err
	}
	if err := WaitPort(addr, WaitTimeout, n.Proc); err != nil {
		return err
	}
	var err error
	n.Mark, err = WaitLines(n.Out, n.Done(), n.Name+": the report of the probe connection", WaitTimeout, func(ls []string) (int, bool) {
		i := slices.IndexFunc(ls, func(l string) bool { return strings.HasPrefix(l, "{net_kernel,{'EXIT'") })
		return i + 1, i >= 0
	})
	return err
}

// StartNode starts a watched node for a test; cleanup stops it.
func StartNode(t testing.TB, e Erl) *Node {
	t.Helper()
	n, err := e.StartNode(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	n.own(t)
	return n
}

// AwaitLine waits for the node to print line (at or after Mark) and
// returns the index after it; it fails the test if it does not.
func (n *Node) AwaitLine(line string) int {
	n.helper()
	i, err := n.WaitLine(line, n.Mark, WaitTimeout)
	n.must(err)
	return i
}

// QuietUntil waits for the output line marker (at or after Mark) and
// fails the test if anything came before it: a connection that reached
// the node would have printed a net_kernel report or a nodeup line. The
// marker comes from an admitted client started after the connection under
// test ended, so it orders the output.
func (n *Node) QuietUntil(marker string) {
	n.helper()
	end := n.AwaitLine(marker) - 1
	if before := n.Out.All()[n.Mark:end]; len(before) > 0 {
		n.tb.Errorf("the node printed something before %q; a denied connection reached it:\n%s", marker, strings.Join(before, "\n"))
	}
}

// clientEval wraps a client's body: Node is bound to the target, a crash
// prints "crash ..." and exits 3, and the client halts at the end.
func (e Erl) clientEval(body string) string {
	return "Node = '" + e.Target + "',\ntry\n" + body +
		"\ncatch C:R:S -> io:format(\"crash ~p:~p~n~p~n\", [C, R, S]), halt(3)\nend,\nhalt(0)."
}

// Run runs e as a one-shot client in dir: body (Erlang expressions, with
// Node bound to e.Target), then halt. It returns everything the client
// printed; a crash in body prints "crash ..." and exits 3.
func (e Erl) Run(dir, body string, timeout time.Duration) (string, error) {
	c, err := e.Cmd(dir, "-noinput", "-eval", e.clientEval(body))
	if err != nil {
		return "", err
	}
	out, err := c.Run(timeout)
	if err != nil {
		err = fmt.Errorf("client %s: %w", e.Name, err)
	}
	return out, err
}

// RunClient runs e.Run for a test, bounded by ClientTimeout.
func RunClient(t testing.TB, e Erl, body string) (string, error) {
	t.Helper()
	return e.Run(t.TempDir(), body, ClientTimeout)
}

// MustRun is RunClient that fails the test unless the client exits 0.
func MustRun(t testing.TB, e Erl, body string) string {
	t.Helper()
	out, err := RunClient(t, e, body)
	if err != nil {
		t.Fatalf("%v; output:\n%s", err, out)
	}
	return out
}

// Ping runs net_adm:ping from a client and returns "pong" or "pang".
func Ping(t testing.TB, e Erl) string {
	t.Helper()
	out := MustRun(t, e, `io:format("ping ~p~n", [net_adm:ping(Node)])`)
	for _, l := range strings.Split(out, "\n") {
		if r, ok := strings.CutPrefix(l, "ping "); ok {
			return r
		}
	}
	t.Fatalf("client %s: no ping result in:\n%s", e.Name, out)
	return ""
}

// shellEval makes a client that stays up and takes commands on stdin, one
// per line, answering each with one line that starts with "> ".
const shellEval = `R = fun(F, A) -> io:format("> " ++ F ++ "~n", A) end,
R("ready", []),
(fun L() ->
    case io:get_line("") of
        eof -> halt(0);
        {error, _} -> halt(1);
        Line ->
            case string:trim(Line) of
                "node" -> R("~p", [rpc:call(Node, erlang, node, [], 10000)]);
                "ping" -> R("~p", [net_adm:ping(Node)]);
                "monitor" -> R("~p", [erlang:monitor_node(Node, true)]);
                "wait_down" -> receive {nodedown, Node} -> R("nodedown", []) after 10000 -> R("no nodedown", []) end;
                "connected" -> R("~p", [lists:member(Node, nodes(hidden))]);
                Other -> R("unknown ~p", [Other])
            end,
            L()
    end
end)().`

// Shell is a long-running client driven line by line, the way an operator
// keeps a remote shell open: commands "node" (an rpc), "ping", "monitor",
// "wait_down" and "connected".
type Shell struct {
	*Proc
	Erl Erl
}

// StartShell starts e as a shell client for a test and waits until it
// reads commands. Cleanup closes its stdin and kills it.
func StartShell(t testing.TB, e Erl) *Shell {
	t.Helper()
	c, err := e.Cmd(t.TempDir(), "-eval", "Node = '"+e.Target+"',\n"+shellEval)
	if err != nil {
		t.Fatal(err)
	}
	c.Stdin, c.StopSignal, c.Grace = true, syscall.SIGKILL, 5*time.Second
	s := &Shell{Proc: Start(t, c), Erl: e}
	s.Await("the shell to start", func(ls []string) bool { return Has(ls, "> ready") })
	return s
}

func replies(ls []string) []string {
	var r []string
	for _, l := range ls {
		if v, ok := strings.CutPrefix(l, "> "); ok {
			r = append(r, v)
		}
	}
	return r
}

// Do sends one command and returns its answer.
func (s *Shell) Do(cmd string) string {
	s.helper()
	before := len(replies(s.Out.All())) // "ready" included
	if _, err := io.WriteString(s.Stdin, cmd+"\n"); err != nil {
		s.must(fmt.Errorf("client %s: write %q: %w", s.Erl.Name, cmd, err))
	}
	r, err := WaitLines(s.Out, s.Done(), "client "+s.Erl.Name+" to answer "+cmd, WaitTimeout, func(ls []string) (string, bool) {
		r := replies(ls)
		if len(r) > before {
			return r[before], true
		}
		return "", false
	})
	s.must(err)
	return r
}

// Quit closes the shell's stdin, on which it halts, and returns how it
// exited (nil for exit code 0), waiting at most ClientTimeout.
func (s *Shell) Quit() error {
	_ = s.Stdin.Close()
	if err := s.WaitExit(ClientTimeout); err != nil {
		return err
	}
	return s.Err()
}
