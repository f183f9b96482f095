package main

import (
	"cmp"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

// options sizes one run. Every loop in the harness is bounded by these
// counts and by a time limit.
type options struct {
	rounds       int
	bulkSize     int64
	pingN        int // 64-byte round trips
	pingKN       int // 1 KiB round trips
	clients      int // setup-rate clients
	setupDur     time.Duration
	floodClients int
	floodDur     time.Duration
	memSizes     []int // idle admitted connections, measured in turn
	stalled      int
	erlRounds    int
	extraRounds  int // flood rounds of the distgate variants
	erlCalls     int
	erlMiB       int
	esetupMax    int           // Erlang connection setups per path and round, at most
	esetupDur    time.Duration // and for at most this long
	tlsRounds    int
	tlsCalls     int
	tlsMiB       int
}

var fullOptions = options{
	rounds: 7, bulkSize: 1 << 30, pingN: 20000, pingKN: 5000,
	clients: 32, setupDur: 3 * time.Second,
	floodClients: 16, floodDur: 3 * time.Second,
	memSizes: []int{2000, 10000}, stalled: 10000,
	erlRounds: 7, erlCalls: 10000, erlMiB: 64, extraRounds: 3,
	esetupMax: 300, esetupDur: 1500 * time.Millisecond,
	tlsRounds: 5, tlsCalls: 5000, tlsMiB: 64,
}

var quickOptions = options{
	rounds: 2, bulkSize: 256 << 20, pingN: 5000, pingKN: 3000,
	clients: 32, setupDur: 1500 * time.Millisecond,
	floodClients: 16, floodDur: 1500 * time.Millisecond,
	memSizes: []int{2000, 10000}, stalled: 10000,
	erlRounds: 2, erlCalls: 5000, erlMiB: 64, extraRounds: 1,
	esetupMax: 150, esetupDur: time.Second,
	tlsRounds: 2, tlsCalls: 2000, tlsMiB: 64,
}

// target is one way to reach the upstream: directly or through a proxy.
type target struct {
	name    string // in the results: direct, distgate, distgate-kernel, haproxy, nginx
	head    string // the report's column head
	kind    string // direct, distgate, haproxy or nginx
	forward string // a distgate's forwarding path: user or kernel
	addr    string // tests 1–5
	erl     erlNode
	start   func() (*testenv.Proc, error) // nil for direct
	p       *testenv.Proc
	cap     int // connections its configuration lets it hold (0: no cap)
	nofile  int // its processes' soft open-files limit (the lowest of them)
}

func (t *target) pid() int { return t.p.Pid() }

// restart stops the proxy and starts a fresh one, so the memory tests begin
// from a process that has not held thousands of connections before.
func (h *harness) restart(t *target) error {
	if t.p != nil {
		t.p.Stop(syscall.SIGTERM, 5*time.Second)
	}
	p, err := t.start()
	if err != nil {
		return err
	}
	t.p = p
	if err := testenv.WaitPort(t.addr, 10*time.Second, p); err != nil {
		return err
	}
	if t.kind == "nginx" {
		// The workers hold the connections; they fork after the master
		// binds. Wait (bounded) for both before reading their limits.
		waitFDs(p.Pid(), 5*time.Second, func(pid int) int { return len(testenv.Children(pid)) },
			func(n int) bool { return n >= 2 })
	}
	t.nofile = h.liftNoFile(t)
	return nil
}

type harness struct {
	o        options
	dir      string
	bins     map[string]string
	up       *testenv.Proc
	upAddr   string
	targets  []*target // direct first
	gates    map[string]gateAddrs
	erlPort  int
	nofile   int // descriptors each process may open
	res      *results
	only     map[string]bool
	variants map[string]bool   // the distgate variants asked for
	skipped  map[string]string // variant name → why it did not run
	tlsPaths []tlsPath         // test 8's paths, in the report's order
}

// target returns the target of that name, nil if it does not run.
func (h *harness) target(name string) *target {
	for _, t := range h.targets {
		if t.name == name {
			return t
		}
	}
	return nil
}

func (h *harness) proxies() []*target { return h.targets[1:] }

func (h *harness) want(test string) bool { return len(h.only) == 0 || h.only[test] }

// steps are the tests -only can pick, in the order they run.
var steps = []string{"bulk", "ping", "setup", "flood", "mem", "esetup", "erlang", "tls"}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	distgate := fs.String("distgate", "", "distgate binary (required)")
	quick := fs.Bool("quick", false, "a short run (about 2 minutes)")
	out := fs.String("out", "", "also write the markdown report here")
	keep := fs.Bool("keep", false, "keep the temporary directory (configs, logs)")
	only := fs.String("only", "", "comma-separated subset of "+strings.Join(steps, ","))
	variants := fs.String("variants", defaultVariants, "comma-separated distgate variants: user, kernel, tls, passthrough")
	rev := fs.String("rev", "", "the source revision distgate was built from, for the report")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *distgate == "" {
		return fmt.Errorf("run: -distgate is required")
	}
	o := fullOptions
	if *quick {
		o = quickOptions
	}
	h := &harness{o: o, res: newResults(), bins: map[string]string{}, only: map[string]bool{}, skipped: map[string]string{}}
	for _, t := range strings.Split(*only, ",") {
		if t = strings.TrimSpace(t); t != "" {
			if !slices.Contains(steps, t) {
				return fmt.Errorf("-only: unknown test %q (known: %s)", t, strings.Join(steps, ", "))
			}
			h.only[t] = true
		}
	}
	var err error
	if h.variants, err = parseVariants(*variants); err != nil {
		return err
	}
	for name, p := range map[string]string{"distgate": *distgate, "haproxy": "haproxy", "nginx": "nginx", "erl": "erl", "erlc": "erlc"} {
		if h.bins[name], err = lookPath(p); err != nil {
			return err
		}
	}
	if h.bins["loadgen"], err = os.Executable(); err != nil {
		return err
	}
	if h.nofile, err = raiseNoFile(); err != nil {
		return err
	}
	if h.nofile < 70000 {
		h.res.note(fmt.Sprintf("the hard open-files limit here is %d and run.sh could not raise it, "+
			"so each proxy held only as many connections in the memory test as its descriptors allow; "+
			"the cells say how many (n=…)", h.nofile))
	}
	if h.dir, err = os.MkdirTemp("", "distgate-bench-"); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		logf("%v: stopping everything this run started", s)
		testenv.StopAll()
		os.Exit(130)
	}()
	failed := true
	defer func() {
		testenv.StopAll()
		if *keep || failed {
			logf("configs and logs kept in %s", h.dir)
		} else {
			_ = os.RemoveAll(h.dir)
		}
	}()

	start := time.Now()
	loadAvg0 := loadAvg()
	if n := tcpMemoryNote("at the start,"); n != "" {
		logf("warning: %s", n)
		h.res.note(n)
	}
	mi := machineInfo(h.bins)
	if *rev != "" {
		mi = append(mi, "source: "+*rev)
	}
	if err := h.setup(); err != nil {
		return err
	}
	if err := h.sanity(); err != nil {
		return err
	}
	var measured []string
	for _, t := range h.proxies() {
		if t.kind == "distgate" {
			measured = append(measured, fmt.Sprintf("%s (forward %s)", t.name, t.forward))
		}
	}
	mi = append(mi, fmt.Sprintf("distgate variants asked for: %s; in the main table: %s",
		variantList(h.variants), strings.Join(measured, ", ")))
	for _, s := range []struct {
		name string
		fn   func() error
	}{
		{"bulk", h.testBulk}, {"ping", h.testPing}, {"setup", h.testSetup},
		{"flood", h.testFlood}, {"mem", h.testMemory},
	} {
		if !h.want(s.name) {
			continue
		}
		if err := s.fn(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	// Tests 6–8 share their Erlang nodes and clients.
	if h.want("erlang") || h.want("esetup") || h.want("tls") {
		if err := h.testErlang(); err != nil {
			return fmt.Errorf("erlang: %w", err)
		}
	}
	if n := tcpMemoryNote("at the end,"); n != "" {
		h.res.note(n)
	}
	mi = append(mi, "load average (1, 5, 15 min) at the start: "+loadAvg0+"; at the end: "+loadAvg())
	md := h.report(mi, time.Since(start), *quick)
	fmt.Print(md)
	if *out != "" {
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			return err
		}
		logf("wrote %s", *out)
	}
	failed = false
	return nil
}

