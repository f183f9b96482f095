package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/distgate/distgate/wire"
)

// probe does what a scanner does, against hosts the user owns (design:
// probe): ask epmd for NAMES, then send two first messages to every port
// found and every port given, and classify what came back.

const (
	defaultProbeTimeout = 3 * time.Second
	// probeParallel bounds how many ports are probed at once.
	probeParallel = 8
	// probeReplyCap is how much of a reply to a first message is kept; an
	// Erlang status is at most a few dozen bytes.
	probeReplyCap = 512
	// probeLinger is how long to keep reading once a reply has begun, to get
	// the rest of a status that arrived in two segments.
	probeLinger = 250 * time.Millisecond
)

// scannerMessage is the first message of the CouchDB-era scanners and the
// Metasploit module (erlang-dist-facts.md §4): a legacy 'n' send_name with
// version 7 and flags 0x0003499C. OTP ≤ 24 answers it with a challenge,
// 25.3+ with "s not_allowed"; 25.0–25.2 close it without a byte.
var scannerMessage = []byte("\x00\x15n\x00\x07\x00\x03\x49\x9cAAAAAA@AAAAAAA")

// madeUpName is the node name of the second message. It is easy to grep for
// in a node's log ("Connection attempt from node distgate-probe@probe.invalid
// rejected since it cannot handle [...]").
const madeUpName = "distgate-probe@probe.invalid"

// madeUpMessage is a well-formed 'N' send_name that lacks the OTP 25
// mandatory flags (it carries the scanner's flags). Every OTP 25+ node that
// gets it answers "s not_allowed" and closes, so the probe never reaches a
// challenge, and it catches 25.0–25.2 nodes that ignore scannerMessage.
var madeUpMessage = func() []byte {
	b, err := wire.Append(nil, wire.Handshake{Tag: wire.TagNew, Flags: 0x0003499C, Name: []byte(madeUpName)})
	if err != nil {
		panic(err)
	}
	return b
}()

// Port states (design: probe).
const (
	stateExposed  = "exposed"  // something answered
	stateSilent   = "silent"   // accepted, no byte back
	stateClosed   = "closed"   // connection refused
	stateFiltered = "filtered" // no answer to the connect within the timeout (or unreachable)
)

// Attempt outcomes.
const (
	outAnswered = "answered" // at least one byte came back
	outClosed   = "closed"   // accepted, then closed (FIN or RST) without a byte
	outHeld     = "held"     // accepted, no byte and no close within the timeout
	outRefused  = "refused"  // connect refused
	outTimeout  = "timeout"  // connect timed out
	outError    = "error"    // connect failed otherwise (unreachable, ...)
)

// probeReport is what `distgate probe -json` prints. Its field names are
// stable (docs/OPERATIONS.md lists them).
type probeReport struct {
	Exposed bool         `json:"exposed"` // anything exposed: the exit code is 1
	Epmd    []epmdResult `json:"epmd"`    // one per distinct host, unless -epmd-port 0
	Ports   []portResult `json:"ports"`   // ports given, then ports epmd listed
}

// epmdResult is the NAMES query to one host.
type epmdResult struct {
	Host    string     `json:"host"`            // as given on the command line
	Addr    string     `json:"addr"`            // the address connected to
	Port    int        `json:"port"`            // the epmd port queried
	State   string     `json:"state"`           // exposed | silent | closed | filtered
	Nodes   []epmdNode `json:"nodes"`           // what epmd listed (empty if nothing)
	Error   string     `json:"error,omitempty"` // connect error, or a reply that is not NAMES
	Verdict string     `json:"verdict"`
	Fix     string     `json:"fix,omitempty"` // only when exposed
}

type epmdNode struct {
	Name string `json:"name"` // the alive name, before the '@'
	Port int    `json:"port"`
}

// portResult is one distribution port.
type portResult struct {
	Host     string    `json:"host"`
	Addr     string    `json:"addr"`
	Port     int       `json:"port"`
	From     string    `json:"from"`  // "target" (given) or "epmd" (listed by epmd)
	State    string    `json:"state"` // exposed | silent | closed | filtered
	Attempts []attempt `json:"attempts"`
	Verdict  string    `json:"verdict"`
	Fix      string    `json:"fix,omitempty"` // only when exposed
}

