package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/distgate/distgate/stress/attack"
)

// proc is a process this program started; it is stopped by its PID only.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *attack.Lines
	done chan struct{}
}

func startProc(name, dir string, env []string, args ...string) (*proc, error) {
	p := &proc{name: name, out: attack.NewLines(), done: make(chan struct{})}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Dir = dir
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop sends sig and waits up to grace, then kills.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// waitFor waits until check accepts the output lines.
func (p *proc) waitFor(what string, timeout time.Duration, check func([]string) (int, bool)) (int, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ls, changed := p.out.Snapshot()
		if v, ok := check(ls); ok {
			return v, nil
		}
		select {
		case <-changed:
		case <-p.done:
			ls, _ := p.out.Snapshot()
			if v, ok := check(ls); ok {
				return v, nil
			}
			return 0, fmt.Errorf("%s exited while waiting for %s; output:\n%s", p.name, what, strings.Join(ls, "\n"))
		case <-deadline.C:
			return 0, fmt.Errorf("%s: no %s within %v", p.name, what, timeout)
		}
	}
}

// waitLine waits for a line equal to want at or after index from and
// returns the index after it.
func (p *proc) waitLine(want string, from int, timeout time.Duration) (int, error) {
	return p.waitFor(strconv.Quote(want), timeout, func(ls []string) (int, bool) {
		for i := from; i < len(ls); i++ {
			if ls[i] == want {
				return i + 1, true
			}
		}
		return 0, false
	})
}

// cleanEnv drops what would change distgate's or erl's behaviour.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "DISTGATE_") || strings.HasPrefix(k, "ERL_") || k == "HOME" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// freePort returns a port free on 127.0.0.1 and 127.0.0.2, below the
// ephemeral range so no outgoing connection holds it.
func freePort() (int, error) {
	for range 200 {
		p := 20000 + rand.IntN(12000)
		l1, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(p)))
		_ = l1.Close()
		if err != nil {
			continue
		}
		_ = l2.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no port free on both 127.0.0.1 and 127.0.0.2")
}

// ---- distgate ----

// startGate writes config to dir and runs distgate on it until every gate
// listens.
func startGate(bin, dir, config string) (*proc, error) {
	path := filepath.Join(dir, "distgate.toml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return nil, err
	}
	p, err := startProc("distgate", dir, cleanEnv(), bin, "run", "-config", path)
	if err != nil {
		return nil, err
	}
	n := strings.Count(config, "[[gate]]")
	if _, err := p.waitFor("listening", 20*time.Second, func(ls []string) (int, bool) {
		k := 0
		for _, l := range ls {
			if strings.Contains(l, `"message":"listening"`) {
				k++
			}
		}
		return k, k >= n
	}); err != nil {
		p.stop(syscall.SIGKILL, time.Second)
		return nil, err
	}
	return p, nil
}

// logLine is one JSON log line.
type logLine map[string]any

func (l logLine) str(k string) string {
	switch v := l[k].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return ""
	}
}

func (l logLine) num(k string) float64 { v, _ := l[k].(float64); return v }

// parseLog returns the JSON lines and how many lines were not one JSON
// object.
func parseLog(raw []string) ([]logLine, int) {
	out := make([]logLine, 0, len(raw))
	bad := 0
	for _, s := range raw {
		var l logLine
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			bad++
			continue
		}
		out = append(out, l)
	}
	return out, bad
}

func gateTOML(port int, upstream, keys string, sources ...string) string {
	q := make([]string, len(sources))
	for i, s := range sources {
		q[i] = strconv.Quote(s)
	}
	return fmt.Sprintf("drain_timeout = \"1s\"\n\n[[gate]]\nname = \"stress\"\nlisten = \"127.0.0.1:%d\"\nupstream = %q\n%s\n  [[gate.allow]]\n  sources = [%s]\n",
		port, upstream, keys, strings.Join(q, ", "))
}

// ---- Erlang ----

const cookie = "distgate-stress"

var erlFlags = []string{"+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"}

// nodeEval makes every connection that reaches the node visible in its
// output (net_kernel reports and nodeup/nodedown for all nodes), then
// prints "ready".
const nodeEval = `logger:set_primary_config(level, info), net_kernel:verbose(1),
Self = self(),
spawn(fun() ->
    ok = net_kernel:monitor_nodes(true, [{node_type, all}]),
    Self ! monitoring,
    (fun L() -> receive {E, N, _} -> io:format("~p ~p~n", [E, N]), L() end end)()
end),
receive monitoring -> io:format("ready~n") end.`

func erlEnv(dir string) []string {
	return cleanEnv("HOME="+dir, "ERL_CRASH_DUMP="+filepath.Join(dir, "erl_crash.dump"))
}

// startNode starts app@127.0.0.1 on 127.0.0.2:port (the design's topology)
// and returns once it has shown that a bare connection appears in its
// output, with the index of the first line after that.
func startNode(erl, dir string, port int) (*proc, int, error) {
	args := append([]string{erl, "-name", "app@127.0.0.1", "-setcookie", cookie,
		"-start_epmd", "false", "-erl_epmd_port", strconv.Itoa(port),
		"-kernel", "inet_dist_use_interface", "{127,0,0,2}", "-noshell", "-noinput"}, erlFlags...)
	p, err := startProc("node", dir, erlEnv(dir), append(args, "-eval", nodeEval)...)
	if err != nil {
		return nil, 0, err
	}
	fail := func(err error) (*proc, int, error) { p.stop(syscall.SIGKILL, time.Second); return nil, 0, err }
	if _, err := p.waitLine("ready", 0, 60*time.Second); err != nil {
		return fail(err)
	}
	a := net.JoinHostPort("127.0.0.2", strconv.Itoa(port))
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", a)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("node does not listen on %s: %w", a, err))
		}
		time.Sleep(50 * time.Millisecond) // polling a port that is not up yet
	}
	mark, err := p.waitFor("the probe connection's report", 20*time.Second, func(ls []string) (int, bool) {
		for i, l := range ls {
			if strings.HasPrefix(l, "{net_kernel,{'EXIT'") {
				return i + 1, true
			}
		}
		return 0, false
	})
	if err != nil {
		return fail(err)
	}
	return p, mark, nil
}

// clientArgs are the arguments of a hidden client without a listener that
// calls app@127.0.0.1 through port, running body with Node bound.
func clientArgs(erl, name string, port int, body string) []string {
	eval := "Node = 'app@127.0.0.1',\ntry\n" + body + "\ncatch C:R:S -> io:format(\"crash ~p:~p~n~p~n\", [C, R, S]), halt(3)\nend,\nhalt(0)."
	return append(append([]string{erl, "-name", name, "-setcookie", cookie, "-start_epmd", "false",
		"-erl_epmd_port", strconv.Itoa(port), "-dist_listen", "false", "-hidden", "-noshell", "-noinput"},
		erlFlags...), "-eval", eval)
}

// runClient runs a client to its end (at most timeout) and returns its
// output.
func runClient(erl, dir, name string, port int, body string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := clientArgs(erl, name, port, body)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir, cmd.Env = dir, erlEnv(dir)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitFile polls for a file another process creates.
func waitFile(path string, done <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("the client ended before it created %s", path)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling a file another process creates
	}
}
