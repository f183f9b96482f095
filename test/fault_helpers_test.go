package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/stress/attack"
)

// Helpers for the attack and fault tests (fault_test.go). They build on the
// harness in harness_test.go.

func (g *gate) pid() int { return g.cmd.Process.Pid }

// fds returns distgate's open descriptors now.
func (g *gate) fds() int {
	g.t.Helper()
	n, err := attack.FDs(g.pid())
	if err != nil {
		g.t.Fatalf("distgate's descriptors: %v", err)
	}
	return n
}

// sockets returns how many of distgate's descriptors are sockets: the
// listeners and the connections. (Its other descriptors include the pipes Go
// pools for splice, which the garbage collector frees when it likes.)
func (g *gate) sockets() int {
	g.t.Helper()
	n, err := attack.Sockets(g.pid())
	if err != nil {
		g.t.Fatalf("distgate's sockets: %v", err)
	}
	return n
}

// waitSockets waits until distgate holds at most want sockets and returns
// the last count.
func (g *gate) waitSockets(want int) int {
	g.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		n := g.sockets()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond) // polling /proc: nothing to wait on
	}
}

// allJSON fails the test unless every line distgate wrote is one JSON object.
func (g *gate) allJSON() {
	g.t.Helper()
	lines, _ := g.logs.Snapshot()
	for i, l := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			g.t.Errorf("distgate's output line %d is not one JSON object (%v): %q", i+1, err, l)
		}
	}
}

// startUpstream runs a Go stand-in for the node on addr (see
// attack.Upstream); cleanup closes it.
func startUpstream(t *testing.T, addr string) *attack.Upstream {
	t.Helper()
	u, err := attack.NewUpstream(addr)
	if err != nil {
		t.Fatalf("upstream on %s: %v", addr, err)
	}
	t.Cleanup(u.Close)
	return u
}

// goGateTOML is gateTOML for a gate on 127.0.0.1:port in front of the
// upstream at up (a Go stand-in, on whatever port it got).
func goGateTOML(port int, up, keys string, allows ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "drain_timeout = \"1s\"\n\n[[gate]]\nname = \"e2e\"\nlisten = \"127.0.0.1:%d\"\nupstream = %q\n", port, up)
	b.WriteString(keys)
	for _, a := range allows {
		b.WriteString(a)
	}
	return b.String()
}

// waitFile polls for a file the Erlang side creates.
func waitFile(t *testing.T, path string, done <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(clientTimeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case <-done:
			t.Fatalf("the client ended before it created %s", path)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v", path, clientTimeout)
		}
		time.Sleep(20 * time.Millisecond) // polling a file another process creates
	}
}

// opResult is how a client run in the background ended.
type opResult struct {
	out string
	err error
}

// runBackground runs the client c with body in the background; the result
// comes on the returned channel.
func runBackground(t *testing.T, c client, body string) <-chan opResult {
	ch := make(chan opResult, 1)
	go func() {
		out, err := c.run(t, body)
		ch <- opResult{out, err}
	}()
	return ch
}

// waitLine waits for the node to print line (after its mark) and returns
// the index after it.
func (n *node) waitLine(line string) int {
	n.t.Helper()
	mark := n.mark
	return waitLines(n.t, n.out, n.done, "node output "+strconv.Quote(line), func(ls []string) (int, bool) {
		for i := mark; i < len(ls); i++ {
			if ls[i] == line {
				return i + 1, true
			}
		}
		return 0, false
	})
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// floodRSSBound is the most memory distgate may hold through the denied
// flood. The race detector multiplies a Go program's memory several times.
var floodRSSBound = int64(map[bool]int{false: 40, true: 128}[raceEnabled]) << 20

// procLimit returns the soft and hard values of one line of
// /proc/PID/limits, e.g. "Max open files" -> "64 64".
func procLimit(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, name); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				return f[0] + " " + f[1]
			}
		}
	}
	t.Fatalf("no %q in /proc/%d/limits", name, pid)
	return ""
}

// connUpstream is a Go stand-in for the node that hands each connection to
// the test, for tests that act on the node's side of a splice.
type connUpstream struct {
	ln    *net.TCPListener
	conns chan *net.TCPConn
}

