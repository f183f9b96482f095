package main

import (
	_ "embed"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

//go:embed distbench.erl
var distbenchErl string

// erlCookie is the cookie of every node and client of the run.
const erlCookie = "distgatebench"

// erlNode is the OTP node a path reaches. Epmdless clients dial the host
// part of the name at -erl_epmd_port, and check that whoever answers has
// exactly that name, so each path gets its own name: "direct" binds its
// name's address, the others bind the address behind their proxy.
type erlNode struct {
	name, bind string
}

// erlClient is a hidden client node running distbench:serve, driven one
// command at a time over its stdin.
type erlClient struct {
	name string
	p    *testenv.Proc
	seen int // output lines already read
}

// startClient starts e as a distbench client and waits until it reads
// commands.
func (h *harness) startClient(e testenv.Erl) (*erlClient, error) {
	c, err := e.Cmd(h.dir, "-pa", h.dir, "-run", "distbench", "serve")
	if err != nil {
		return nil, err
	}
	c.Stdin, c.StopSignal, c.Grace = true, syscall.SIGKILL, 5*time.Second
	p, err := c.Start()
	if err != nil {
		return nil, err
	}
	cl := &erlClient{name: e.Name, p: p}
	if cl.seen, err = p.WaitLine("ready", 0, 60*time.Second); err != nil {
		p.Kill()
		return nil, fmt.Errorf("client %s: %w\n%s", e.Name, err, p.Out.Tail(10))
	}
	return cl, nil
}

// do sends one command and returns the fields of its answer (a RESULT or
// SETUP line); an ERROR answer, the client's exit or timeout is an error.
func (c *erlClient) do(cmd string, timeout time.Duration) ([]string, error) {
	if _, err := io.WriteString(c.p.Stdin, cmd+"\n"); err != nil {
		return nil, fmt.Errorf("client %s: %s: %w", c.name, cmd, err)
	}
	type answer struct {
		line string
		next int
	}
	a, err := testenv.WaitLines(c.p.Out, c.p.Done(), "client "+c.name+" to answer "+cmd, timeout,
		func(ls []string) (answer, bool) {
			for i := c.seen; i < len(ls); i++ {
				for _, p := range []string{"RESULT ", "SETUP ", "ERROR "} {
					if strings.HasPrefix(ls[i], p) {
						return answer{ls[i], i + 1}, true
					}
				}
			}
			return answer{}, false
		})
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, c.p.Out.Tail(10))
	}
	c.seen = a.next
	if strings.HasPrefix(a.line, "ERROR ") {
		return nil, fmt.Errorf("client %s: %s: %s", c.name, cmd, a.line)
	}
	return strings.Fields(a.line), nil
}

func (c *erlClient) stop() {
	_, _ = io.WriteString(c.p.Stdin, "quit\n")
	c.p.Stop(syscall.SIGKILL, 5*time.Second)
}

// numbers parses fields as integers.
func numbers(fields []string) ([]float64, error) {
	v := make([]float64, len(fields))
	for i, f := range fields {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad number %q", f)
		}
		v[i] = float64(n)
	}
	return v, nil
}

// erlRun is what tests 6–8 share: the started nodes and clients, stopped
// at the end.
type erlRun struct {
	h       *harness
	nodes   []*testenv.Node
	clients []*erlClient
}

func (r *erlRun) node(label string, e testenv.Erl) (*testenv.Node, error) {
	e.Cookie, e.Port = erlCookie, r.h.erlPort
	e.Log = filepath.Join(r.h.dir, "erl-"+label+".log")
	n, err := e.StartNode(r.h.dir, false)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", e.Name, err)
	}
	r.nodes = append(r.nodes, n)
	return n, nil
}

func (r *erlRun) client(label string, e testenv.Erl) (*erlClient, error) {
	e.Cookie, e.Port, e.Hidden = erlCookie, r.h.erlPort, true
	e.Log = filepath.Join(r.h.dir, "erl-"+label+".log")
	c, err := r.h.startClient(e)
	if err != nil {
		return nil, err
	}
	r.clients = append(r.clients, c)
	return c, nil
}

func (r *erlRun) stop() {
	for _, c := range r.clients {
		c.stop()
	}
	for _, n := range r.nodes {
		n.Stop(syscall.SIGTERM, 5*time.Second)
	}
}

