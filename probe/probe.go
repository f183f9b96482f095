// Package probe audits hosts the way a scanner does, against hosts the user
// owns (design: probe): it asks epmd for NAMES, sends two first messages to
// every port found and every port given, and classifies what came back.
package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/distgate/distgate/wire"
)

const (
	// DefaultTimeout bounds a connect, and then the wait for a reply.
	DefaultTimeout = 3 * time.Second
	// parallel bounds how many ports are probed at once.
	parallel = 8
)

// Port states (design: probe).
const (
	StateExposed  = "exposed"  // something answered
	StateSilent   = "silent"   // accepted, no byte back
	StateClosed   = "closed"   // connection refused
	StateFiltered = "filtered" // no answer to the connect within the timeout (or unreachable)
)

// Attempt outcomes.
const (
	OutcomeAnswered = "answered" // at least one byte came back
	OutcomeClosed   = "closed"   // accepted, then closed (FIN or RST) without a byte
	OutcomeHeld     = "held"     // accepted, no byte and no close within the timeout
	OutcomeRefused  = "refused"  // connect refused
	OutcomeTimeout  = "timeout"  // connect timed out
	OutcomeError    = "error"    // connect failed otherwise (unreachable, ...)
)

// Options tune Run. The zero value asks epmd on wire.EpmdPort and waits
// DefaultTimeout.
type Options struct {
	// Timeout bounds each connect, and then the wait for a reply; it also
	// bounds resolving a host name. Zero means DefaultTimeout.
	Timeout time.Duration
	// EpmdPort is the port epmd is asked on, on each host. Zero means
	// wire.EpmdPort.
	EpmdPort int
	// NoEpmd skips the epmd query; every target must then carry a port.
	NoEpmd bool
}

// Report is what a probe found. Its JSON field names are stable
// (docs/OPERATIONS.md lists them).
type Report struct {
	Exposed bool   `json:"exposed"` // anything exposed
	Epmd    []Epmd `json:"epmd"`    // one per distinct host, unless epmd is skipped
	Ports   []Port `json:"ports"`   // ports given, then ports epmd listed
	// Unprobed are the hosts given without a port on which nothing could
	// be probed: no epmd answered, so no port was learnt (an epmdless
	// host lists its port nowhere). Nothing exposed there means nothing
	// was looked at, not that nothing is there.
	Unprobed []string `json:"unprobed"`
	// Timeout is the one the probe ran with; the text output names it.
	Timeout time.Duration `json:"-"`
}

// Epmd is the NAMES query to one host.
type Epmd struct {
	Host    string `json:"host"`            // as given
	Addr    string `json:"addr"`            // the address connected to
	Port    int    `json:"port"`            // the epmd port queried
	State   string `json:"state"`           // exposed | silent | closed | filtered
	Nodes   []Node `json:"nodes"`           // what epmd listed (empty if nothing)
	Error   string `json:"error,omitempty"` // connect error, or a reply that is not NAMES
	Verdict string `json:"verdict"`
	Fix     string `json:"fix,omitempty"` // only when exposed
}

// Node is one entry of an epmd NAMES reply.
type Node struct {
	Name string `json:"name"` // the alive name, before the '@'
	Port int    `json:"port"`
}

// Port is one distribution port.
type Port struct {
	Host     string    `json:"host"`
	Addr     string    `json:"addr"`
	Port     int       `json:"port"`
	From     string    `json:"from"`  // "target" (given) or "epmd" (listed by epmd)
	State    string    `json:"state"` // exposed | silent | closed | filtered
	Attempts []Attempt `json:"attempts"`
	Verdict  string    `json:"verdict"`
	Fix      string    `json:"fix,omitempty"` // only when exposed
}

// Attempt is one connection with one first message.
type Attempt struct {
	Message  string `json:"message"`             // "scanner_n" or "made_up_N"
	Outcome  string `json:"outcome"`             // answered | closed | held | refused | timeout | error
	Status   string `json:"status,omitempty"`    // the Erlang recv_status text, e.g. "not_allowed"
	ReplyHex string `json:"reply_hex,omitempty"` // the bytes that came back (at most 512)
	Error    string `json:"error,omitempty"`
	Millis   int64  `json:"ms"` // connect to outcome
}

