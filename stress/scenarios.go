package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/attack"
	"github.com/distgate/distgate/internal/testenv"
)

// floodSources are the attacking sources.
var floodSources = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}

// world is one run's processes and files; close stops what it started.
type world struct {
	dir  string
	node *testenv.Node
	gate *testenv.Gate
	ops  []*attack.Operator
}

func newWorld() (*world, error) {
	dir, err := os.MkdirTemp("", "distgate-stress-")
	if err != nil {
		return nil, err
	}
	return &world{dir: dir}, nil
}

func (w *world) sub(name string) string {
	d := filepath.Join(w.dir, name)
	_ = os.MkdirAll(d, 0o755)
	return d
}

func (w *world) close() {
	for _, o := range w.ops {
		_, _ = o.Stop()
	}
	if w.gate != nil {
		w.gate.Stop(syscall.SIGTERM, 10*time.Second)
	}
	if w.node != nil {
		w.node.Stop(syscall.SIGTERM, 10*time.Second)
	}
	_ = os.RemoveAll(w.dir)
}

// operator runs body (which creates mark when its baseline is done) in a
// client in the background and returns once mark exists.
func (w *world) operator(name string, port int, body func(mark, stop string) string) (*attack.Operator, error) {
	o, err := attack.StartOperator(w.sub(name), testenv.Client(name+"@127.0.0.1", port), body, 10*time.Minute)
	if err != nil {
		return nil, err
	}
	w.ops = append(w.ops, o)
	return o, nil
}

// gate starts distgate with one gate "stress" on 127.0.0.1:port in front of
// upstream, allowing sources; set adjusts the gate's keys.
func (w *world) startGate(e env, port int, upstream string, set func(g *config.Gate), sources ...string) error {
	f := testenv.GateFile("stress", testenv.Addr(testenv.GateIP, port), upstream, testenv.Allow(sources))
	if set != nil {
		set(&f.Gate[0])
	}
	var err error
	w.gate, err = testenv.GateCmd{Bin: e.distgate, Dir: w.sub("gate"), File: f}.Start()
	return err
}

