package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/stress/attack"
)

const (
	cookie   = "distgate-e2e"
	nodeName = "app@127.0.0.1"
	// waitTimeout bounds every wait for a log line, a reply or a port.
	waitTimeout = 20 * time.Second
	// clientTimeout bounds a one-shot erl client, boot to halt.
	clientTimeout = 60 * time.Second
)

// erlFlags keep idle BEAMs from spinning on a shared 2-core machine.
var erlFlags = []string{"+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"}

// ---- ports ----

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

// freePort returns a port P free on both 127.0.0.1 (distgate) and 127.0.0.2
// (the node).
func freePort(t *testing.T) int {
	t.Helper()
	return freePortOn(t, "127.0.0.1", "127.0.0.2")
}

// freePortOn returns a port free on every address given and not handed out
// before in this run. It draws from below the kernel's ephemeral range
// (32768–60999 by default) so that no outgoing connection of a parallel test
// (or of a load generator beside it) can be holding it.
func freePortOn(t *testing.T, ips ...string) int {
	t.Helper()
	for range 200 {
		p := 20000 + rand.IntN(12000)
		portMu.Lock()
		used := portsUsed[p]
		portMu.Unlock()
		if used || !portFree(p, ips) {
			continue
		}
		portMu.Lock()
		used = portsUsed[p]
		portsUsed[p] = true
		portMu.Unlock()
		if !used {
			return p
		}
	}
	t.Fatalf("no port free on all of %v", ips)
	return 0
}

// portFree reports whether p can be bound on every address in ips.
func portFree(p int, ips []string) bool {
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			_ = ln.Close()
		}
	}()
	for _, ip := range ips {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		held = append(held, ln)
	}
	return true
}

// ---- captured output ----

// waitLines polls b until check accepts its lines, the process behind it
// ends (done closes) or waitTimeout passes; the last two fail the test.
func waitLines[T any](t *testing.T, b *attack.Lines, done <-chan struct{}, what string, check func([]string) (T, bool)) T {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	exited := false
	for {
		lines, changed := b.Snapshot()
		if v, ok := check(lines); ok {
			return v
		}
		if exited {
			t.Fatalf("waiting for %s: the process exited; its output:\n%s", what, b)
		}
		select {
		case <-changed:
		case <-done:
			exited = true // look once more: the last lines may have come with the exit
		case <-deadline.C:
			t.Fatalf("waiting for %s: nothing after %v; output so far:\n%s", what, waitTimeout, b)
		}
	}
}

// ---- distgate ----

// logLine is one JSON log line of distgate.
type logLine map[string]any

// str returns a field as text ("" when absent); numbers print as Go does.
func (l logLine) str(k string) string {
	switch v := l[k].(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

func (l logLine) num(k string) float64 {
	v, _ := l[k].(float64)
	return v
}

// match is a predicate on a log line.
type match func(logLine) bool

func msg(m string) match { return func(l logLine) bool { return l.str("message") == m } }

func msgPrefix(p string) match {
	return func(l logLine) bool { return strings.HasPrefix(l.str("message"), p) }
}

func field(k, v string) match { return func(l logLine) bool { return l.str(k) == v } }

// from matches lines whose remote address has host ip.
func from(ip string) match {
	return func(l logLine) bool {
		h, _, err := net.SplitHostPort(l.str("remote"))
		return err == nil && h == ip
	}
}

func reason(r string) match { return field("reason", r) }

func nodeIs(n string) match { return field("node", n) }

func all(ms []match) match {
	return func(l logLine) bool {
		for _, m := range ms {
			if !m(l) {
				return false
			}
		}
		return true
	}
}

// gate is a running distgate process.
type gate struct {
	t       *testing.T
	path    string // its config file, rewritten by reconfigure
	cmd     *exec.Cmd
	logs    *attack.Lines
	done    chan struct{}
	waitErr error
}

// gateTOML returns a one-gate configuration for port: listen 127.0.0.1:port,
// upstream 127.0.0.2:port, a short drain, then the extra gate keys and the
// allow entries given.
func gateTOML(port int, keys string, allows ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "drain_timeout = \"1s\"\n\n[[gate]]\nname = \"e2e\"\nlisten = \"127.0.0.1:%d\"\nupstream = \"127.0.0.2:%d\"\n", port, port)
	b.WriteString(keys)
	for _, a := range allows {
		b.WriteString(a)
	}
	return b.String()
}

// allow returns one [[gate.allow]] entry; no names means any name.
func allow(sources []string, names ...string) string {
	q := func(ss []string) string {
		for i, s := range ss {
			ss[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(ss, ", ") + "]"
	}
	s := "\n  [[gate.allow]]\n  sources = " + q(append([]string(nil), sources...)) + "\n"
	if len(names) > 0 {
		s += "  names = " + q(append([]string(nil), names...)) + "\n"
	}
	return s
}

// startGate writes config to a file, runs `distgate run -config FILE`, and
// returns once every gate in it logged "listening". Cleanup stops it with
// SIGTERM.
func startGate(t *testing.T, config string) *gate {
	t.Helper()
	return startGateCmd(t, config, t.TempDir(), nil)
}

// startGateCmd is startGate with a say in how distgate is started: adjust,
// if not nil, gets the command before it starts (to wrap it in prlimit, run
// it as another user, ...). The config file is written in dir.
func startGateCmd(t *testing.T, config, dir string, adjust func(*exec.Cmd)) *gate {
	t.Helper()
	g := &gate{t: t, path: filepath.Join(dir, "distgate.toml"), logs: attack.NewLines(), done: make(chan struct{})}
	writeFile(t, g.path, config)
	g.cmd = exec.Command(distgateBin, "run", "-config", g.path)
	g.cmd.Env = cleanEnv()
	g.cmd.Stderr = g.logs
	g.cmd.Stdout = g.logs
	if adjust != nil {
		adjust(g.cmd)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start distgate (%s): %v", strings.Join(g.cmd.Args, " "), err)
	}
	go func() { g.waitErr = g.cmd.Wait(); close(g.done) }()
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			t.Logf("distgate log:\n%s", g.logs)
		}
	})
	g.waitN(strings.Count(config, "[[gate]]"), msg("listening"))
	return g
}