// start starts a process of the run with its output kept in the run's
// directory; testenv.StopAll stops it at the end.
func (h *harness) start(name string, argv ...string) (*testenv.Proc, error) {
	return testenv.Cmd{Name: name, Args: argv, Log: filepath.Join(h.dir, name+".log")}.Start()
}

// raiseNoFile lifts the soft descriptor limit to the hard one and returns
// it. The memory test wants 10 000 connections, each worth two to six
// descriptors in a proxy; where the hard limit is lower (run.sh raises it
// when it may), the test holds as many as fit and says so.
func raiseNoFile() (int, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < 8192 {
		return 0, fmt.Errorf("open files limit is %d; the benchmark needs at least 8192 (raise ulimit -n)", rl.Cur)
	}
	return int(min(rl.Cur, 1<<20)), nil
}

// Erlang addresses. Epmdless clients dial the host part of a node's name
// at the one port of the run, so each path has its own address: a proxy
// listens on the name's address and its node binds another.
const (
	erlDirect      = "127.0.0.7"
	erlHAProxy     = "127.0.0.8"
	erlHAProxyNode = "127.0.0.9"
	erlNginx       = "127.0.0.10"
	erlNginxNode   = "127.0.0.11"
	erlTLSGate     = "127.0.0.20" // test 8 (a): distgate terminates TLS
	erlTLSGateNode = "127.0.0.21"
	erlTLSNode     = "127.0.0.22" // test 8 (b): the node runs inet_tls itself
	erlPassGate    = "127.0.0.23" // test 8, passthrough: distgate in front of a TLS node
	erlPassNode    = "127.0.0.24"
)