// attempt is one connection with one first message.
type attempt struct {
	Message  string `json:"message"`             // "scanner_n" or "made_up_N"
	Outcome  string `json:"outcome"`             // answered | closed | held | refused | timeout | error
	Status   string `json:"status,omitempty"`    // the Erlang recv_status text, e.g. "not_allowed"
	ReplyHex string `json:"reply_hex,omitempty"` // the bytes that came back (at most 512)
	Error    string `json:"error,omitempty"`
	Millis   int64  `json:"ms"` // connect to outcome
}

// probeTarget is one command-line argument, resolved.
type probeTarget struct {
	host string     // as given (brackets removed)
	addr netip.Addr // what is dialled
	port int        // 0: only epmd
}

// cmdProbe runs `distgate probe`. Exit codes: 0 nothing exposed, 1 something
// exposed, 2 usage error.
func cmdProbe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the results as JSON")
	timeout := fs.Duration("timeout", defaultProbeTimeout, "how long to wait for a connect, and then for a reply")
	epmdPort := fs.Int("epmd-port", wire.EpmdPort, "epmd `port` to query on each host (0: do not query epmd)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: distgate probe [-json] [-timeout 3s] [-epmd-port 4369] TARGET...\n"+
			"  TARGET is HOST, HOST:PORT or [IPv6]:PORT; probe only hosts you own.\n")
		fs.PrintDefaults()
	}
	// Flags may come before, between or after the targets.
	var rawTargets []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK
			}
			return exitUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		rawTargets = append(rawTargets, args[0])
		args = args[1:]
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "distgate: probe: "+format+"\n", a...)
		return exitUsage
	}
	if len(rawTargets) == 0 {
		return bad("no TARGET given (HOST, HOST:PORT or [IPv6]:PORT)")
	}
	if *timeout <= 0 || *timeout > time.Minute {
		return bad("-timeout %s: must be more than 0 and at most 1m", *timeout)
	}
	if *epmdPort < 0 || *epmdPort > 65535 {
		return bad("-epmd-port %d: not a port (0 skips epmd)", *epmdPort)
	}
	var targets []probeTarget
	for _, s := range rawTargets {
		t, err := parseProbeTarget(s, *timeout)
		if err != nil {
			return bad("%v", err)
		}
		targets = append(targets, t)
	}
	if *epmdPort == 0 {
		for _, t := range targets {
			if t.port == 0 {
				return bad("target %q has no port and -epmd-port is 0: nothing to probe", t.host)
			}
		}
	}

	rep := probe(targets, *epmdPort, *timeout)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printProbe(stdout, rep, *timeout)
	}
	if rep.Exposed {
		return exitRuntime
	}
	return exitOK
}

// parseProbeTarget reads HOST, HOST:PORT, [IPv6] or [IPv6]:PORT (a bare
// IPv6 address works too). A host name is resolved once, here, so every
// connection goes to the same address.
func parseProbeTarget(s string, timeout time.Duration) (probeTarget, error) {
	host, portStr := s, ""
	if a, err := netip.ParseAddr(s); err == nil {
		host = a.String()
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	} else if strings.Contains(s, ":") {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return probeTarget{}, fmt.Errorf("target %q: not HOST, HOST:PORT or [IPv6]:PORT", s)
		}
		host, portStr = h, p
	}
	t := probeTarget{host: host}
	if portStr != "" {
		p, err := strconv.Atoi(portStr)
		if err != nil || p < 1 || p > 65535 {
			return probeTarget{}, fmt.Errorf("target %q: port %q is not 1–65535", s, portStr)
		}
		t.port = p
	}
	if host == "" {
		return probeTarget{}, fmt.Errorf("target %q: empty host", s)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return probeTarget{}, fmt.Errorf("target %q: zoned addresses are not supported", s)
		}
		t.addr = a.Unmap()
		t.host = t.addr.String()
		return t, nil
	}
	for _, c := range host {
		if !(c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return probeTarget{}, fmt.Errorf("target %q: %q is neither an IP address nor a host name", s, host)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return probeTarget{}, fmt.Errorf("target %q: cannot resolve %q: %v", s, host, err)
	}
	t.addr = addrs[0].Unmap()
	return t, nil
}