// runFlood: conns connections from sources that are not allowed, as fast as
// workers can, while an operator's rpc:calls are timed.
func runFlood(e env, conns, workers int, sessions bool) (result, error) {
	var r result
	w, err := newWorld()
	if err != nil {
		return r, err
	}
	defer w.close()
	port, err := testenv.FreePort(testenv.GateIP, testenv.NodeIP)
	if err != nil {
		return r, err
	}
	if w.node, err = testenv.App(port).StartNode(w.sub("node"), true); err != nil {
		return r, err
	}
	mark := w.node.Mark
	if err := w.startGate(e, port, testenv.Addr(testenv.NodeIP, port), nil, "127.0.0.1/32"); err != nil {
		return r, err
	}
	body := func(m, s string) string { return attack.RPCLoop(m, s, 5*time.Millisecond) }
	if sessions {
		// The default per-source rate limit applies to the operator
		// too: one new session a little over every second.
		body = func(m, s string) string { return attack.SessionLoop(m, s, 1100*time.Millisecond) }
	}
	op, err := w.operator("op", port, body)
	if err != nil {
		return r, err
	}
	// The node's output from here on may show only the operator's own
	// connections (nodeup/nodedown and their reports when it opens
	// sessions) until the flush client's nodeup.
	if mark, err = w.node.WaitLine("nodeup 'op@127.0.0.1'", mark, 30*time.Second); err != nil {
		return r, err
	}
	cpu0, _ := testenv.CPUTime(w.gate.Pid())
	watch := testenv.Watch(w.gate.Pid(), 50*time.Millisecond)
	f := attack.Flood(context.Background(), attack.FloodConfig{Target: fmt.Sprintf("127.0.0.1:%d", port),
		Sources: floodSources, Conns: conns, Workers: workers})
	peak := watch()
	cpu1, _ := testenv.CPUTime(w.gate.Pid())

	// Nothing reached the node: the next thing it prints after the
	// operator's nodeup is an admitted client's nodeup.
	out, err := testenv.Client("flush@127.0.0.1", port).Run(w.sub("flush"),
		`io:format("ping ~p~n", [net_adm:ping(Node)])`, time.Minute)
	if err != nil || !strings.Contains(out, "ping pong") {
		r.failf("the flush client after the flood: %v: %s", err, out)
	}
	if end, err := w.node.WaitLine("nodeup 'flush@127.0.0.1'", mark, 30*time.Second); err != nil {
		r.failf("%v", err)
	} else if ls := w.node.Out.All(); end-1 > mark {
		if foreign := notOperator(ls[mark : end-1]); len(foreign) > 0 || !sessions {
			r.failf("the node printed something during the flood; a connection reached it:\n%s", strings.Join(ls[mark:end-1], "\n"))
		}
	}

	opOut, err := op.Stop()
	if err != nil {
		r.failf("operator: %v: %s", err, opOut)
	}
	var base, during attack.RPCStats
	var sess attack.Sessions
	if sessions {
		if sess, err = attack.ParseSessions(opOut); err != nil {
			return r, err
		}
		if sess.OK != sess.Tries {
			r.failf("%d of the operator's %d sessions failed during the flood", sess.Tries-sess.OK, sess.Tries)
		}
	} else {
		var err1, err2 error
		base, err1 = attack.ParseRPCStats(opOut, "baseline")
		during, err2 = attack.ParseRPCStats(opOut, "during")
		if err1 != nil || err2 != nil {
			return r, fmt.Errorf("operator output: %v %v", err1, err2)
		}
		if during.Failed != 0 {
			r.failf("%d of the operator's rpc:calls failed during the flood", during.Failed)
		}
	}

	w.gate.Stop(syscall.SIGTERM, 10*time.Second)
	raw := w.gate.Out.All()
	logs, bad := testenv.ParseLog(raw)
	denied, suppressed, sums := 0, 0, 0
	for _, l := range logs {
		switch l.Str("message") {
		case "denied":
			denied++
		case "denials suppressed":
			sums++
			suppressed += int(l.Num("suppressed"))
		}
	}
	if bad != 0 {
		r.failf("%d of distgate's output lines are not one JSON object", bad)
	}
	if f.Closed != conns || f.GotBytes != 0 {
		r.failf("%d of %d connections closed silently; %d got bytes, %d reset, %d timeouts, %d dial errors (%v)",
			f.Closed, conns, f.GotBytes, f.Reset, f.Timeouts, f.DialErrs, f.FirstErr)
	}
	if denied+suppressed != conns {
		r.failf("%d denied lines + %d suppressed = %d, want %d", denied, suppressed, denied+suppressed, conns)
	}
	// 5 lines per source per 10 s period, plus the periods' summaries.
	periods := int(f.Elapsed/(10*time.Second)) + 2
	if limit := 5 * len(floodSources) * periods; denied > limit {
		r.failf("%d denied lines, over the sampling bound %d", denied, limit)
	}

	r.add("connections", "", float64(f.Conns))
	r.add("flood rate", "conn/s", float64(int(f.Rate())))
	r.add("flood duration", "s", secs(f.Elapsed))
	r.add("connections that got a byte back", "", float64(f.GotBytes))
	r.add("distgate CPU during the flood", "s", secs(cpu1-cpu0))
	r.add("distgate peak RSS (sampled VmRSS)", "MiB", mib(peak.RSS))
	r.add("distgate VmHWM after the flood", "MiB", mib(peak.HWM))
	r.add("distgate peak descriptors", "", float64(peak.FDs))
	r.add("log lines in all", "", float64(len(raw)))
	r.add("denied lines", "", float64(denied))
	r.add("summary lines", "", float64(sums))
	if sessions {
		r.add("operator session tries during", "", float64(sess.Tries))
		r.add("operator sessions that got in", "", float64(sess.OK))
		r.add("operator: longest wait for a session", "ms", ms(sess.LongestGap))
		return r, nil
	}
	r.add("operator rpc p50 before", "ms", ms(base.P50))
	r.add("operator rpc p99 before", "ms", ms(base.P99))
	r.add("operator rpc calls during", "", float64(during.Calls))
	r.add("operator rpc failed during", "", float64(during.Failed))
	r.add("operator rpc p50 during", "ms", ms(during.P50))
	r.add("operator rpc p99 during", "ms", ms(during.P99))
	r.add("operator rpc max during", "ms", ms(during.MaxT))
	return r, nil
}