// erlAddrs are every address an Erlang node or gate of the run binds.
func erlAddrs() []string {
	a := []string{erlDirect, erlHAProxy, erlHAProxyNode, erlNginx, erlNginxNode,
		erlTLSGate, erlTLSGateNode, erlTLSNode, erlPassGate, erlPassNode}
	for _, v := range allVariants {
		if v.erlListen != "" {
			a = append(a, v.erlListen, v.erlBind)
		}
	}
	return a
}

// setup picks ports, writes the configs and starts the upstream and the
// proxies: every distgate variant asked for that can run here, HAProxy
// and nginx.
func (h *harness) setup() error {
	port := func() (int, error) { return testenv.FreePort("127.0.0.1") }
	up, err := port()
	if err != nil {
		return err
	}
	h.upAddr = fmt.Sprintf("127.0.0.1:%d", up)
	// One Erlang distribution port for every node (epmdless: the client
	// dials the name's host at -erl_epmd_port), on a separate pair of
	// loopback addresses per path.
	if h.erlPort, err = testenv.FreePort(erlAddrs()...); err != nil {
		return err
	}
	ep := func(ip string) string { return fmt.Sprintf("%s:%d", ip, h.erlPort) }
	h.gates = map[string]gateAddrs{}
	pairs := []struct{ name, erlListen, erlUp string }{
		{"haproxy", erlHAProxy, erlHAProxyNode},
		{"nginx", erlNginx, erlNginxNode},
	}
	for _, v := range allVariants {
		if v.erlListen != "" {
			pairs = append(pairs, struct{ name, erlListen, erlUp string }{v.name, v.erlListen, v.erlBind})
		}
	}
	for _, n := range pairs {
		p, err := port()
		if err != nil {
			return err
		}
		h.gates[n.name] = gateAddrs{listen: fmt.Sprintf("127.0.0.1:%d", p), upstream: h.upAddr,
			erlListen: ep(n.erlListen), erlUpstream: ep(n.erlUp)}
	}

	logf("starting the upstream on %s", h.upAddr)
	if h.up, err = h.start("upstream", h.bins["loadgen"], "upstream", "-listen", h.upAddr); err != nil {
		return err
	}
	if err := testenv.WaitPort(h.upAddr, 10*time.Second, h.up); err != nil {
		return err
	}

	h.targets = []*target{{name: "direct", head: "direct", kind: "direct", addr: h.upAddr,
		erl: erlNode{name: "app@" + erlDirect, bind: erlDirect}}}
	for _, v := range allVariants {
		if v.erlListen == "" { // a TLS path: test 8 prepares it
			continue
		}
		if !h.variants[v.key] {
			h.skip(v.name, fmt.Sprintf("not in -variants (VARIANTS=%s)", variantList(h.variants)))
			continue
		}
		t, why, err := h.distgateTarget(v)
		if err != nil {
			return err
		}
		if t == nil {
			h.skip(v.name, why)
			continue
		}
		h.targets = append(h.targets, t)
	}

	hpConf, err := writeFile(h.dir, "haproxy.cfg", haproxyConfig(h.gates["haproxy"], h.nofile))
	if err != nil {
		return err
	}
	if out, err := output(h.bins["haproxy"], "-c", "-f", hpConf); err != nil {
		return fmt.Errorf("haproxy -c: %v\n%s", err, out)
	}
	ngConf, err := writeFile(h.dir, "nginx.conf", nginxConfig(h.gates["nginx"], h.dir, h.nofile))
	if err != nil {
		return err
	}
	ngStart := filepath.Join(h.dir, "nginx-startup.log")
	if out, err := output(h.bins["nginx"], "-t", "-q", "-e", ngStart, "-p", h.dir, "-c", ngConf); err != nil {
		return fmt.Errorf("nginx -t: %v\n%s", err, out)
	}
	h.targets = append(h.targets,
		&target{name: "haproxy", head: "HAProxy", kind: "haproxy", addr: h.gates["haproxy"].listen,
			cap: haproxyMaxconn(h.nofile) - 100, erl: erlNode{name: "app@" + erlHAProxy, bind: erlHAProxyNode},
			start: func() (*testenv.Proc, error) {
				return h.start("haproxy", h.bins["haproxy"], "-db", "-f", hpConf)
			}},
		&target{name: "nginx", head: "nginx", kind: "nginx", addr: h.gates["nginx"].listen,
			erl: erlNode{name: "app@" + erlNginx, bind: erlNginxNode},
			start: func() (*testenv.Proc, error) {
				return h.start("nginx", h.bins["nginx"], "-e", ngStart, "-p", h.dir, "-c", ngConf, "-g", "daemon off;")
			}},
	)
	for _, t := range h.proxies() {
		logf("starting %s on %s", t.name, t.addr)
		if err := h.restart(t); err != nil {
			return err
		}
	}
	// A kernel variant that warns once it runs at warn level (a fallback
	// the probe did not see) is not measured as kernel.
	h.targets = slices.DeleteFunc(h.targets, func(t *target) bool {
		if t.forward != "kernel" {
			return false
		}
		w := startupWarnings(t.p)
		if len(w) == 0 {
			return false
		}
		t.p.Stop(syscall.SIGTERM, 5*time.Second)
		h.skip(t.name, "distgate warned at start: "+strings.Join(w, "; "))
		return true
	})
	return nil
}