// lines returns the JSON lines logged so far (anything else is skipped).
func (g *gate) lines() []logLine { l, _ := g.logs.Snapshot(); return parseLog(l) }

func parseLog(raw []string) []logLine {
	out := make([]logLine, 0, len(raw))
	for _, s := range raw {
		var l logLine
		if json.Unmarshal([]byte(s), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

func filter(ls []logLine, ms ...match) []logLine {
	var out []logLine
	m := all(ms)
	for _, l := range ls {
		if m(l) {
			out = append(out, l)
		}
	}
	return out
}

// count returns how many lines logged so far match every predicate.
func (g *gate) count(ms ...match) int { return len(filter(g.lines(), ms...)) }

// waitN waits until at least n lines match every predicate and returns them.
func (g *gate) waitN(n int, ms ...match) []logLine {
	g.t.Helper()
	what := fmt.Sprintf("%d distgate log line(s) matching the test's predicates", n)
	return waitLines(g.t, g.logs, g.done, what, func(raw []string) ([]logLine, bool) {
		got := filter(parseLog(raw), ms...)
		return got, len(got) >= n
	})
}

// wait waits for one line matching every predicate and returns the first.
func (g *gate) wait(ms ...match) logLine { g.t.Helper(); return g.waitN(1, ms...)[0] }

func (g *gate) signal(sig syscall.Signal) {
	g.t.Helper()
	if err := g.cmd.Process.Signal(sig); err != nil {
		g.t.Fatalf("signal distgate: %v", err)
	}
}

// reconfigure rewrites the config file (atomically) and sends SIGHUP.
func (g *gate) reconfigure(config string) {
	g.t.Helper()
	writeFile(g.t, g.path, config)
	g.signal(syscall.SIGHUP)
}

// stop sends SIGTERM and waits for the exit; it returns the exit code. A
// distgate that outlives the drain by far is killed and fails the test. The
// race detector's reports (when the tests run with -race) fail it too.
func (g *gate) stop() int {
	g.t.Helper()
	select {
	case <-g.done:
	default:
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.done:
		case <-time.After(15 * time.Second):
			_ = g.cmd.Process.Kill()
			<-g.done
			g.t.Errorf("distgate did not stop within 15s of SIGTERM")
		}
	}
	if strings.Contains(g.logs.String(), "WARNING: DATA RACE") {
		g.t.Errorf("the race detector reported a data race in distgate")
	}
	return g.cmd.ProcessState.ExitCode()
}

// waitExit waits (bounded) for distgate to exit on its own and returns the
// exit code; -1 means a signal ended it.
func (g *gate) waitExit() int {
	g.t.Helper()
	select {
	case <-g.done:
	case <-time.After(waitTimeout):
		g.t.Fatalf("distgate did not exit within %v", waitTimeout)
	}
	return g.stop()
}

// ---- Erlang nodes and clients ----

// cleanEnv is the test process's environment without what would change
// distgate's or erl's behaviour behind the tests' back.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "DISTGATE_"), strings.HasPrefix(k, "ERL_"), strings.HasPrefix(k, "ELIXIR_"),
			strings.HasPrefix(k, "RELEASE_"), k == "HOME":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// erlEnv runs an Erlang VM with dir as its home and crash-dump directory, so
// nothing lands in the repository.
func erlEnv(dir string, extra ...string) []string {
	return cleanEnv(append([]string{"HOME=" + dir, "ERL_CRASH_DUMP=" + filepath.Join(dir, "erl_crash.dump")}, extra...)...)
}

// nodeEval runs on the node once distribution is up. It makes every
// connection that reaches the node visible in its output: net_kernel's
// verbose reports (logged at info) show each accepted connection that ends,
// and a monitor prints nodeup/nodedown for every node, hidden ones included.
// Then it prints "ready".
const nodeEval = `logger:set_primary_config(level, info), net_kernel:verbose(1),
Self = self(),
spawn(fun() ->
    ok = net_kernel:monitor_nodes(true, [{node_type, all}]),
    Self ! monitoring,
    (fun L() -> receive {E, N, _} -> io:format("~p ~p~n", [E, N]), L() end end)()
end),
receive monitoring -> io:format("ready~n") end.`

// node is a running Erlang node app@127.0.0.1 bound to 127.0.0.2:port.
type node struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
	out  *attack.Lines
	done chan struct{}
	mark int // output lines before this are not looked at by quietUntil
}

// startNode starts the node and returns once it listens. Readiness is
// checked by connecting to 127.0.0.2:port, which also proves the point of
// the silence checks: that bare connection shows up in the node's output.
func startNode(t *testing.T, port int) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{t: t, port: port, out: attack.NewLines(), done: make(chan struct{})}
	args := append([]string{"-name", nodeName, "-setcookie", cookie,
		"-start_epmd", "false", "-erl_epmd_port", strconv.Itoa(port),
		"-kernel", "inet_dist_use_interface", "{127,0,0,2}",
		"-noshell", "-noinput"}, erlFlags...)
	n.cmd = exec.Command(erlBin, append(args, "-eval", nodeEval)...)
	n.cmd.Dir = dir
	n.cmd.Env = erlEnv(dir)
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	go func() { _ = n.cmd.Wait(); close(n.done) }()
	t.Cleanup(func() {
		stopProcess(n.cmd, n.done, syscall.SIGTERM, 10*time.Second)
		if t.Failed() {
			t.Logf("node output:\n%s", n.out)
		}
	})
	waitLines(t, n.out, n.done, "the node to print ready", func(ls []string) (int, bool) {
		return 0, contains(ls, "ready")
	})
	addr := net.JoinHostPort("127.0.0.2", strconv.Itoa(port))
	c := dialRetry(t, "", addr)
	_ = c.Close()
	waitLines(t, n.out, n.done, "the node to report the probe connection", func(ls []string) (int, bool) {
		return 0, containsPrefix(ls, "{net_kernel,{'EXIT'")
	})
	n.mark = len(n.lines())
	return n
}