// runSlow: connections from allowed sources that send 0, 1 or 2 bytes and
// stall, closed-loop (each worker reconnects once its connection is cut),
// while an operator at another allowed source keeps opening new sessions.
func runSlow(e env, conns int, dur time.Duration, workers int, defaults bool, gap time.Duration) (result, error) {
	var r result
	w, err := newWorld()
	if err != nil {
		return r, err
	}
	defer w.close()
	port, err := testenv.FreePort(testenv.GateIP, testenv.NodeIP)
	if err != nil {
		return r, err
	}
	if w.node, err = testenv.App(port).StartNode(w.sub("node"), true); err != nil {
		return r, err
	}
	const timeout = time.Second
	set := func(g *config.Gate) {
		g.HandshakeTimeout, g.MaxConns = testenv.Dur(timeout), testenv.Ptr(100000)
		if !defaults {
			g.MaxConnsPerSource, g.Rate, g.Burst = testenv.Ptr(100000), testenv.Ptr(1e6), testenv.Ptr(1000000)
		}
	}
	if err := w.startGate(e, port, testenv.Addr(testenv.NodeIP, port), set, append([]string{"127.0.0.1/32"}, floodSources...)...); err != nil {
		return r, err
	}
	base, _ := testenv.FDs(w.gate.Pid())
	op, err := w.operator("op", port, func(m, s string) string { return attack.SessionLoop(m, s, gap) })
	if err != nil {
		return r, err
	}
	hello := testenv.Hello("slow@127.0.0.1")
	watch := testenv.Watch(w.gate.Pid(), 20*time.Millisecond)
	f := attack.Flood(context.Background(), attack.FloodConfig{Target: fmt.Sprintf("127.0.0.1:%d", port),
		Sources: floodSources, Conns: conns, For: dur, Workers: workers,
		Send: func(i int) []byte { return hello[:i%3] }, Hold: 10 * time.Second})
	peak := watch()
	out, err := op.Stop()
	if err != nil {
		r.failf("operator: %v: %s", err, out)
	}
	s, err := attack.ParseSessions(out)
	if err != nil {
		return r, err
	}
	stalled := 0
	for _, h := range f.Held {
		if h >= timeout*9/10 {
			stalled++
		}
	}
	longest := attack.Percentile(f.Held, 1)
	if f.Timeouts != 0 || longest > timeout+2*time.Second {
		r.failf("%d connections outlived handshake_timeout by 9s; the longest was held %v", f.Timeouts, longest)
	}
	if f.GotBytes != 0 {
		r.failf("%d slow connections got bytes", f.GotBytes)
	}
	r.add("attack connections", "", float64(f.Conns))
	r.add("attack duration", "s", secs(f.Elapsed))
	r.add("held until handshake_timeout (1s)", "", float64(stalled))
	r.add("refused at once", "", float64(f.Conns-stalled))
	r.add("longest held", "ms", ms(longest))
	r.add("distgate descriptors before", "", float64(base))
	r.add("distgate peak descriptors", "", float64(peak.FDs))
	r.add("distgate peak sockets", "", float64(peak.Sockets))
	r.add("distgate peak RSS", "MiB", mib(peak.RSS))
	r.add("operator session tries", "", float64(s.Tries))
	r.add("operator sessions that got in", "", float64(s.OK))
	r.add("operator sessions that got in", "%", float64(100*s.OK/max(s.Tries, 1)))
	r.add("operator: first session after", "ms", ms(s.First))
	r.add("operator: longest wait for a session", "ms", ms(s.LongestGap))
	return r, nil
}

