package test

// End-to-end tests of `distgate probe` against real OTP nodes, a real epmd
// and distgate itself. The helpers here are prefixed "probe" so they do not
// collide with the shared harness; metrics_test.go and version_test.go use
// them too.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/distgate/distgate/wire"
)

// probeBuild returns the distgate binary under test; with extra go build
// flags it builds another one into a temporary directory (with -race when
// this test binary has it).
func probeBuild(t *testing.T, extra ...string) string {
	t.Helper()
	if len(extra) == 0 {
		return distgateBin
	}
	bin := filepath.Join(t.TempDir(), "distgate")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(append(args, extra...), "./cmd/distgate")
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// probeLog collects a process's output; safe for concurrent use. done
// closes when the process has exited, and err is then its Wait error.
type probeLog struct {
	mu   sync.Mutex
	b    bytes.Buffer
	done chan struct{}
	err  error
}

func (l *probeLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *probeLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// probeWaitLog polls l until it contains s; it fails at once if the process
// exits first.
func probeWaitLog(t *testing.T, l *probeLog, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(l.String(), s) {
		select {
		case <-l.done:
			if strings.Contains(l.String(), s) {
				return
			}
			t.Fatalf("the process exited (%v) before %q; output:\n%s", l.err, s, l.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %s; output so far:\n%s", s, timeout, l.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// probeWaitCount polls l until s occurs exactly n times (and fails if it
// occurs more often).
func probeWaitCount(t *testing.T, l *probeLog, s string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := strings.Count(l.String(), s)
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("%q occurs %d times, want %d; output:\n%s", s, got, n, l.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// probeStart starts cmd with its output in a probeLog, reaps it when it
// exits, and kills it by PID when the test ends.
func probeStart(t *testing.T, cmd *exec.Cmd) *probeLog {
	t.Helper()
	out := &probeLog{done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() {
		out.err = cmd.Wait()
		close(out.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-out.done
	})
	return out
}

// probeEnv is the environment without DISTGATE_* and ERL_EPMD_* variables,
// so the caller's shell cannot change what a test runs. Unless GORACE is
// set, a race-enabled distgate exits without the detector's default 1 s
// pause.
func probeEnv(extra ...string) []string {
	var env []string
	gorace := false
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DISTGATE_") || strings.HasPrefix(kv, "ERL_EPMD_") {
			continue
		}
		gorace = gorace || strings.HasPrefix(kv, "GORACE=")
		env = append(env, kv)
	}
	if !gorace {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return append(env, extra...)
}

// probeWaitPort polls until addr accepts a connection.
func probeWaitPort(t *testing.T, addr string, timeout time.Duration, out *probeLog) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening within %s: %v; output:\n%s", addr, timeout, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// probeErl is the erl to run; the tests fail (not skip) without it.
func probeErl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("erl")
	if err != nil {
		t.Fatalf("these tests need Erlang/OTP 25+ (`erl` on PATH): %v; apt-get install erlang-base", err)
	}
	return p
}

// probeStartNode starts app@127.0.0.1 epmdless, bound to 127.0.0.2:port, and
// waits until it listens.
func probeStartNode(t *testing.T, port int) *probeLog {
	t.Helper()
	cmd := exec.Command(probeErl(t), "-name", "app@127.0.0.1", "-setcookie", "probecookie",
		"-start_epmd", "false", "-erl_epmd_port", strconv.Itoa(port),
		"-kernel", "inet_dist_use_interface", "{127,0,0,2}", "-noshell", "-noinput")
	cmd.Env = probeEnv()
	out := probeStart(t, cmd)
	probeWaitPort(t, net.JoinHostPort("127.0.0.2", strconv.Itoa(port)), 30*time.Second, out)
	return out
}

// probeStartGate writes config to a file, runs distgate with it, and waits
// for the "listening" line. It returns the process, its output and the
// config file's path.
func probeStartGate(t *testing.T, bin, config string) (*exec.Cmd, *probeLog, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "distgate.toml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-config", path)
	cmd.Env = probeEnv()
	out := probeStart(t, cmd)
	probeWaitLog(t, out, `"message":"listening"`, 20*time.Second)
	return cmd, out, path
}

// probeRun runs `distgate probe args...` and returns stdout and the exit code.
func probeRun(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"probe"}, args...)...)
	cmd.Env = probeEnv()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run probe: %v", err)
	}
	if stderr.Len() > 0 {
		t.Logf("probe stderr: %s", stderr.String())
	}
	return stdout.String(), code
}

// probeJSON mirrors the -json output; the field names are the documented,
// stable ones (docs/OPERATIONS.md).
type probeJSON struct {
	Exposed bool `json:"exposed"`
	Epmd    []struct {
		Host  string `json:"host"`
		Addr  string `json:"addr"`
		Port  int    `json:"port"`
		State string `json:"state"`
		Nodes []struct {
			Name string `json:"name"`
			Port int    `json:"port"`
		} `json:"nodes"`
		Error   string `json:"error"`
		Verdict string `json:"verdict"`
		Fix     string `json:"fix"`
	} `json:"epmd"`
	Ports []probePortJSON `json:"ports"`
}

type probePortJSON struct {
	Host     string `json:"host"`
	Addr     string `json:"addr"`
	Port     int    `json:"port"`
	From     string `json:"from"`
	State    string `json:"state"`
	Attempts []struct {
		Message  string `json:"message"`
		Outcome  string `json:"outcome"`
		Status   string `json:"status"`
		ReplyHex string `json:"reply_hex"`
		Error    string `json:"error"`
		Millis   int64  `json:"ms"`
	} `json:"attempts"`
	Verdict string `json:"verdict"`
	Fix     string `json:"fix"`
}

func probeParse(t *testing.T, out string) probeJSON {
	t.Helper()
	var r probeJSON
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("probe -json output does not decode: %v\n%s", err, out)
	}
	return r
}

// outcome returns the attempt that sent message ("scanner_n" or "made_up_N").
func (p probePortJSON) attempt(t *testing.T, message string) (outcome, status string) {
	t.Helper()
	for _, a := range p.Attempts {
		if a.Message == message {
			return a.Outcome, a.Status
		}
	}
	t.Fatalf("no %s attempt in %+v", message, p)
	return "", ""
}

// TestProbeNodeBareAndBehindGate: a bare epmdless OTP node is exposed (it
// answers not_allowed to a well-formed 'N' message lacking mandatory flags);
// the same node behind distgate is silent, and distgate denied both probe
// messages without the node seeing them.
func TestProbeNodeBareAndBehindGate(t *testing.T) {
	bin := probeBuild(t)
	port := freePortOn(t, "127.0.0.1", "127.0.0.2")
	nodeLog := probeStartNode(t, port)
	_, gateLog, _ := probeStartGate(t, bin, fmt.Sprintf(`
[[gate]]
name = "probe"
listen = "127.0.0.1:%d"
upstream = "127.0.0.2:%d"
  [[gate.allow]]
  sources = ["127.0.0.0/8"]
`, port, port))
	noEpmd := strconv.Itoa(freePortOn(t, "127.0.0.1", "127.0.0.2")) // nothing listens there

	t.Run("behind distgate", func(t *testing.T) {
		out, code := probeRun(t, bin, "-json", "-timeout", "3s", "-epmd-port", noEpmd, fmt.Sprintf("127.0.0.1:%d", port))
		if code != 0 {
			t.Errorf("exit %d, want 0 (nothing exposed)\n%s", code, out)
		}
		r := probeParse(t, out)
		if r.Exposed || len(r.Ports) != 1 || len(r.Epmd) != 1 {
			t.Fatalf("got %+v", r)
		}
		if r.Epmd[0].State != "closed" {
			t.Errorf("epmd state %q, want closed", r.Epmd[0].State)
		}
		p := r.Ports[0]
		if p.State != "silent" || p.Port != port || p.From != "target" || p.Fix != "" {
			t.Errorf("port %+v, want silent", p)
		}
		for _, m := range []string{"scanner_n", "made_up_N"} {
			if o, _ := p.attempt(t, m); o != "closed" {
				t.Errorf("%s: outcome %q, want closed", m, o)
			}
		}
		// distgate turned both away on the flags; the node saw nothing.
		probeWaitCount(t, gateLog, `"reason":"missing_flags"`, 2, 5*time.Second)
		if n := strings.Count(gateLog.String(), `"message":"denied"`); n != 2 {
			t.Errorf("distgate logged %d denials, want 2:\n%s", n, gateLog.String())
		}
		if strings.Contains(nodeLog.String(), "distgate-probe") {
			t.Errorf("the node saw the probe through distgate:\n%s", nodeLog.String())
		}

		text, code := probeRun(t, bin, "-epmd-port", noEpmd, fmt.Sprintf("127.0.0.1:%d", port))
		t.Logf("text output:\n%s", text)
		if code != 0 || !strings.Contains(text, fmt.Sprintf("127.0.0.1:%d  silent", port)) ||
			!strings.Contains(text, "0 exposed, 1 silent, 1 closed, 0 filtered") {
			t.Errorf("exit %d, text:\n%s", code, text)
		}
	})

	t.Run("bare node", func(t *testing.T) {
		out, code := probeRun(t, bin, "-json", "-epmd-port", noEpmd, fmt.Sprintf("127.0.0.2:%d", port))
		if code != 1 {
			t.Errorf("exit %d, want 1 (exposed)\n%s", code, out)
		}
		r := probeParse(t, out)
		if !r.Exposed || len(r.Ports) != 1 {
			t.Fatalf("got %+v", r)
		}
		p := r.Ports[0]
		if p.State != "exposed" || p.Fix == "" || !strings.Contains(p.Verdict, "Erlang node") {
			t.Errorf("port %+v, want exposed with a fix", p)
		}
		if o, st := p.attempt(t, "made_up_N"); o != "answered" || st != "not_allowed" {
			t.Errorf("made_up_N: %q %q, want answered not_allowed", o, st)
		}
		// OTP 25.0–25.2 close the legacy 'n' message without a byte; 25.3+
		// answer it with not_allowed.
		if o, st := p.attempt(t, "scanner_n"); !(o == "closed" || o == "answered" && st == "not_allowed") {
			t.Errorf("scanner_n: %q %q", o, st)
		}
		probeWaitLog(t, nodeLog, "distgate-probe@probe.invalid", 5*time.Second)

		text, code := probeRun(t, bin, "-epmd-port", noEpmd, fmt.Sprintf("127.0.0.2:%d", port))
		t.Logf("text output:\n%s", text)
		if code != 1 || !strings.Contains(text, `answered "\x00\fsnot_allowed" (status not_allowed)`) ||
			!strings.Contains(text, "fix: ") {
			t.Errorf("exit %d, text:\n%s", code, text)
		}
	})
}

// TestProbeEpmd: a real epmd is exposed with the names it lists, and the
// port it gives for a node is probed too.
func TestProbeEpmd(t *testing.T) {
	bin := probeBuild(t)
	epmdBin, err := exec.LookPath("epmd")
	if err != nil {
		t.Fatalf("epmd (part of Erlang/OTP) is not on PATH: %v", err)
	}
	epmdPort := freePortOn(t, "127.0.0.1")
	epmdLog := probeStart(t, exec.Command(epmdBin, "-port", strconv.Itoa(epmdPort), "-address", "127.0.0.1"))
	probeWaitPort(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(epmdPort)), 10*time.Second, epmdLog)

	node := exec.Command(probeErl(t), "-name", "reg@127.0.0.1", "-setcookie", "probecookie",
		"-start_epmd", "false", "-kernel", "inet_dist_use_interface", "{127,0,0,1}", "-noshell", "-noinput")
	node.Env = probeEnv("ERL_EPMD_PORT=" + strconv.Itoa(epmdPort))
	nodeLog := probeStart(t, node)
	nodePort := probeWaitRegistered(t, epmdPort, "reg", nodeLog)

	out, code := probeRun(t, bin, "-json", "-epmd-port", strconv.Itoa(epmdPort), "127.0.0.1")
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s", code, out)
	}
	r := probeParse(t, out)
	if !r.Exposed || len(r.Epmd) != 1 {
		t.Fatalf("got %+v", r)
	}
	e := r.Epmd[0]
	if e.State != "exposed" || e.Port != epmdPort || len(e.Nodes) != 1 || e.Nodes[0].Name != "reg" ||
		e.Nodes[0].Port != nodePort || e.Fix == "" {
		t.Errorf("epmd %+v, want exposed listing reg at port %d", e, nodePort)
	}
	if len(r.Ports) != 1 || r.Ports[0].Port != nodePort || r.Ports[0].From != "epmd" || r.Ports[0].State != "exposed" {
		t.Errorf("ports %+v, want the listed port %d, exposed", r.Ports, nodePort)
	}

	text, _ := probeRun(t, bin, "-epmd-port", strconv.Itoa(epmdPort), "127.0.0.1")
	t.Logf("text output:\n%s", text)
	if want := fmt.Sprintf("reg at port %d", nodePort); !strings.Contains(text, want) {
		t.Errorf("text output lacks %q:\n%s", want, text)
	}
}