// probe runs every check and returns the report. Only the given hosts are
// contacted: epmd on each, then the given ports and the ports epmd listed.
func probe(targets []probeTarget, epmdPort int, timeout time.Duration) probeReport {
	var rep probeReport
	rep.Epmd = []epmdResult{}
	rep.Ports = []portResult{}

	type hostKey struct {
		host string
		addr netip.Addr
	}
	var hosts []hostKey
	seenHost := map[hostKey]bool{}
	type portKey struct {
		addr netip.Addr
		port int
	}
	seenPort := map[portKey]bool{}
	for _, t := range targets {
		hk := hostKey{t.host, t.addr}
		if !seenHost[hk] {
			seenHost[hk] = true
			hosts = append(hosts, hk)
		}
		pk := portKey{t.addr, t.port}
		// A given port equal to the epmd port is covered by the epmd query.
		if t.port == 0 || seenPort[pk] || (epmdPort != 0 && t.port == epmdPort) {
			continue
		}
		seenPort[pk] = true
		rep.Ports = append(rep.Ports, portResult{Host: t.host, Addr: t.addr.String(), Port: t.port, From: "target"})
	}

	if epmdPort != 0 {
		rep.Epmd = make([]epmdResult, len(hosts))
		var wg sync.WaitGroup
		for i, h := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rep.Epmd[i] = queryEpmd(h.host, h.addr, epmdPort, timeout)
			}()
		}
		wg.Wait()
		for _, e := range rep.Epmd {
			a, _ := netip.ParseAddr(e.Addr)
			for _, n := range e.Nodes {
				pk := portKey{a, n.Port}
				if n.Port == 0 || seenPort[pk] {
					continue
				}
				seenPort[pk] = true
				rep.Ports = append(rep.Ports, portResult{Host: e.Host, Addr: e.Addr, Port: n.Port, From: "epmd"})
			}
		}
	}

	sem := make(chan struct{}, probeParallel)
	var wg sync.WaitGroup
	for i := range rep.Ports {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			probePort(&rep.Ports[i], timeout)
		}()
	}
	wg.Wait()

	for _, e := range rep.Epmd {
		rep.Exposed = rep.Exposed || e.State == stateExposed
	}
	for _, p := range rep.Ports {
		rep.Exposed = rep.Exposed || p.State == stateExposed
	}
	return rep
}

// queryEpmd sends NAMES_REQ and reads the reply up to wire.MaxNamesReply.
func queryEpmd(host string, addr netip.Addr, port int, timeout time.Duration) epmdResult {
	r := epmdResult{Host: host, Addr: addr.String(), Port: port, Nodes: []epmdNode{}}
	a := exchange(netip.AddrPortFrom(addr, uint16(port)), wire.AppendNamesRequest(nil), wire.MaxNamesReply, timeout, 0)
	r.State = stateOf([]attempt{a.attempt})
	r.Error = a.Error
	switch r.State {
	case stateExposed:
		names, err := wire.ParseNames(a.reply)
		for _, n := range names.Nodes {
			r.Nodes = append(r.Nodes, epmdNode{Name: n.Name, Port: int(n.Port)})
		}
		if err != nil {
			r.Error = "the reply is not a complete epmd NAMES reply: " + err.Error()
		}
		switch {
		case err != nil && len(r.Nodes) == 0:
			r.Verdict = fmt.Sprintf("something answered on the epmd port with %d bytes that are not an epmd reply", len(a.reply))
			r.Fix = "find out what listens on this port; if it is epmd, see the epmd fix in docs/OPERATIONS.md"
		case len(r.Nodes) == 0:
			r.Verdict = "epmd answers: no node is registered, but a scanner learns that Erlang runs here"
			r.Fix = epmdFix
		default:
			list := make([]string, len(r.Nodes))
			for i, n := range r.Nodes {
				list[i] = fmt.Sprintf("%s at port %d", n.Name, n.Port)
			}
			r.Verdict = fmt.Sprintf("epmd answers and tells anyone where %d node(s) listen: %s", len(r.Nodes), strings.Join(list, ", "))
			r.Fix = epmdFix
		}
	case stateSilent:
		r.Verdict = "accepted and closed without a byte: no epmd answers here"
	case stateClosed:
		r.Verdict = "refused: no epmd listens here"
	default:
		r.Verdict = fmt.Sprintf("no answer within %s: a firewall drops it, or the host is down", timeout)
	}
	return r
}