func variantList(m map[string]bool) string {
	var ks []string
	for _, v := range allVariants {
		if m[v.key] {
			ks = append(ks, v.key)
		}
	}
	return strings.Join(ks, ",")
}

// sanity checks that each path carries data and that each proxy turns the
// non-allowed source away, so no number below measures a broken setup.
func (h *harness) sanity() error {
	for _, t := range h.targets {
		c, err := echoConn(t.addr, time.Now().Add(5*time.Second))
		if err != nil {
			return fmt.Errorf("sanity %s: %w", t.name, err)
		}
		_, err = pingpong(c, 1024, 10, 0, time.Now().Add(5*time.Second), nil)
		_ = c.Close()
		if err != nil {
			return fmt.Errorf("sanity %s: %w", t.name, err)
		}
	}
	for _, t := range h.proxies() {
		r := flood(t.addr, 1, 200*time.Millisecond)
		if rejects(r) == 0 || r.GotBytes > 0 {
			return fmt.Errorf("sanity %s: a connection from 127.0.0.2 was not turned away (%+v)", t.name, r)
		}
	}
	logf("sanity: every path carries data; every proxy turns 127.0.0.2 away")
	return nil
}

func (h *harness) testBulk() error {
	gib := float64(h.o.bulkSize) / (1 << 30)
	for r := 1; r <= h.o.rounds; r++ {
		for _, up := range []bool{true, false} {
			dir := map[bool]string{true: "up", false: "down"}[up]
			var line []string
			for _, t := range h.targets {
				var cpu0 float64
				if t.p != nil {
					cpu0 = cpuSeconds(t.pid())
				}
				d, err := bulk(t.addr, up, h.o.bulkSize, 60*time.Second)
				if err != nil {
					if n := tcpMemoryNote("when it failed,"); n != "" {
						err = fmt.Errorf("%w (%s)", err, n)
					}
					if t.name == "direct" {
						return fmt.Errorf("%s %s: %w", t.name, dir, err)
					}
					// A proxy that loses or adds bytes gets no figure for
					// the round, and the report says so: the other
					// columns are still worth having.
					h.res.note(fmt.Sprintf("bulk %s round %d: %s failed, no figure: %v", dir, r, t.name, err))
					line = append(line, t.name+" FAILED")
					continue
				}
				mbs := float64(h.o.bulkSize) / d.Seconds() / 1e6
				h.res.put("bulk_"+dir, t.name, r, mbs)
				if t.p != nil {
					h.res.put("cpu_"+dir, t.name, r, (cpuSeconds(t.pid())-cpu0)/gib)
				}
				line = append(line, fmt.Sprintf("%s %.0f", t.name, mbs))
			}
			logf("bulk %s round %d/%d MB/s: %s", dir, r, h.o.rounds, strings.Join(line, ", "))
		}
	}
	return nil
}

