package probe

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/distgate/distgate/wire"
)

// madeUpName is the node name of the second message. It is easy to grep for
// in a node's log ("Connection attempt from node distgate-probe@probe.invalid
// rejected since it cannot handle [...]").
const madeUpName = "distgate-probe@probe.invalid"

// madeUpMessage is a well-formed 'N' send_name that lacks the OTP 25
// mandatory flags (it carries the scanner's flags). Every OTP 25+ node that
// gets it answers "s not_allowed" and closes, so the probe never reaches a
// challenge, and it catches 25.0–25.2 nodes that close wire.ScannerProbe
// without a byte.
var madeUpMessage = func() []byte {
	b, err := wire.Append(nil, wire.Handshake{Tag: wire.TagNew, Flags: 0x0003499C, Name: []byte(madeUpName)})
	if err != nil {
		panic(err)
	}
	return b
}()

const epmdFix = "run the nodes epmdless (-start_epmd false -erl_epmd_port PORT) and stop epmd; " +
	"if you need epmd, bind it to loopback (ERL_EPMD_ADDRESS=127.0.0.1) or firewall port 4369"

const portFix = "bind the node to loopback (-kernel inet_dist_use_interface '{127,0,0,1}') and put distgate " +
	"on this port with an allowlist, or firewall the port to the hosts that must connect"

// queryEpmd sends NAMES_REQ and reads the reply up to wire.MaxNamesReply.
func queryEpmd(ctx context.Context, host string, addr netip.Addr, port int, timeout time.Duration) Epmd {
	r := Epmd{Host: host, Addr: addr.String(), Port: port, Nodes: []Node{}}
	a := exchange(ctx, netip.AddrPortFrom(addr, uint16(port)), wire.AppendNamesRequest(nil), wire.MaxNamesReply, timeout, 0)
	r.State = stateOf([]Attempt{a.Attempt})
	r.Error = a.Error
	switch r.State {
	case StateExposed:
		names, err := wire.ParseNames(a.reply)
		for _, n := range names.Nodes {
			r.Nodes = append(r.Nodes, Node{Name: n.Name, Port: int(n.Port)})
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
	case StateSilent:
		r.Verdict = "accepted and closed without a byte: no epmd answers here"
	case StateClosed:
		r.Verdict = "refused: no epmd listens here"
	default:
		r.Verdict = fmt.Sprintf("no answer within %s: a firewall drops it, or the host is down", timeout)
	}
	return r
}

// probePort sends the scanner message and the made-up 'N' message on two
// connections, one after the other, and classifies the port.
func probePort(ctx context.Context, p *Port, timeout time.Duration) {
	addr, _ := netip.ParseAddr(p.Addr)
	ap := netip.AddrPortFrom(addr, uint16(p.Port))
	a1 := exchange(ctx, ap, wire.ScannerProbe, replyCap, timeout, linger)
	a1.Message = "scanner_n"
	a2 := exchange(ctx, ap, madeUpMessage, replyCap, timeout, linger)
	a2.Message = "made_up_N"
	p.Attempts = []Attempt{a1.Attempt, a2.Attempt}
	p.State = stateOf(p.Attempts)
	switch p.State {
	case StateExposed:
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
		case wire.StatusNotAllowed:
			p.Verdict = "an Erlang node answers here (status not_allowed to a made-up node): anyone who can reach this port can start the distribution handshake and try cookies"
		default:
			p.Verdict = fmt.Sprintf("an Erlang node answers here (status %s): it went on with the handshake for a made-up node; anyone who can reach this port can try cookies", status)
		}
	case StateSilent:
		p.Verdict = "accepted and closed without a byte: a scanner learns only that the port is open (what distgate does)"
		for _, a := range p.Attempts {
			if a.Outcome == OutcomeHeld {
				p.Verdict = fmt.Sprintf("accepted and held for %s without a byte: nothing leaks", timeout)
			}
		}
	case StateClosed:
		p.Verdict = "refused: nothing listens here"
	default:
		p.Verdict = fmt.Sprintf("no answer within %s: a firewall drops it, or the host is down", timeout)
	}
}

// stateOf folds attempts into a state: any byte back is exposed; otherwise
// an accepted connection is silent; otherwise refused is closed; otherwise
// (timeouts, unreachable, cancelled) filtered.
func stateOf(as []Attempt) string {
	state := StateFiltered
	for _, a := range as {
		switch a.Outcome {
		case OutcomeAnswered:
			return StateExposed
		case OutcomeClosed, OutcomeHeld:
			state = StateSilent
		case OutcomeRefused:
			if state == StateFiltered {
				state = StateClosed
			}
		}
	}
	return state
}
