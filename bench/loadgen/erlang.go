package main

import (
	_ "embed"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

//go:embed distbench.erl
var distbenchErl string

// erlNode is one OTP node the Erlang test talks to. Epmdless clients dial
// the host part of the name at -erl_epmd_port, and check that whoever
// answers has exactly that name, so each path gets its own name: "direct"
// binds its name's address, the others bind the address behind their proxy.
type erlNode struct {
	label, name, bind string
}

func (h *harness) testErlang() error {
	nodes := []erlNode{
		{"direct", "app@127.0.0.7", "127.0.0.7"},
		{"distgate", "app@127.0.0.5", "127.0.0.6"},
		{"haproxy", "app@127.0.0.8", "127.0.0.9"},
		{"nginx", "app@127.0.0.10", "127.0.0.11"},
	}
	// Schedulers do not busy-wait (testenv.ErlFlags), so idle nodes leave
	// the two CPUs to the node being measured.
	var started []*testenv.Node
	defer func() {
		for _, n := range started {
			n.Stop(syscall.SIGTERM, 5*time.Second)
		}
	}()
	for _, n := range nodes {
		e := testenv.Erl{Name: n.name, Cookie: "distgatebench", Port: h.erlPort, Addr: n.bind,
			Log: filepath.Join(h.dir, "erl-"+n.label+".log")}
		node, err := e.StartNode(h.dir, false)
		if err != nil {
			return err
		}
		started = append(started, node)
	}
	src, err := writeFile(h.dir, "distbench.erl", distbenchErl)
	if err != nil {
		return err
	}
	if out, err := output(h.bins["erlc"], "-o", h.dir, src); err != nil {
		return fmt.Errorf("erlc: %v\n%s", err, out)
	}

	args := []string{"-noinput", "-pa", h.dir, "-run", "distbench", "main",
		itoa(h.o.erlRounds), itoa(h.o.erlCalls), itoa(h.o.erlMiB)}
	for _, n := range nodes {
		args = append(args, n.label+"="+n.name)
	}
	client, err := testenv.Erl{Name: "bench@127.0.0.1", Cookie: "distgatebench", Port: h.erlPort, Hidden: true,
		Log: filepath.Join(h.dir, "erl-client.log")}.Cmd(h.dir, args...)
	if err != nil {
		return err
	}
	logf("erlang: %d rounds of %d erpc:call's and one %d MiB binary per path", h.o.erlRounds, h.o.erlCalls, h.o.erlMiB)
	out, err := client.Run(10 * time.Minute)
	tail := func() string {
		l := strings.Split(strings.TrimSpace(out), "\n")
		return strings.Join(l[max(0, len(l)-20):], "\n")
	}
	if err != nil {
		return fmt.Errorf("client: %w:\n%s", err, tail())
	}
	n := 0
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) != 8 || f[0] != "RESULT" {
			continue
		}
		var v [6]float64
		for i := range v {
			if v[i], err = strconv.ParseFloat(f[i+2], 64); err != nil {
				return fmt.Errorf("bad line %q", l)
			}
		}
		label, round := f[1], int(v[0])
		h.res.put("erl_total", label, round, v[1]/1e3) // ms
		h.res.put("erl_p50", label, round, v[2]/1e3)   // µs
		h.res.put("erl_p99", label, round, v[3]/1e3)   // µs
		h.res.put("erl_p999", label, round, v[4]/1e3)  // µs
		h.res.put("erl_bulk", label, round, v[5]/1e3)  // ms
		logf("erlang round %s %s: %d calls in %.0f ms, p50 %.1f µs, p99 %.1f µs; %d MiB in %.1f ms",
			f[2], label, h.o.erlCalls, v[1]/1e3, v[2]/1e3, v[3]/1e3, h.o.erlMiB, v[5]/1e3)
		n++
	}
	if n != h.o.erlRounds*len(nodes) {
		return fmt.Errorf("expected %d results, got %d:\n%s", h.o.erlRounds*len(nodes), n, tail())
	}
	return nil
}