// testErlang runs the tests on real OTP nodes: 7 (connection setup), 6
// (erpc and a 64 MiB call) and 8 (TLS), as -only asks. One plain node per
// target, one hidden client for them all. Schedulers do not busy-wait
// (testenv.ErlFlags), so idle nodes leave the two CPUs to the one being
// measured.
func (h *harness) testErlang() error {
	src, err := writeFile(h.dir, "distbench.erl", distbenchErl)
	if err != nil {
		return err
	}
	if out, err := output(h.bins["erlc"], "-o", h.dir, src); err != nil {
		return fmt.Errorf("erlc: %v\n%s", err, out)
	}
	r := &erlRun{h: h}
	defer r.stop()
	for _, t := range h.targets {
		if _, err := r.node(t.name, testenv.Erl{Name: t.erl.name, Addr: t.erl.bind}); err != nil {
			return err
		}
	}
	plain, err := r.client("client", testenv.Erl{Name: "bench@127.0.0.1"})
	if err != nil {
		return err
	}
	if h.want("esetup") {
		if err := h.erlSetup(plain); err != nil {
			return err
		}
	}
	if h.want("erlang") {
		if err := h.erlCalls(plain); err != nil {
			return err
		}
	}
	if h.want("tls") {
		return h.testTLS(r, plain)
	}
	return nil
}

// erlSetup is test 7: per round and target, the client repeats connect →
// one erpc:call → disconnect (a remote shell's or an rpc's whole life on
// the wire: the real handshake, the first call, the close).
func (h *harness) erlSetup(c *erlClient) error {
	logf("erlang setup: %d rounds of at most %d connect/erpc/disconnect iterations (or %v) per path",
		h.o.erlRounds, h.o.esetupMax, h.o.esetupDur)
	for r := 1; r <= h.o.erlRounds; r++ {
		var line []string
		for _, t := range h.targets {
			f, err := c.do(fmt.Sprintf("setup %s %s %d %d %d", t.name, t.erl.name, r, h.o.esetupMax,
				h.o.esetupDur.Milliseconds()), h.o.esetupDur+2*time.Minute)
			if err != nil {
				return err
			}
			if len(f) != 8 {
				return fmt.Errorf("bad answer %q", strings.Join(f, " "))
			}
			v, err := numbers(f[2:])
			if err != nil {
				return err
			}
			iters, errs, totalUs, p50, p99 := v[1], v[2], v[3], v[4], v[5]
			if errs > 0 {
				h.res.note(fmt.Sprintf("erlang setup %s round %d: %.0f failed iterations", t.name, r, errs))
			}
			h.res.put("esetup_p50", t.name, r, p50/1e6) // ms
			h.res.put("esetup_p99", t.name, r, p99/1e6) // ms
			h.res.put("esetup_rate", t.name, r, iters/totalUs*1e6)
			h.res.put("esetup_n", t.name, r, iters)
			line = append(line, fmt.Sprintf("%s %.0f in %.1f s, p50 %.2f ms, p99 %.2f ms", t.name, iters, totalUs/1e6, p50/1e6, p99/1e6))
		}
		logf("erlang setup round %d/%d: %s", r, h.o.erlRounds, strings.Join(line, "; "))
	}
	return nil
}

// erlCalls is test 6: per round and target, erlCalls sequential
// erpc:call's, each timed, and one call carrying an erlMiB binary.
func (h *harness) erlCalls(c *erlClient) error {
	logf("erlang: %d rounds of %d erpc:call's and one %d MiB binary per path", h.o.erlRounds, h.o.erlCalls, h.o.erlMiB)
	for r := 1; r <= h.o.erlRounds; r++ {
		for _, t := range h.targets {
			s, err := h.callsRound(c, "erl", t.name, t.erl.name, r, h.o.erlCalls, h.o.erlMiB)
			if err != nil {
				return err
			}
			logf("erlang round %d %s", r, s)
		}
	}
	return nil
}

// callsRound runs one "calls" command and records its figures under
// prefix_p50 etc. for label.
func (h *harness) callsRound(c *erlClient, prefix, label, node string, r, calls, mib int) (string, error) {
	f, err := c.do(fmt.Sprintf("calls %s %s %d %d %d", label, node, r, calls, mib), 5*time.Minute)
	if err != nil {
		return "", err
	}
	if len(f) != 8 {
		return "", fmt.Errorf("bad answer %q", strings.Join(f, " "))
	}
	v, err := numbers(f[2:])
	if err != nil {
		return "", err
	}
	h.res.put(prefix+"_total", label, r, v[1]/1e3) // ms
	h.res.put(prefix+"_p50", label, r, v[2]/1e3)   // µs
	h.res.put(prefix+"_p99", label, r, v[3]/1e3)   // µs
	h.res.put(prefix+"_p999", label, r, v[4]/1e3)  // µs
	h.res.put(prefix+"_bulk", label, r, v[5]/1e3)  // ms
	return fmt.Sprintf("%s: %d calls in %.0f ms, p50 %.1f µs, p99 %.1f µs; %d MiB in %.1f ms",
		label, calls, v[1]/1e3, v[2]/1e3, v[3]/1e3, mib, v[5]/1e3), nil
}