// runIntegrity: size bytes each way through distgate to a Go node that
// echoes them, beside a flood from sources that are not allowed and silent
// connections from an allowed one; compared byte for byte and by sha256.
func runIntegrity(e env, size int64, flood, silent int) (result, error) {
	var r result
	w, err := newWorld()
	if err != nil {
		return r, err
	}
	defer w.close()
	port, err := testenv.FreePort(testenv.GateIP)
	if err != nil {
		return r, err
	}
	up, err := testenv.NewFakeNode("127.0.0.2:0", false)
	if err != nil {
		return r, err
	}
	defer up.Close()
	set := func(g *config.Gate) {
		g.HandshakeTimeout, g.Rate, g.Burst = testenv.Dur(time.Second), testenv.Ptr(1e6), testenv.Ptr(1000000)
		g.MaxConnsPerSource, g.MaxConns = testenv.Ptr(100000), testenv.Ptr(100000)
	}
	if err := w.startGate(e, port, up.Addr(), set, "127.0.0.1/32", "127.0.0.6/32"); err != nil {
		return r, err
	}
	gw := fmt.Sprintf("127.0.0.1:%d", port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var fl, si attack.FloodResult
	wg.Add(2)
	go func() {
		defer wg.Done()
		fl = attack.Flood(ctx, attack.FloodConfig{Target: gw, Sources: floodSources, Conns: flood, Workers: 16})
	}()
	go func() {
		defer wg.Done()
		si = attack.Flood(ctx, attack.FloodConfig{Target: gw, Sources: []string{"127.0.0.6"}, Conns: silent, Workers: 64})
	}()
	start := time.Now()
	s := attack.Stream(ctx, attack.StreamConfig{Source: "127.0.0.1", Target: gw, Name: "bulk@127.0.0.1", Seed: uint64(start.UnixNano()), Max: size})
	took := time.Since(start)
	wg.Wait()
	rec, ok := up.WaitDone("bulk@127.0.0.1", time.Minute)
	if !s.Complete || s.Sent != size || s.Echoed != size || s.Mismatch >= 0 {
		r.failf("stream: sent %d, echoed %d, first difference at %d: %v", s.Sent, s.Echoed, s.Mismatch, s.Err)
	}
	if !ok || rec.N != size || rec.Sum != s.Sum {
		r.failf("sha256 at the node %x (%d bytes), at the client %x (%d bytes)", rec.Sum, rec.N, s.Sum, s.Sent)
	}
	if fl.GotBytes != 0 || si.GotBytes != 0 || up.Accepts() != 1 {
		r.failf("a flood connection got bytes (%d, %d) or reached the node (%d connections there)", fl.GotBytes, si.GotBytes, up.Accepts())
	}
	r.add("bytes each way", "MiB", mib(s.Sent))
	r.add("sha256 equal at both ends", "", map[bool]float64{true: 1}[ok && rec.Sum == s.Sum && s.Complete])
	r.add("transfer time", "s", secs(took))
	r.add("throughput each way", "MiB/s", float64(int(mib(s.Sent)/took.Seconds())))
	r.add("denied connections alongside", "", float64(fl.Conns))
	r.add("silent connections alongside", "", float64(si.Conns))
	return r, nil
}

// notOperator returns the node's output lines that are not about the
// operator's own sessions: its nodeup/nodedown lines and net_kernel's
// reports of the connections it closed.
func notOperator(ls []string) []string {
	var out []string
	for _, l := range ls {
		switch {
		case l == "nodeup 'op@127.0.0.1'", l == "nodedown 'op@127.0.0.1'",
			strings.HasPrefix(l, "=INFO REPORT===="),
			strings.HasPrefix(l, "{net_kernel,{'EXIT',") && strings.HasSuffix(l, ",connection_closed}}"),
			strings.HasPrefix(l, "{net_kernel,{'EXIT',#Port<") && strings.HasSuffix(l, ",normal}}"):
		default:
			out = append(out, l)
		}
	}
	return out
}