// Run probes targets (HOST, HOST:PORT, [IPv6] or [IPv6]:PORT) and returns
// the report. Only the given hosts are contacted: epmd on each, then the
// given ports and the ports epmd listed. A host name is resolved once, so
// every connection goes to the same address.
//
// Run returns an error, having sent nothing, when a target or an option is
// unusable (a bad port, an unresolvable name, a target without a port while
// epmd is skipped). When ctx ends, the attempts still running end with
// outcome error.
func Run(ctx context.Context, targets []string, opts Options) (Report, error) {
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.EpmdPort == 0 {
		opts.EpmdPort = wire.EpmdPort
	}
	if opts.Timeout < 0 {
		return Report{}, fmt.Errorf("timeout %s: must be positive", opts.Timeout)
	}
	if opts.EpmdPort < 0 || opts.EpmdPort > 65535 {
		return Report{}, fmt.Errorf("epmd port %d: not a port", opts.EpmdPort)
	}
	if len(targets) == 0 {
		return Report{}, errors.New("no TARGET given (HOST, HOST:PORT or [IPv6]:PORT)")
	}
	ts := make([]target, 0, len(targets))
	for _, s := range targets {
		t, err := parseTarget(ctx, s, opts.Timeout)
		if err != nil {
			return Report{}, err
		}
		ts = append(ts, t)
	}
	if opts.NoEpmd {
		for _, t := range ts {
			if t.port == 0 {
				return Report{}, fmt.Errorf("target %q has no port and -epmd-port is 0: nothing to probe", t.host)
			}
		}
	}
	epmdPort := opts.EpmdPort
	if opts.NoEpmd {
		epmdPort = 0
	}
	return run(ctx, ts, epmdPort, opts.Timeout), nil
}

// UnprobedMessages says, for each of r.Unprobed, why nothing was probed
// there and what to give instead.
func (r Report) UnprobedMessages() []string {
	msgs := make([]string, 0, len(r.Unprobed))
	for _, h := range r.Unprobed {
		epmd := "epmd"
		for _, e := range r.Epmd {
			if e.Host == h {
				epmd = fmt.Sprintf("epmd on port %d", e.Port)
				break
			}
		}
		msgs = append(msgs, fmt.Sprintf("nothing could be probed on %s: no port was given and no %s answered, "+
			"so no port was learnt (an epmdless node is listed nowhere); give the node's distribution port as HOST:PORT, "+
			"e.g. distgate probe %s", h, epmd, net.JoinHostPort(h, "9100")))
	}
	return msgs
}

// run probes resolved targets; epmdPort 0 skips epmd.
func run(ctx context.Context, targets []target, epmdPort int, timeout time.Duration) Report {
	rep := Report{Epmd: []Epmd{}, Ports: []Port{}, Unprobed: []string{}, Timeout: timeout}

	type hostKey struct {
		host string
		addr netip.Addr
	}
	var hosts, bare []hostKey
	seenHost, seenBare := map[hostKey]bool{}, map[hostKey]bool{}
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
		if t.port == 0 && !seenBare[hk] {
			seenBare[hk] = true
			bare = append(bare, hk)
		}
		pk := portKey{t.addr, t.port}
		// A given port equal to the epmd port is covered by the epmd query.
		if t.port == 0 || seenPort[pk] || (epmdPort != 0 && t.port == epmdPort) {
			continue
		}
		seenPort[pk] = true
		rep.Ports = append(rep.Ports, Port{Host: t.host, Addr: t.addr.String(), Port: t.port, From: "target"})
	}

	if epmdPort != 0 {
		rep.Epmd = make([]Epmd, len(hosts))
		var wg sync.WaitGroup
		for i, h := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rep.Epmd[i] = queryEpmd(ctx, h.host, h.addr, epmdPort, timeout)
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
				rep.Ports = append(rep.Ports, Port{Host: e.Host, Addr: e.Addr, Port: n.Port, From: "epmd"})
			}
		}
	}

	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range rep.Ports {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			probePort(ctx, &rep.Ports[i], timeout)
		}()
	}
	wg.Wait()

	for _, e := range rep.Epmd {
		rep.Exposed = rep.Exposed || e.State == StateExposed
	}
	probed := map[netip.Addr]bool{}
	for _, p := range rep.Ports {
		rep.Exposed = rep.Exposed || p.State == StateExposed
		a, _ := netip.ParseAddr(p.Addr)
		probed[a] = true
	}
	for _, e := range rep.Epmd {
		if e.State == StateExposed {
			a, _ := netip.ParseAddr(e.Addr)
			probed[a] = true
		}
	}
	for _, h := range bare {
		if !probed[h.addr] {
			rep.Unprobed = append(rep.Unprobed, h.host)
		}
	}
	return rep
}