const epmdFix = "run the nodes epmdless (-start_epmd false -erl_epmd_port PORT) and stop epmd; " +
	"if you need epmd, bind it to loopback (ERL_EPMD_ADDRESS=127.0.0.1) or firewall port 4369"

const portFix = "bind the node to loopback (-kernel inet_dist_use_interface '{127,0,0,1}') and put distgate " +
	"on this port with an allowlist, or firewall the port to the hosts that must connect"

// probePort sends the scanner message and the made-up 'N' message on two
// connections, one after the other, and classifies the port.
func probePort(p *portResult, timeout time.Duration) {
	addr, _ := netip.ParseAddr(p.Addr)
	ap := netip.AddrPortFrom(addr, uint16(p.Port))
	a1 := exchange(ap, scannerMessage, probeReplyCap, timeout, probeLinger)
	a1.Message = "scanner_n"
	a2 := exchange(ap, madeUpMessage, probeReplyCap, timeout, probeLinger)
	a2.Message = "made_up_N"
	p.Attempts = []attempt{a1.attempt, a2.attempt}
	p.State = stateOf(p.Attempts)
	switch p.State {
	case stateExposed:
		p.Fix = portFix
		var status string
		var n int
		for _, a := range p.Attempts {
			if a.Status != "" && status == "" {
				status = a.Status
			}
			n = max(n, len(a.ReplyHex)/2)
		}
		switch status {
		case "":
			p.Verdict = fmt.Sprintf("something answered with %d bytes that are not an Erlang handshake status: a service is reachable here", n)
			p.Fix = "find out what listens on this port; if it forwards to an Erlang node, put distgate in front of the node instead"
		case "not_allowed":
			p.Verdict = "an Erlang node answers here (status not_allowed to a made-up node): anyone who can reach this port can start the distribution handshake and try cookies"
		default:
			p.Verdict = fmt.Sprintf("an Erlang node answers here (status %s): it went on with the handshake for a made-up node; anyone who can reach this port can try cookies", status)
		}
	case stateSilent:
		p.Verdict = "accepted and closed without a byte: a scanner learns only that the port is open (what distgate does)"
		for _, a := range p.Attempts {
			if a.Outcome == outHeld {
				p.Verdict = fmt.Sprintf("accepted and held for %s without a byte: nothing leaks", timeout)
			}
		}
	case stateClosed:
		p.Verdict = "refused: nothing listens here"
	default:
		p.Verdict = fmt.Sprintf("no answer within %s: a firewall drops it, or the host is down", timeout)
	}
}

// exchanged is an attempt plus the raw reply.
type exchanged struct {
	attempt
	reply []byte
}