func startConnUpstream(t *testing.T, addr string) *connUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("upstream on %s: %v", addr, err)
	}
	u := &connUpstream{ln: ln.(*net.TCPListener), conns: make(chan *net.TCPConn, 64)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := u.ln.AcceptTCP()
			if err != nil {
				return
			}
			u.conns <- c
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		for {
			select {
			case c := <-u.conns:
				_ = c.Close()
			default:
				return
			}
		}
	})
	return u
}

// next returns the next connection distgate made to the upstream, with a
// deadline so a stuck test fails rather than hangs.
func (u *connUpstream) next(t *testing.T) *net.TCPConn {
	t.Helper()
	select {
	case c := <-u.conns:
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(waitTimeout))
		return c
	case <-time.After(waitTimeout):
		t.Fatalf("the upstream got no connection within %v", waitTimeout)
		return nil
	}
}

// freePort6 is freePort for a port also free on [::1].
func freePort6(t *testing.T) int {
	t.Helper()
	return freePortOn(t, "127.0.0.1", "127.0.0.2", "::1")
}

// erl6 returns the arguments of an IPv6 node named name (epmdless, port
// port), without a listener when client is set.
func erl6(name string, port int, client bool) []string {
	a := []string{"-name", name, "-setcookie", cookie, "-proto_dist", "inet6_tcp",
		"-start_epmd", "false", "-erl_epmd_port", strconv.Itoa(port), "-noshell"}
	if client {
		a = append(a, "-dist_listen", "false", "-hidden")
	} else {
		a = append(a, "-kernel", "inet_dist_use_interface", "{0,0,0,0,0,0,0,1}")
	}
	return append(a, erlFlags...)
}

// startNode6 starts app@::1 listening on [::1]:port and returns once it is
// up; cleanup stops it.
func startNode6(t *testing.T, port int) *attack.Lines {
	t.Helper()
	dir := t.TempDir()
	out := attack.NewLines()
	done := make(chan struct{})
	cmd := exec.Command(erlBin, append(erl6("app@::1", port, false), "-noinput", "-eval", nodeEval)...)
	cmd.Dir, cmd.Env = dir, erlEnv(dir)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		stopProcess(cmd, done, syscall.SIGTERM, 10*time.Second)
		if t.Failed() {
			t.Logf("node output:\n%s", out)
		}
	})
	waitLines(t, out, done, "the IPv6 node to print ready", func(ls []string) (int, bool) { return 0, contains(ls, "ready") })
	_ = dialRetry(t, "", addr("::1", port)).Close()
	return out
}

// rpc6 runs an IPv6 client name that asks app@::1 (through port) for its
// node name and returns what it printed.
func rpc6(t *testing.T, name string, port int) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, erlBin, append(erl6(name, port, true), "-noinput", "-eval",
		`io:format("~p~n", [rpc:call('app@::1', erlang, node, [], 10000)]), halt(0).`)...)
	cmd.Dir, cmd.Env = dir, erlEnv(dir)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client %s: %v; output:\n%s", name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// addLoopback6 adds addr/128 to lo (it needs CAP_NET_ADMIN) and removes it
// at cleanup. It reports false, with the reason, if the kernel refuses.
func addLoopback6(t *testing.T, a string) (bool, string) {
	t.Helper()
	out, err := exec.Command("ip", "-6", "addr", "add", a+"/128", "dev", "lo", "nodad").CombinedOutput()
	if err != nil {
		return false, fmt.Sprintf("ip -6 addr add %s/128 dev lo: %v: %s", a, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "-6", "addr", "del", a+"/128", "dev", "lo").CombinedOutput(); err != nil {
			t.Errorf("removing %s from lo: %v: %s", a, err, out)
		}
	})
	return true, ""
}

// waitRaw waits until n of distgate's output lines contain s. Unlike waitN
// it does not parse JSON and looks at each line once, which matters when a
// busy test waits many times on a long log.
func (g *gate) waitRaw(n int, s string) {
	g.t.Helper()
	seen, k := 0, 0
	waitLines(g.t, g.logs, g.done, fmt.Sprintf("%d distgate lines holding %q", n, s), func(ls []string) (int, bool) {
		for ; seen < len(ls); seen++ {
			if strings.Contains(ls[seen], s) {
				k++
			}
		}
		return k, k >= n
	})
}
