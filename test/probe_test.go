package test

// End-to-end tests of `distgate probe` against real OTP nodes, a real epmd
// and distgate itself.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
	"github.com/distgate/distgate/wire"
)

// probeRun runs `distgate probe args...` and returns stdout and the exit
// code; stderr goes to the test's log.
func probeRun(t *testing.T, args ...string) (string, int) {
	t.Helper()
	stdout, stderr, code := testenv.RunDistgate(t, nil, append([]string{"probe"}, args...)...)
	if stderr != "" {
		t.Logf("probe stderr: %s", stderr)
	}
	return stdout, code
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
	Ports    []probePortJSON `json:"ports"`
	Unprobed []string        `json:"unprobed"`
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
	port := testenv.AppPort(t)
	node := testenv.StartNode(t, testenv.App(port))
	g := testenv.StartGate(t, testenv.AppGate("probe", port, testenv.Allow([]string{"127.0.0.0/8"})))
	noEpmd := strconv.Itoa(testenv.AppPort(t)) // nothing listens there

	t.Run("behind distgate", func(t *testing.T) {
		out, code := probeRun(t, "-json", "-timeout", "3s", "-epmd-port", noEpmd, fmt.Sprintf("127.0.0.1:%d", port))
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
		if ls, err := g.WaitLines(2, 5*time.Second, testenv.Reason("missing_flags")); err != nil || len(ls) != 2 {
			t.Fatalf("%d missing_flags lines (%v), want 2", len(ls), err)
		}
		if n := strings.Count(g.Out.String(), `"message":"denied"`); n != 2 {
			t.Errorf("distgate logged %d denials, want 2:\n%s", n, g.Out)
		}
		if strings.Contains(node.Out.String(), "distgate-probe") {
			t.Errorf("the node saw the probe through distgate:\n%s", node.Out)
		}

		text, code := probeRun(t, "-epmd-port", noEpmd, fmt.Sprintf("127.0.0.1:%d", port))
		t.Logf("text output:\n%s", text)
		if code != 0 || !strings.Contains(text, fmt.Sprintf("127.0.0.1:%d  silent", port)) ||
			!strings.Contains(text, "0 exposed, 1 silent, 1 closed, 0 filtered") {
			t.Errorf("exit %d, text:\n%s", code, text)
		}
	})

	t.Run("bare node", func(t *testing.T) {
		out, code := probeRun(t, "-json", "-epmd-port", noEpmd, fmt.Sprintf("127.0.0.2:%d", port))
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
		node.AwaitText("distgate-probe@probe.invalid", 5*time.Second)

		text, code := probeRun(t, "-epmd-port", noEpmd, fmt.Sprintf("127.0.0.2:%d", port))
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
	epmdBin, err := exec.LookPath("epmd")
	if err != nil {
		t.Fatalf("epmd (part of Erlang/OTP) is not on PATH: %v", err)
	}
	epmdPort := testenv.Port(t, "127.0.0.1")
	epmd := testenv.Start(t, testenv.Cmd{Args: []string{epmdBin, "-port", strconv.Itoa(epmdPort), "-address", "127.0.0.1"}})
	if err := testenv.WaitPort(testenv.Addr("127.0.0.1", epmdPort), 10*time.Second, epmd); err != nil {
		t.Fatal(err)
	}

	// A node that registers with that epmd (no -erl_epmd_port).
	node := testenv.StartNode(t, testenv.Erl{Name: "reg@127.0.0.1", Addr: "127.0.0.1",
		Env: []string{"ERL_EPMD_PORT=" + strconv.Itoa(epmdPort)}})
	nodePort := probeWaitRegistered(t, epmdPort, "reg", node)

	out, code := probeRun(t, "-json", "-epmd-port", strconv.Itoa(epmdPort), "127.0.0.1")
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

	text, _ := probeRun(t, "-epmd-port", strconv.Itoa(epmdPort), "127.0.0.1")
	t.Logf("text output:\n%s", text)
	if want := fmt.Sprintf("reg at port %d", nodePort); !strings.Contains(text, want) {
		t.Errorf("text output lacks %q:\n%s", want, text)
	}
}

// probeWaitRegistered asks epmd for NAMES until name is listed, and returns
// its port.
func probeWaitRegistered(t *testing.T, epmdPort int, name string, node *testenv.Node) int {
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
	t.Fatalf("%s never registered with epmd on %d; node output:\n%s", name, epmdPort, node.Out)
	return 0
}

// TestProbeClosed: refused ports are closed, on IPv4 and IPv6, and the exit
// code is 0.
func TestProbeClosed(t *testing.T) {
	p4 := testenv.Port(t, "127.0.0.1")
	p6 := testenv.Port(t, "::1")
	out, code := probeRun(t, "-json", "-epmd-port", "0",
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
	for _, args := range [][]string{
		{},
		{"127.0.0.1:0"},
		{"127.0.0.1:65536"},
		{"-timeout", "0s", "127.0.0.1:1"},
		{"-epmd-port", "0", "127.0.0.1"},
		{"-nosuchflag", "127.0.0.1"},
	} {
		// RunDistgate fails the test if probe dies of a signal.
		stdout, stderr, code := testenv.RunDistgate(t, nil, append([]string{"probe"}, args...)...)
		if code != 2 || stdout+stderr == "" {
			t.Errorf("probe %q: exit %d, output %q; want exit 2 with a message", args, code, stdout+stderr)
		}
	}
}