// exchange connects to ap, writes msg, and reads until the peer closes, the
// timeout passes, limit bytes came, or (linger > 0) linger after the first
// byte.
func exchange(ap netip.AddrPort, msg []byte, limit int, timeout, linger time.Duration) exchanged {
	start := time.Now()
	var x exchanged
	done := func(outcome string, err error) exchanged {
		x.Outcome = outcome
		if err != nil {
			x.Error = err.Error()
		}
		x.Millis = time.Since(start).Milliseconds()
		if len(x.reply) > 0 {
			x.ReplyHex = hex.EncodeToString(x.reply)
			x.Status = erlangStatus(x.reply)
		}
		return x
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", ap.String())
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return done(outRefused, nil)
		case errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
			return done(outTimeout, nil)
		}
		return done(outError, err)
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	_ = c.SetDeadline(deadline)
	if _, err := c.Write(msg); err != nil {
		// Closed or reset before the message went out: nothing came back.
		return done(outClosed, nil)
	}
	buf := make([]byte, limit)
	for len(x.reply) < limit {
		n, err := c.Read(buf[len(x.reply):])
		x.reply = buf[:len(x.reply)+n]
		if n > 0 && linger > 0 {
			if t := time.Now().Add(linger); t.Before(deadline) {
				deadline = t
				_ = c.SetReadDeadline(deadline)
			}
		}
		if err != nil {
			if len(x.reply) > 0 {
				return done(outAnswered, nil)
			}
			if isTimeout(err) {
				return done(outHeld, nil)
			}
			return done(outClosed, nil) // EOF or reset
		}
	}
	return done(outAnswered, nil)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// erlangStatus returns the status text if b starts with a whole recv_status
// frame (2-byte length, 's', text: erlang-dist-facts.md §2.2), else "".
func erlangStatus(b []byte) string {
	if len(b) < 4 || b[2] != 's' {
		return ""
	}
	n := int(b[0])<<8 | int(b[1])
	if n < 2 || len(b) < 2+n {
		return ""
	}
	text := b[3 : 2+n]
	for _, c := range text {
		if !wire.Printable(c) {
			return ""
		}
	}
	return string(text)
}

// stateOf folds attempts into a state: any byte back is exposed; otherwise
// an accepted connection is silent; otherwise refused is closed; otherwise
// (timeouts, unreachable) filtered.
func stateOf(as []attempt) string {
	state := stateFiltered
	for _, a := range as {
		switch a.Outcome {
		case outAnswered:
			return stateExposed
		case outClosed, outHeld:
			state = stateSilent
		case outRefused:
			if state == stateFiltered {
				state = stateClosed
			}
		}
	}
	return state
}

// printProbe writes the human-readable report.
func printProbe(w io.Writer, rep probeReport, timeout time.Duration) {
	hostPort := func(host, addr string, port int) string {
		s := net.JoinHostPort(addr, strconv.Itoa(port))
		if host != addr {
			s = host + " (" + s + ")"
		}
		return s
	}
	counts := map[string]int{}
	for _, e := range rep.Epmd {
		counts[e.State]++
		fmt.Fprintf(w, "%s  epmd  %s\n", hostPort(e.Host, e.Addr, e.Port), e.State)
		fmt.Fprintf(w, "  verdict: %s\n", e.Verdict)
		if e.Error != "" && e.State == stateExposed {
			fmt.Fprintf(w, "  note: %s\n", e.Error)
		}
		if e.Fix != "" {
			fmt.Fprintf(w, "  fix: %s\n", e.Fix)
		}
		fmt.Fprintln(w)
	}
	label := map[string]string{"scanner_n": "scanner 'n' message", "made_up_N": "made-up 'N' message"}
	for _, p := range rep.Ports {
		counts[p.State]++
		from := ""
		if p.From == "epmd" {
			from = "  (listed by epmd)"
		}
		fmt.Fprintf(w, "%s  %s%s\n", hostPort(p.Host, p.Addr, p.Port), p.State, from)
		for _, a := range p.Attempts {
			fmt.Fprintf(w, "  %-20s %s\n", label[a.Message]+":", describeAttempt(a, timeout))
		}
		fmt.Fprintf(w, "  verdict: %s\n", p.Verdict)
		if p.Fix != "" {
			fmt.Fprintf(w, "  fix: %s\n", p.Fix)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%d exposed, %d silent, %d closed, %d filtered\n",
		counts[stateExposed], counts[stateSilent], counts[stateClosed], counts[stateFiltered])
}

func describeAttempt(a attempt, timeout time.Duration) string {
	switch a.Outcome {
	case outAnswered:
		raw, _ := hex.DecodeString(a.ReplyHex)
		if a.Status != "" {
			return fmt.Sprintf("answered %q (status %s)", raw, a.Status)
		}
		if len(raw) > 32 {
			return fmt.Sprintf("answered %d bytes: %q…", len(raw), raw[:32])
		}
		return fmt.Sprintf("answered %q", raw)
	case outClosed:
		return "closed without a byte"
	case outHeld:
		return fmt.Sprintf("no byte and no close within %s", timeout)
	case outRefused:
		return "connection refused"
	case outTimeout:
		return fmt.Sprintf("no connect within %s", timeout)
	default:
		return "connect failed: " + a.Error
	}
}
