package main

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
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
	port := strconv.Itoa(h.erlPort)
	nodes := []erlNode{
		{"direct", "app@127.0.0.7", "127.0.0.7"},
		{"distgate", "app@127.0.0.5", "127.0.0.6"},
		{"haproxy", "app@127.0.0.8", "127.0.0.9"},
		{"nginx", "app@127.0.0.10", "127.0.0.11"},
	}
	// Schedulers do not busy-wait, so idle nodes leave the two CPUs to the
	// node being measured.
	common := []string{"-setcookie", "distgatebench", "-start_epmd", "false", "-erl_epmd_port", port,
		"-noshell", "-noinput", "+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"}
	var started []*proc
	defer func() {
		for _, p := range started {
			p.stop()
		}
	}()
	for _, n := range nodes {
		args := append([]string{h.bins["erl"], "-name", n.name}, common...)
		args = append(args, "-kernel", "inet_dist_use_interface", "{"+strings.ReplaceAll(n.bind, ".", ",")+"}")
		p, err := startProc("erl-"+n.label, filepath.Join(h.dir, "erl-"+n.label+".log"), nil, args...)
		if err != nil {
			return err
		}
		started = append(started, p)
	}
	for i, n := range nodes {
		if err := waitPort(started[i], n.bind+":"+port, 30*time.Second); err != nil {
			return err
		}
	}
	src, err := writeFile(h.dir, "distbench.erl", distbenchErl)
	if err != nil {
		return err
	}
	if out, err := output(h.bins["erlc"], "-o", h.dir, src); err != nil {
		return fmt.Errorf("erlc: %v\n%s", err, out)
	}

	args := append([]string{h.bins["erl"], "-name", "bench@127.0.0.1"}, common...)
	args = append(args, "-dist_listen", "false", "-hidden", "-pa", h.dir, "-run", "distbench", "main",
		itoa(h.o.erlRounds), itoa(h.o.erlCalls), itoa(h.o.erlMiB))
	for _, n := range nodes {
		args = append(args, n.label+"="+n.name)
	}
	logPath := filepath.Join(h.dir, "erl-client.log")
	logf("erlang: %d rounds of %d erpc:call's and one %d MiB binary per path", h.o.erlRounds, h.o.erlCalls, h.o.erlMiB)
	client, err := startProc("erl-client", logPath, nil, args...)
	if err != nil {
		return err
	}
	select {
	case <-client.done:
	case <-time.After(10 * time.Minute):
		client.stop()
		return fmt.Errorf("client did not finish in 10 minutes:\n%s", client.tail(20))
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		return err
	}
	if code := client.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("client exited with %d:\n%s", code, client.tail(20))
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
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
		return fmt.Errorf("expected %d results, got %d:\n%s", h.o.erlRounds*len(nodes), n, client.tail(20))
	}
	return nil
}
