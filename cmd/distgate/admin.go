package main

import (
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/distgate/distgate/admin"
	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/state"
	"github.com/distgate/distgate/internal/version"
	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/proxy"
	"github.com/distgate/distgate/wire"
)

// adminCLI runs status, ban and unban; without -socket or
// DISTGATE_ADMIN_SOCKET they read [admin] socket from the configuration.
var adminCLI = admin.CLI{ConfigSocket: func(path string, environ []string) (string, error) {
	c, err := config.Load(path, environ)
	if err != nil {
		return "", err
	}
	return c.Admin.Socket, nil
}}

// backend answers the admin socket from the running gates.
type backend struct {
	gates   []*proxy.Gate
	listen  []string // each gate's listening address
	tls     []string // each gate's tls.mode (restart-only)
	config  string
	started time.Time
}

func (b *backend) Status() admin.Status {
	st := admin.Status{Version: version.String(), PID: os.Getpid(), Config: b.config, Started: b.started, Time: time.Now()}
	for i, g := range b.gates {
		s := g.Status()
		if s.Path == "tls" {
			s.Path = "user" // a terminating gate forwards in user space; its conns say tls
		}
		gs := admin.GateStatus{Name: s.Name, Listen: b.listen[i], Upstream: s.Upstream, Forward: s.Path, TLS: b.tls[i],
			Bans: admin.BansOf(s.Bans), LimiterSources: s.LimiterSources,
			BanTable: admin.BanTable{Active: len(s.Bans), Failures: s.BanFailures, Records: s.BanRecords, Max: policy.DefaultMaxBanSources}}
		for _, c := range s.Conns {
			if c.Outcome == wire.OutcomePending.String() {
				c.Outcome = "" // the admin protocol's word for "still watched"
			}
			gs.Connections = append(gs.Connections, admin.Conn{Remote: c.Remote, Node: c.Node, Outcome: c.Outcome,
				Since: c.Since, BytesIn: c.In, BytesOut: c.Out, Path: c.Path})
		}
		st.Gates = append(st.Gates, gs)
	}
	return st
}

func (b *backend) Ban(gate string, addr netip.Addr, d time.Duration) ([]admin.BanResult, error) {
	return b.each(gate, func(g *proxy.Gate) admin.BanResult {
		ban, err := g.Ban(addr, d)
		switch {
		case errors.Is(err, policy.ErrNeverBan):
			return admin.BanResult{Result: admin.ResultNever}
		case err != nil:
			return admin.BanResult{Result: admin.ResultRefused, Message: err.Error()}
		}
		ab := admin.BanOf(ban)
		return admin.BanResult{Result: admin.ResultBanned, Ban: &ab}
	}), nil
}

func (b *backend) Unban(gate string, addr netip.Addr) ([]admin.BanResult, error) {
	return b.each(gate, func(g *proxy.Gate) admin.BanResult {
		ban, ok := g.Unban(addr)
		if !ok {
			return admin.BanResult{Result: admin.ResultNotBanned}
		}
		ab := admin.BanOf(ban)
		return admin.BanResult{Result: admin.ResultUnbanned, Ban: &ab}
	}), nil
}

// each applies f to the gate named gate, or to every gate for "".
func (b *backend) each(gate string, f func(*proxy.Gate) admin.BanResult) []admin.BanResult {
	var rs []admin.BanResult
	for _, g := range b.gates {
		if gate == "" || g.Name() == gate {
			r := f(g)
			r.Gate = g.Name()
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		rs = append(rs, admin.BanResult{Gate: gate, Result: admin.ResultUnknownGate})
	}
	return rs
}

// listenAddr is a gate's listen address as configured (Go prints a
// wildcard IPv4 listener as "[::]"), with the port it got.
func listenAddr(configured string, ln net.Listener) string {
	host, _, _ := net.SplitHostPort(configured)
	return net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
}

// keepBans restores the bans saved in path into the gates and returns the
// Writer that saves them there after each change. A file that cannot be
// loaded is reported and left as it is: distgate then keeps bans in memory
// only (nil), rather than write over a file it could not read, which may
// be another file named by mistake.
func keepBans(path string, gates []*proxy.Gate, log zerolog.Logger) *state.Writer {
	s, err := state.Load(path, len(gates), time.Now())
	switch {
	case errors.Is(err, fs.ErrNotExist): // a first start
	case err != nil:
		log.Warn().Err(err).Msg("state file ignored: no bans restored, and none saved until it is fixed or removed")
		return nil
	}
	for _, g := range gates {
		if n := g.RestoreBans(s[g.Name()]); n > 0 {
			log.Info().Str("gate", g.Name()).Int("bans", n).Str("state_file", path).Msg("bans restored")
		}
	}
	return state.NewWriter(path, func() state.State {
		s := make(state.State, len(gates))
		for _, g := range gates {
			if bs := g.Bans(); len(bs) > 0 {
				s[g.Name()] = bs
			}
		}
		return s
	}, func(err error) { log.Warn().Err(err).Msg("state file not written; trying again") })
}