func (n *node) lines() []string { l, _ := n.out.Snapshot(); return l }

// quietUntil waits for the output line marker (after the mark) and fails the
// test if anything came before it: a connection that reached the node would
// have printed a net_kernel report or a nodeup line. The marker comes from
// an admitted client started after the connection under test ended, so it
// orders the output.
func (n *node) quietUntil(marker string) {
	n.t.Helper()
	mark := n.mark
	idx := waitLines(n.t, n.out, n.done, "node output "+strconv.Quote(marker), func(ls []string) (int, bool) {
		for i := mark; i < len(ls); i++ {
			if ls[i] == marker {
				return i, true
			}
		}
		return 0, false
	})
	if before := n.lines()[mark:idx]; len(before) > 0 {
		n.t.Errorf("the node printed something before %q; a denied connection reached it:\n%s", marker, strings.Join(before, "\n"))
	}
}

func contains(ls []string, s string) bool {
	for _, l := range ls {
		if l == s {
			return true
		}
	}
	return false
}

func containsPrefix(ls []string, p string) bool {
	for _, l := range ls {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// stopProcess signals a process the test started and waits for it, killing
// it (by PID) if it is still there after grace.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}, sig syscall.Signal, grace time.Duration) {
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// client describes an erl client: a hidden node without a listener that
// dials app@127.0.0.1 on port.
type client struct {
	name string // its node name, e.g. "b@127.0.0.1"
	port int
	src  string // bind its distribution connections to this address; "" = the default (127.0.0.1)
}

func (c client) args() []string {
	a := []string{"-name", c.name, "-setcookie", cookie,
		"-start_epmd", "false", "-erl_epmd_port", strconv.Itoa(c.port),
		"-dist_listen", "false", "-hidden", "-noshell"}
	if c.src != "" {
		tuple := "{" + strings.ReplaceAll(c.src, ".", ",") + "}"
		a = append(a, "-kernel", "inet_dist_connect_options", "[{ip,"+tuple+"}]")
	}
	return append(a, erlFlags...)
}

// run runs body (Erlang expressions, with Node bound to the target) and
// halts; it returns everything the client printed. A crash in body prints
// "crash ..." and exits 3.
func (c client) run(t *testing.T, body string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	eval := "Node = '" + nodeName + "',\ntry\n" + body + "\ncatch C:R:S -> io:format(\"crash ~p:~p~n~p~n\", [C, R, S]), halt(3)\nend,\nhalt(0)."
	cmd := exec.CommandContext(ctx, erlBin, append(c.args(), "-noinput", "-eval", eval)...)
	cmd.Dir = dir
	cmd.Env = erlEnv(dir)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("client %s did not finish within %v: %w", c.name, clientTimeout, err)
	}
	return string(out), err
}

// mustRun is run that fails the test unless the client exits 0.
func (c client) mustRun(t *testing.T, body string) string {
	t.Helper()
	out, err := c.run(t, body)
	if err != nil {
		t.Fatalf("client %s: %v; output:\n%s", c.name, err, out)
	}
	return out
}

// ping runs net_adm:ping and returns "pong" or "pang".
func (c client) ping(t *testing.T) string {
	t.Helper()
	out := c.mustRun(t, `io:format("ping ~p~n", [net_adm:ping(Node)])`)
	for _, l := range strings.Split(out, "\n") {
		if r, ok := strings.CutPrefix(l, "ping "); ok {
			return r
		}
	}
	t.Fatalf("client %s: no ping result in:\n%s", c.name, out)
	return ""
}

// shellEval is a client that stays up and takes commands on stdin, one per
// line, answering each with one line that starts with "> ".
const shellEval = `Node = '` + nodeName + `',
R = fun(F, A) -> io:format("> " ++ F ++ "~n", A) end,
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

// shell is a long-running client driven line by line.
type shell struct {
	t     *testing.T
	c     client
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *attack.Lines
	done  chan struct{}
}

// startShell starts c as a shell client and waits until it reads commands.
func startShell(t *testing.T, c client) *shell {
	t.Helper()
	dir := t.TempDir()
	s := &shell{t: t, c: c, out: attack.NewLines(), done: make(chan struct{})}
	s.cmd = exec.Command(erlBin, append(c.args(), "-eval", shellEval)...)
	s.cmd.Dir = dir
	s.cmd.Env = erlEnv(dir)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	var err error
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start client %s: %v", c.name, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = s.stdin.Close() // eof: the shell halts
		stopProcess(s.cmd, s.done, syscall.SIGKILL, 5*time.Second)
		if t.Failed() {
			t.Logf("client %s output:\n%s", c.name, s.out)
		}
	})
	waitLines(t, s.out, s.done, "client "+c.name+" to start", func(ls []string) (int, bool) {
		return 0, contains(ls, "> ready")
	})
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

// do sends one command and returns its answer.
func (s *shell) do(cmd string) string {
	s.t.Helper()
	before := len(replies(s.lines()))
	if _, err := io.WriteString(s.stdin, cmd+"\n"); err != nil {
		s.t.Fatalf("client %s: write %q: %v", s.c.name, cmd, err)
	}
	return waitLines(s.t, s.out, s.done, "client "+s.c.name+" to answer "+cmd, func(ls []string) (string, bool) {
		r := replies(ls)
		if len(r) > before {
			return r[before], true
		}
		return "", false
	})
}

func (s *shell) lines() []string { l, _ := s.out.Snapshot(); return l }

// ---- raw TCP ----

// dialFrom connects to addr from the local address src ("" = any), with a
// bounded timeout.
func dialFrom(t *testing.T, src, addr string) *net.TCPConn {
	t.Helper()
	c, err := dialer(src).Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %q: %v", addr, src, err)
	}
	tc := c.(*net.TCPConn)
	t.Cleanup(func() { _ = tc.Close() })
	return tc
}

func dialer(src string) *net.Dialer {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return d
}

// dialRetry dials addr until it accepts, for at most waitTimeout.
func dialRetry(t *testing.T, src, addr string) *net.TCPConn {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		c, err := dialer(src).Dial("tcp", addr)
		if err == nil {
			return c.(*net.TCPConn)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not accept within %v: %v", addr, waitTimeout, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a port that is not up yet
	}
}

// readToEnd reads from c until the peer closes it or limit passes. It
// returns the bytes read, how long it took, and nil for a clean close (EOF).
func readToEnd(c *net.TCPConn, limit time.Duration) (int64, time.Duration, error) {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	n, err := io.Copy(io.Discard, c)
	return n, time.Since(start), err
}

// isTimeout reports whether err is a read deadline passing.
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func addr(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