// probeWaitRegistered asks epmd for NAMES until name is listed, and returns
// its port.
func probeWaitRegistered(t *testing.T, epmdPort int, name string, out *probeLog) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(epmdPort)), time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Write(wire.AppendNamesRequest(nil))
			var b bytes.Buffer
			_, _ = b.ReadFrom(c)
			_ = c.Close()
			if n, err := wire.ParseNames(b.Bytes()); err == nil {
				for _, nd := range n.Nodes {
					if nd.Name == name {
						return int(nd.Port)
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never registered with epmd on %d; node output:\n%s", name, epmdPort, out.String())
	return 0
}

// TestProbeClosed: refused ports are closed, on IPv4 and IPv6, and the exit
// code is 0.
func TestProbeClosed(t *testing.T) {
	bin := probeBuild(t)
	p4 := freePortOn(t, "127.0.0.1")
	p6 := freePortOn(t, "::1")
	out, code := probeRun(t, bin, "-json", "-epmd-port", "0",
		fmt.Sprintf("127.0.0.1:%d", p4), fmt.Sprintf("[::1]:%d", p6))
	if code != 0 {
		t.Errorf("exit %d, want 0\n%s", code, out)
	}
	r := probeParse(t, out)
	if r.Exposed || len(r.Epmd) != 0 || len(r.Ports) != 2 {
		t.Fatalf("got %+v", r)
	}
	for i, want := range []struct {
		addr string
		port int
	}{{"127.0.0.1", p4}, {"::1", p6}} {
		p := r.Ports[i]
		if p.Addr != want.addr || p.Port != want.port || p.State != "closed" {
			t.Errorf("ports[%d] = %+v, want %s:%d closed", i, p, want.addr, want.port)
		}
	}
}

// TestProbeUsage: bad invocations exit 2 and say what is wrong.
func TestProbeUsage(t *testing.T) {
	bin := probeBuild(t)
	for _, args := range [][]string{
		{},
		{"127.0.0.1:0"},
		{"127.0.0.1:65536"},
		{"-timeout", "0s", "127.0.0.1:1"},
		{"-epmd-port", "0", "127.0.0.1"},
		{"-nosuchflag", "127.0.0.1"},
	} {
		cmd := exec.Command(bin, append([]string{"probe"}, args...)...)
		cmd.Env = probeEnv()
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || len(out) == 0 {
			t.Errorf("probe %q: %v, output %q; want exit 2 with a message", args, err, out)
		}
		if ee != nil {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				t.Errorf("probe %q died of %s", args, ws.Signal())
			}
		}
	}
}