// testPing measures round trips of 64 bytes and of 1 KiB on one echo
// connection per target and round.
func (h *harness) testPing() error {
	sizes := []struct {
		size, n int
		prefix  string
	}{{64, h.o.pingN, "pp"}, {1024, h.o.pingKN, "pk"}}
	for r := 1; r <= h.o.rounds; r++ {
		var line []string
		for _, t := range h.targets {
			c, err := echoConn(t.addr, time.Now().Add(60*time.Second))
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			s := t.name
			for _, sz := range sizes {
				lat, err := pingpong(c, sz.size, sz.n, 500, time.Now().Add(30*time.Second), nil)
				if err != nil {
					_ = c.Close()
					return fmt.Errorf("%s, %d bytes: %w", t.name, sz.size, err)
				}
				if len(lat) < sz.n {
					h.res.note(fmt.Sprintf("ping-pong %d B %s round %d: only %d of %d round trips in the time limit",
						sz.size, t.name, r, len(lat), sz.n))
				}
				p50, p99, p999 := percentile(lat, .5), percentile(lat, .99), percentile(lat, .999)
				h.res.put(sz.prefix+"_p50", t.name, r, p50)
				h.res.put(sz.prefix+"_p99", t.name, r, p99)
				h.res.put(sz.prefix+"_p999", t.name, r, p999)
				s += fmt.Sprintf(" %dB %.1f/%.1f/%.1f", sz.size, p50, p99, p999)
			}
			_ = c.Close()
			line = append(line, s)
		}
		logf("ping-pong round %d/%d p50/p99/p99.9 µs: %s", r, h.o.rounds, strings.Join(line, ", "))
	}
	return nil
}

