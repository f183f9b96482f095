// Package admin is distgate's admin socket: a Unix socket, mode 0600, on
// which a running daemon answers status, ban and unban requests (design.md,
// Admin socket), the client that asks, and the status, ban and unban
// commands built on it.
//
// The protocol is one JSON request and one JSON response per connection.
// The Status document is a public interface: its field names are stable
// and documented in docs/OPERATIONS.md (status -json).
//
// The daemon listens before it starts its gates (a clash is a start-up
// error) and serves until shutdown:
//
//	s, err := admin.Listen(path)
//	s.OnError = func(err error) { log.Warn().Err(err).Msg("admin socket") }
//	go s.Serve(ctx, backend) // removes the socket when ctx ends
//
// and the command line dispatches to a CLI that reads [admin] socket
// through the configuration package:
//
//	cli := admin.CLI{ConfigSocket: func(path string, environ []string) (string, error) {
//		c, err := config.Load(path, environ)
//		if err != nil {
//			return "", err
//		}
//		return c.Admin.Socket, nil
//	}}
//	os.Exit(cli.Ban(args, os.Environ(), os.Stdout, os.Stderr))
package admin

import (
	"net/netip"
	"time"

	"github.com/distgate/distgate/policy"
)

// Backend is what the daemon gives the server: the answers to requests. Its
// methods are called from the server's goroutines, concurrently.
type Backend interface {
	// Status returns the daemon's state now.
	Status() Status
	// Ban bans addr's source key (an IPv4 address, an IPv6 /64) on the gate
	// named gate, or on every gate if gate is "", for d (0: the gate's
	// ban.duration). It returns one result per gate concerned; an unknown
	// gate is a result too (ResultUnknownGate), not an error. The error is
	// for a failure of the request as a whole.
	Ban(gate string, addr netip.Addr, d time.Duration) ([]BanResult, error)
	// Unban lifts the ban of addr's source key and clears its failures, on
	// one gate or every gate, like Ban.
	Unban(gate string, addr netip.Addr) ([]BanResult, error)
}

// Results of a ban or unban on one gate (BanResult.Result).
const (
	ResultBanned      = "banned"       // the source is banned (Ban holds it)
	ResultUnbanned    = "unbanned"     // its ban was lifted (Ban holds what it was)
	ResultNotBanned   = "not_banned"   // unban of a source that was not banned: nothing to do
	ResultNever       = "never"        // refused: the source is in the gate's ban.never
	ResultUnknownGate = "unknown_gate" // refused: no gate by that name
	ResultRefused     = "refused"      // refused for another reason, given in Message
)

// BanResult is the outcome of a ban or unban on one gate.
type BanResult struct {
	Gate    string `json:"gate"`
	Result  string `json:"result"`            // one of the Result* constants
	Ban     *Ban   `json:"ban,omitempty"`     // the ban made, or the ban lifted
	Message string `json:"message,omitempty"` // why, when refused
}

// Refused reports whether the result is a refusal (the command exits 1).
func (r BanResult) Refused() bool {
	switch r.Result {
	case ResultBanned, ResultUnbanned, ResultNotBanned:
		return false
	}
	return true
}

// Status is the answer to `distgate status`. Field names are stable.
type Status struct {
	Version string       `json:"version"` // distgate's version, as `distgate version` prints it
	PID     int          `json:"pid"`
	Config  string       `json:"config"`  // the configuration file, or "embedded default"
	Started time.Time    `json:"started"` // when the daemon started
	Time    time.Time    `json:"time"`    // when this status was taken
	Gates   []GateStatus `json:"gates"`   // in configuration order
}

// GateStatus is one gate in a Status.
type GateStatus struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"`
	Upstream string `json:"upstream"`
	Forward  string `json:"forward"` // the forwarding path in use: "user" or "kernel"
	TLS      string `json:"tls"`     // tls.mode: "off", "terminate" or "passthrough"
	// Connections are the admitted connections that are open now, oldest
	// first.
	Connections []Conn `json:"connections"`
	// Bans are the active bans, soonest to end first.
	Bans []Ban `json:"bans"`
	// LimiterSources is the number of per-source rate-limiter entries held
	// (the distgate_limiter_sources metric).
	LimiterSources int `json:"limiter_sources"`
	// BanTable is the size of the failure and ban table.
	BanTable BanTable `json:"ban_table"`
}

// Conn is one open admitted connection.
type Conn struct {
	Remote netip.AddrPort `json:"remote"` // the client's address and port
	Node   string         `json:"node"`   // the node name from its first message (escaped)
	// Outcome is the handshake's outcome ("ok", ...), or "" while distgate
	// is still watching the handshake.
	Outcome  string    `json:"outcome"`
	Since    time.Time `json:"since"`     // when it was accepted
	BytesIn  int64     `json:"bytes_in"`  // forwarded client to node so far
	BytesOut int64     `json:"bytes_out"` // forwarded node to client so far
	// Path is how it is forwarded: "user", "kernel" or "tls", or "" while
	// the handshake is watched.
	Path string `json:"path"`
	// Identity is the client certificate's CN on a TLS terminate gate, SNI
	// the server name on a passthrough gate; empty otherwise.
	Identity string `json:"identity,omitempty"`
	SNI      string `json:"sni,omitempty"`
}

// Ban is one active ban.
type Ban struct {
	Source   netip.Prefix `json:"source"`   // a /32, or an IPv6 /64
	Until    time.Time    `json:"until"`    // when it ends
	Failures int          `json:"failures"` // failures that caused it; 0 for a ban by hand
	Level    int          `json:"level"`    // 1 for the source's first ban, 2 for the next (twice as long), ...
}

// BanTable counts what a gate's ban table holds; each of Failures and
// Records is capped at Max.
type BanTable struct {
	Active   int `json:"active"`   // active bans
	Failures int `json:"failures"` // sources with recent failures
	Records  int `json:"records"`  // sources banned or remembered for escalation
	Max      int `json:"max"`      // the cap on each
}

// BanOf converts a policy ban for a Status or a BanResult.
func BanOf(b policy.Ban) Ban {
	return Ban{Source: b.Source, Until: b.Until, Failures: b.Failures, Level: b.Level}
}

// BansOf converts a list of policy bans; never nil, so JSON says [].
func BansOf(bs []policy.Ban) []Ban {
	out := make([]Ban, len(bs))
	for i, b := range bs {
		out[i] = BanOf(b)
	}
	return out
}

// request is what the client sends.
type request struct {
	Op      string `json:"op"` // "status", "ban" or "unban"
	Gate    string `json:"gate,omitempty"`
	Address string `json:"address,omitempty"`
	For     string `json:"for,omitempty"` // a Go duration; empty: the gate's ban.duration
}

// response is what the server answers: Error, or the op's result.
type response struct {
	Error   string      `json:"error,omitempty"`
	Status  *Status     `json:"status,omitempty"`
	Results []BanResult `json:"results,omitempty"`
}