func (h *harness) testSetup() error {
	for r := 1; r <= h.o.rounds; r++ {
		var line []string
		for _, t := range h.targets {
			var cpu0 float64
			if t.p != nil {
				cpu0 = cpuSeconds(t.pid())
			}
			res := setupRate(t.addr, h.o.clients, h.o.setupDur, 200_000)
			if res.conns == 0 {
				return fmt.Errorf("%s: no connection completed (%d errors, first: %v)", t.name, res.errs, res.firstErr)
			}
			if res.errs > 0 {
				h.res.note(fmt.Sprintf("setup %s round %d: %d errors (first: %v)", t.name, r, res.errs, res.firstErr))
			}
			rate := float64(res.conns) / res.elapsed.Seconds()
			h.res.put("setup_rate", t.name, r, rate)
			h.res.put("setup_p50", t.name, r, percentile(res.lat, .5)/1e3)
			h.res.put("setup_p99", t.name, r, percentile(res.lat, .99)/1e3)
			if t.p != nil {
				h.res.put("setup_cpu", t.name, r, (cpuSeconds(t.pid())-cpu0)/float64(res.conns)*1e6)
			}
			line = append(line, fmt.Sprintf("%s %.0f/s p99 %.2fms", t.name, rate, percentile(res.lat, .99)/1e3))
		}
		logf("setup round %d/%d: %s", r, h.o.rounds, strings.Join(line, ", "))
	}
	return nil
}

// floodOnce floods t from 127.0.0.2 while one allowed client ping-pongs,
// and records the rejects per second, the proxy CPU per reject and the
// allowed client's p99 under the name as.
func (h *harness) floodOnce(t *target, as string, r int) (string, error) {
	return h.floodOnceAs(t, as, r, "")
}

// floodOnceAs is floodOnce with the metrics' names prefixed by prefix_.
func (h *harness) floodOnceAs(t *target, as string, r int, prefix string) (string, error) {
	m := func(name string) string {
		if prefix == "" {
			return name
		}
		return prefix + "_" + name
	}
	c, err := echoConn(t.addr, time.Now().Add(h.o.floodDur+30*time.Second))
	if err != nil {
		return "", fmt.Errorf("%s: %w", t.name, err)
	}
	defer c.Close()
	stop := make(chan struct{})
	type ppOut struct {
		lat []int64
		err error
	}
	ppc := make(chan ppOut, 1)
	go func() {
		lat, err := pingpong(c, 64, 10_000_000, 100, time.Now().Add(h.o.floodDur+20*time.Second), stop)
		ppc <- ppOut{lat, err}
	}()
	cpu0 := cpuSeconds(t.pid())
	fr := flood(t.addr, h.o.floodClients, h.o.floodDur)
	cpu := cpuSeconds(t.pid()) - cpu0
	close(stop)
	pp := <-ppc
	if pp.err != nil {
		return "", fmt.Errorf("%s: allowed client during the flood: %w", t.name, pp.err)
	}
	rej := rejects(fr)
	if rej == 0 {
		return "", fmt.Errorf("%s: no rejects (%+v)", t.name, fr)
	}
	if other := fr.Conns - rej - fr.GotBytes - fr.Timeouts + fr.DialErrs; fr.GotBytes > 0 || fr.Timeouts > 0 || other > 0 {
		h.res.note(fmt.Sprintf("flood %s round %d: %d rejects, %d got bytes back, %d timeouts, %d other errors (first: %v)",
			as, r, rej, fr.GotBytes, fr.Timeouts, other, fr.FirstErr))
	}
	rate := float64(rej) / fr.Elapsed.Seconds()
	h.res.put(m("flood_rate"), as, r, rate)
	h.res.put(m("flood_cpu"), as, r, cpu/float64(rej)*1e6)
	h.res.put(m("flood_p99"), as, r, percentile(pp.lat, .99))
	h.res.put(m("flood_n"), as, r, float64(len(pp.lat)))
	return fmt.Sprintf("%s %.0f/s, %.1f µs CPU each, allowed p99 %.1f µs (%d round trips)",
		as, rate, cpu/float64(rej)*1e6, percentile(pp.lat, .99), len(pp.lat)), nil
}

func (h *harness) testFlood() error {
	for r := 1; r <= h.o.rounds; r++ {
		var line []string
		for _, t := range h.proxies() {
			s, err := h.floodOnce(t, t.name, r)
			if err != nil {
				return err
			}
			line = append(line, s)
		}
		logf("flood round %d/%d: %s", r, h.o.rounds, strings.Join(line, "; "))
	}
	// Extra rounds, interleaved: the table's distgate, one logging at info
	// (what the sampled denial lines cost) and one denying with RST
	// (on_deny = "reset", as HAProxy rejects).
	variants := []struct{ label, level, onDeny string }{
		{"distgate (log info)", "info", "close"},
		{"distgate (on_deny reset)", "warn", "reset"},
	}
	dg := h.target("distgate")
	if dg == nil {
		h.res.note("flood: the rounds of distgate's log and on_deny variants need the `user` variant; not run")
		return nil
	}
	ts := []*target{dg}
	labels := []string{"distgate"}
	logs := map[string]*target{}
	for i, v := range variants {
		p, err := testenv.FreePort("127.0.0.1")
		if err != nil {
			return err
		}
		a := gateAddrs{listen: fmt.Sprintf("127.0.0.1:%d", p), upstream: h.upAddr}
		name := fmt.Sprintf("distgate-extra%d", i+1)
		conf, err := writeDistgate(h.dir, name+".toml", distgateConfig(a, v.level, v.onDeny))
		if err != nil {
			return err
		}
		t := &target{name: name, addr: a.listen, start: func() (*testenv.Proc, error) {
			return h.start(name, h.bins["distgate"], "run", "-config", conf)
		}}
		if err := h.restart(t); err != nil {
			return err
		}
		defer t.p.Stop(syscall.SIGTERM, 5*time.Second)
		ts = append(ts, t)
		labels = append(labels, v.label)
		logs[v.label] = t
	}
	for r := 1; r <= h.o.extraRounds; r++ {
		var line []string
		for i, t := range ts {
			s, err := h.floodOnceAs(t, labels[i], r, "x")
			if err != nil {
				return err
			}
			line = append(line, s)
		}
		logf("flood, distgate variants, round %d/%d: %s", r, h.o.extraRounds, strings.Join(line, "; "))
	}
	for _, t := range ts[1:] {
		t.p.Stop(syscall.SIGTERM, 5*time.Second)
	}
	for label, t := range logs {
		ls, _ := testenv.ParseLog(t.p.Out.All())
		lines := len(t.p.Out.All())
		denied := len(testenv.Filter(ls, testenv.Msg("denied")))
		h.res.put("x_log_lines", label, 1, float64(lines))
		h.res.put("x_log_denied", label, 1, float64(denied))
		logf("%s wrote %d log lines (%d denied)", label, lines, denied)
	}
	return nil
}

// testMemory measures, on freshly started proxies, the RSS added by idle
// admitted connections and by stalled half-sent handshakes.
func (h *harness) testMemory() error {
	for _, t := range h.proxies() {
		if err := h.memIdle(t); err != nil {
			return err
		}
		if err := h.memStalled(t); err != nil {
			return err
		}
		if err := h.restart(t); err != nil { // a clean process for what follows
			return err
		}
	}
	return nil
}

// fit returns how many connections, of want, a process with fds open now
// can hold at perConn descriptors each, leaving some room; rounded down to
// a hundred when capped.
func (h *harness) fit(t *target, want, have, fds int, perConn float64) int {
	n := want
	if perConn > 0 {
		n = min(n, have+int(float64(cmp.Or(t.nofile, h.nofile)-fds-300)/perConn))
	}
	if t.cap > 0 {
		n = min(n, t.cap)
	}
	if n < want {
		n = n / 100 * 100
	}
	return n
}

func (h *harness) memIdle(t *target) error {
	if err := h.restart(t); err != nil {
		return err
	}
	pid := t.pid()
	h.res.put("nofile", t.name, 1, float64(t.nofile))
	// A kernel-path distgate's start-up self-test may still hold its
	// sockets right after the restart: the baseline is taken once the
	// process has settled.
	waitStable(pid)
	rss0, fd0, sock0 := rssKiB(pid), fdCount(pid), sockCount(pid)
	var held []*net.TCPConn
	defer func() { closeAll(held) }()
	perConn := 0.0
	for _, want := range h.o.memSizes {
		n := h.fit(t, want, len(held), fdCount(pid), perConn)
		if n <= len(held) {
			break
		}
		more, err := openMany(t.addr, n-len(held), 32, false, time.Now().Add(60*time.Second))
		held = append(held, more...)
		if err != nil {
			return fmt.Errorf("%s: %d idle connections: opened %d: %w", t.name, n, len(held), err)
		}
		// Each admitted conn has read the upstream's status, so every one
		// is spliced end to end. Let allocations settle.
		waitStable(pid)
		rss, fds := rssKiB(pid), fdCount(pid)
		perConn = float64(fds-fd0) / float64(n)
		h.res.put(fmt.Sprintf("mem_%d", want), t.name, 1, float64(rss-rss0)/float64(n))
		h.res.put(fmt.Sprintf("memn_%d", want), t.name, 1, float64(n))
		h.res.put(fmt.Sprintf("fds_%d", want), t.name, 1, perConn)
		logf("memory %s: %d idle connections: RSS %.1f MiB (+%.1f KiB each), %.1f descriptors each",
			t.name, n, float64(rss)/1024, float64(rss-rss0)/float64(n), perConn)
	}
	closeAll(held)
	held = nil
	// Sockets, not descriptors: Go keeps splice pipes pooled until a GC.
	if !waitFDs(pid, 20*time.Second, sockCount, func(n int) bool { return n <= sock0+10 }) {
		h.res.note(fmt.Sprintf("memory %s: sockets did not return to the baseline within 20 s", t.name))
	}
	return nil
}

func (h *harness) memStalled(t *target) error {
	if err := h.restart(t); err != nil {
		return err
	}
	pid := t.pid()
	waitStable(pid) // as in memIdle
	rss0, fd0 := rssKiB(pid), fdCount(pid)
	var held []*net.TCPConn
	defer func() { closeAll(held) }()
	// Open a first thousand to learn the descriptors each one costs, then
	// as many more as fit, up to the target.
	n := min(1000, h.o.stalled)
	for {
		more, err := openMany(t.addr, n-len(held), 32, true, time.Now().Add(20*time.Second))
		held = append(held, more...)
		if err != nil {
			return fmt.Errorf("%s: %d stalled handshakes: opened %d: %w", t.name, n, len(held), err)
		}
		// The proxy holds them once it has accepted each one.
		if !waitFDs(pid, 20*time.Second, fdCount, func(c int) bool { return c >= fd0+n }) {
			h.res.note(fmt.Sprintf("memory %s: only %d of %d stalled connections accepted", t.name, fdCount(pid)-fd0, n))
		}
		waitStable(pid)
		if n == h.o.stalled {
			break
		}
		fds := fdCount(pid)
		next := h.fit(t, h.o.stalled, n, fds, float64(fds-fd0)/float64(n))
		if next <= n {
			break
		}
		n = next
	}
	rss := rssKiB(pid)
	h.res.put("stalled_mib", t.name, 1, float64(rss)/1024)
	h.res.put("stalled_kib", t.name, 1, float64(rss-rss0)/float64(n))
	h.res.put("stalledn", t.name, 1, float64(n))
	logf("memory %s: %d stalled handshakes: RSS %.1f MiB (+%.1f KiB each)",
		t.name, n, float64(rss)/1024, float64(rss-rss0)/float64(n))
	return nil
}

// waitStable waits (at most 3 s) until pid's descriptor count and RSS stop
// changing over 200 ms.
func waitStable(pid int) {
	end := time.Now().Add(3 * time.Second)
	lastFD, lastRSS := fdCount(pid), rssKiB(pid)
	for time.Now().Before(end) {
		time.Sleep(200 * time.Millisecond)
		fd, rss := fdCount(pid), rssKiB(pid)
		if fd == lastFD && rss-lastRSS < 64 && lastRSS-rss < 64 {
			return
		}
		lastFD, lastRSS = fd, rss
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
