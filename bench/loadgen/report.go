package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

var columns = []struct{ name, head string }{
	{"direct", "direct"}, {"distgate", "distgate"}, {"haproxy", "HAProxy"}, {"nginx", "nginx"},
}

type rowKind int

const (
	plain rowKind = iota // the median
	ratio                // the median and its ratio to direct
	added                // the median and what it adds over direct
)

type row struct {
	label, metric, format string
	kind                  rowKind
	count                 string // metric holding how many connections were held
	want                  int    // how many were asked for
}

func (h *harness) report(machine []string, took time.Duration, quick bool) string {
	o := h.o
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	cmd := "bench/run.sh"
	if quick {
		cmd = "QUICK=1 bench/run.sh"
	}
	p("## Results (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	p("Command: `%s` (took %s). Machine:\n\n", cmd, took.Round(time.Second))
	for _, m := range machine {
		p("- %s\n", m)
	}
	p("\nMedians of %d interleaved rounds (%d for Erlang) — direct, distgate, HAProxy, nginx, then again; "+
		"ratios (×) are against direct in the same run, and \"+\" is what a proxy adds to direct's "+
		"figure (the median of per-round differences). Memory is one pass on freshly started proxies.\n\n", o.rounds, o.erlRounds)

	rows := []row{
		{fmt.Sprintf("1. bulk client→upstream, MB/s (%d MiB, one connection)", o.bulkSize>>20), "bulk_up", "%.0f", ratio, "", 0},
		{"1. bulk upstream→client, MB/s", "bulk_down", "%.0f", ratio, "", 0},
		{"1. proxy CPU s/GiB, client→upstream", "cpu_up", "%.3f", plain, "", 0},
		{"1. proxy CPU s/GiB, upstream→client", "cpu_down", "%.3f", plain, "", 0},
		{fmt.Sprintf("2. ping-pong 64 B p50, µs (%d round trips)", o.pingN), "pp_p50", "%.1f", added, "", 0},
		{"2. ping-pong p99, µs", "pp_p99", "%.1f", added, "", 0},
		{"2. ping-pong p99.9, µs", "pp_p999", "%.1f", added, "", 0},
		{fmt.Sprintf("3. connection setups/s (%d clients, %v)", o.clients, o.setupDur), "setup_rate", "%.0f", ratio, "", 0},
		{"3. setup p50, ms", "setup_p50", "%.2f", added, "", 0},
		{"3. setup p99, ms", "setup_p99", "%.2f", added, "", 0},
		{"3. proxy CPU per connection, µs", "setup_cpu", "%.1f", plain, "", 0},
		{fmt.Sprintf("4. flood from 127.0.0.2: rejects/s (%d clients, %v)", o.floodClients, o.floodDur), "flood_rate", "%.0f", plain, "", 0},
		{"4. proxy CPU per reject, µs", "flood_cpu", "%.1f", plain, "", 0},
		{"4. allowed client's ping-pong p99 during the flood, µs", "flood_p99", "%.1f", plain, "", 0},
	}
	for _, n := range o.memSizes {
		rows = append(rows,
			row{fmt.Sprintf("5. RSS per idle admitted connection, KiB (%d)", n), fmt.Sprintf("mem_%d", n), "%.1f", plain, fmt.Sprintf("memn_%d", n), n},
			row{fmt.Sprintf("5. proxy file descriptors per idle connection (%d)", n), fmt.Sprintf("fds_%d", n), "%.1f", plain, fmt.Sprintf("memn_%d", n), n})
	}
	rows = append(rows,
		row{fmt.Sprintf("5. RSS with %d stalled half-sent handshakes, MiB", o.stalled), "stalled_mib", "%.1f", plain, "stalledn", o.stalled},
		row{"5. RSS per stalled handshake, KiB", "stalled_kib", "%.1f", plain, "stalledn", o.stalled},
		row{fmt.Sprintf("6. Erlang erpc:call p50, µs (%d calls)", o.erlCalls), "erl_p50", "%.1f", added, "", 0},
		row{"6. Erlang erpc:call p99, µs", "erl_p99", "%.1f", added, "", 0},
		row{"6. Erlang erpc:call p99.9, µs", "erl_p999", "%.1f", added, "", 0},
		row{fmt.Sprintf("6. Erlang %d calls, total ms", o.erlCalls), "erl_total", "%.0f", ratio, "", 0},
		row{fmt.Sprintf("6. Erlang %d MiB binary in one call, ms", o.erlMiB), "erl_bulk", "%.1f", ratio, "", 0},
	)

	p("| test |")
	for _, c := range columns {
		p(" %s |", c.head)
	}
	p("\n|---|")
	for range columns {
		p("---:|")
	}
	p("\n")
	for _, r := range rows {
		if _, ok := h.res.m[r.metric]; !ok {
			continue
		}
		p("| %s |", r.label)
		for _, c := range columns {
			p(" %s |", h.cell(r, c.name))
		}
		p("\n")
	}
	if _, ok := h.res.m["x_flood_rate"]; ok {
		p("\nFlood against distgate variants, %d more interleaved rounds (the table's distgate logs at `warn`, "+
			"so denials are never formatted, and denies with a FIN):\n\n"+
			"| distgate | rejects/s | proxy CPU per reject, µs | allowed client's p99, µs | log lines written |\n"+
			"|---|---:|---:|---:|---:|\n", o.extraRounds)
		for _, v := range []struct{ label, name string }{
			{"distgate", "as in the table"},
			{"distgate (log info)", "`log.level = \"info\"`"},
			{"distgate (on_deny reset)", "`on_deny = \"reset\"`"},
		} {
			rate, _ := h.res.median("x_flood_rate", v.label)
			cpu, _ := h.res.median("x_flood_cpu", v.label)
			p99, _ := h.res.median("x_flood_p99", v.label)
			lines := "—"
			if n, ok := h.res.median("x_log_lines", v.label); ok {
				d, _ := h.res.median("x_log_denied", v.label)
				lines = fmt.Sprintf("%.0f (%.0f `denied`)", n, d)
			}
			p("| %s | %.0f | %.1f | %.1f | %s |\n", v.name, rate, cpu, p99, lines)
		}
		p("\nAt `info`, sampling writes at most 5 denial lines per source per 10 s and a summary line " +
			"for the rest.\n")
	}

	p("\n### Targets (issue 4)\n\n| target | figures | verdict |\n|---|---|---|\n")
	for _, t := range h.targetChecks() {
		p("| %s | %s | %s |\n", t[0], t[1], t[2])
	}
	if len(h.res.notes) > 0 {
		p("\n### Notes from the run\n\n")
		for _, n := range h.res.notes {
			p("- %s\n", n)
		}
	}
	return b.String()
}

func (h *harness) cell(r row, target string) string {
	v, ok := h.res.median(r.metric, target)
	if !ok {
		return "—"
	}
	s := fmt.Sprintf(r.format, v)
	if r.count != "" {
		if n, ok := h.res.median(r.count, target); ok && int(n) != r.want {
			s += fmt.Sprintf(" (n=%d)", int(n))
		}
	}
	if target == "direct" {
		return s
	}
	switch r.kind {
	case ratio:
		if d, ok := h.res.median(r.metric, "direct"); ok && d != 0 {
			s += fmt.Sprintf(" (%.2f×)", v/d)
		}
	case added:
		if a, ok := h.res.added(r.metric, target, "direct"); ok {
			s += " (" + signed(r.format, a) + ")"
		}
	}
	return s
}

func signed(format string, v float64) string {
	s := fmt.Sprintf(format, v)
	if v >= 0 {
		s = "+" + s
	}
	return s
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// targetChecks compares medians from this run with the targets of issue 4.
func (h *harness) targetChecks() [][3]string {
	var out [][3]string
	med := func(m, t string) float64 { v, _ := h.res.median(m, t); return v }
	add := func(m, t string) float64 { v, _ := h.res.added(m, t, "direct"); return v }
	has := func(m string) bool { _, ok := h.res.m[m]; return ok }
	if has("bulk_up") {
		for _, d := range []struct{ m, name string }{{"bulk_up", "client→upstream"}, {"bulk_down", "upstream→client"}} {
			dg, hp, di := med(d.m, "distgate"), med(d.m, "haproxy"), med(d.m, "direct")
			out = append(out, [3]string{"bulk " + d.name + " ≥ 1.5× HAProxy and ≥ 0.5× direct",
				fmt.Sprintf("%.0f MB/s = %.2f× HAProxy (%.0f), %.2f× direct (%.0f)", dg, dg/hp, hp, dg/di, di),
				verdict(dg >= 1.5*hp && dg >= 0.5*di)})
		}
	}
	if has("pp_p50") {
		for _, m := range []struct{ m, name string }{{"pp_p50", "p50"}, {"pp_p99", "p99"}} {
			dg, hp, ng := add(m.m, "distgate"), add(m.m, "haproxy"), add(m.m, "nginx")
			out = append(out, [3]string{"added ping-pong " + m.name + " ≤ the better of HAProxy and nginx",
				fmt.Sprintf("distgate %+.1f µs, HAProxy %+.1f µs, nginx %+.1f µs", dg, hp, ng),
				verdict(dg <= math.Min(hp, ng))})
		}
	}
	if has("setup_rate") {
		dg, hp := med("setup_rate", "distgate"), med("setup_rate", "haproxy")
		out = append(out, [3]string{"connection setup rate ≥ HAProxy's",
			fmt.Sprintf("%.0f/s vs %.0f/s (%.2f×)", dg, hp, dg/hp), verdict(dg >= hp)})
	}
	if has("flood_rate") {
		dg, hp := med("flood_rate", "distgate"), med("flood_rate", "haproxy")
		out = append(out, [3]string{"rejects per second ≥ HAProxy's",
			fmt.Sprintf("%.0f/s vs %.0f/s (%.2f×)", dg, hp, dg/hp), verdict(dg >= hp)})
		// HAProxy's "tcp-request connection reject" answers with RST; the
		// like-for-like distgate is on_deny = "reset" (its own rounds).
		if rr, ok := h.res.median("x_flood_rate", "distgate (on_deny reset)"); ok {
			out = append(out, [3]string{"rejects per second ≥ HAProxy's, like for like (both RST; distgate `on_deny = \"reset\"`, from the variant rounds)",
				fmt.Sprintf("%.0f/s vs %.0f/s (%.2f×)", rr, hp, rr/hp), verdict(rr >= hp)})
		}
		dp, hq, nq := med("flood_p99", "distgate"), med("flood_p99", "haproxy"), med("flood_p99", "nginx")
		out = append(out, [3]string{"allowed client's p99 during the flood ≤ the better of HAProxy and nginx",
			fmt.Sprintf("distgate %.1f µs, HAProxy %.1f µs, nginx %.1f µs", dp, hq, nq), verdict(dp <= math.Min(hq, nq))})
	}
	if len(h.o.memSizes) > 0 && has(fmt.Sprintf("mem_%d", h.o.memSizes[len(h.o.memSizes)-1])) {
		n := h.o.memSizes[len(h.o.memSizes)-1]
		m := fmt.Sprintf("mem_%d", n)
		dg, hp := med(m, "distgate"), med(m, "haproxy")
		dn, hn := med("memn_"+itoa(n), "distgate"), med("memn_"+itoa(n), "haproxy")
		out = append(out, [3]string{"memory per idle admitted connection ≤ 3× HAProxy's",
			fmt.Sprintf("%.1f KiB (%.0f conns) vs %.1f KiB (%.0f conns): %.2f×", dg, dn, hp, hn, dg/hp), verdict(dg <= 3*hp)})
	}
	if has("stalled_mib") {
		dg := med("stalled_mib", "distgate")
		out = append(out, [3]string{fmt.Sprintf("memory bounded under %d stalled handshakes", h.o.stalled),
			fmt.Sprintf("distgate RSS %.1f MiB with %.0f held (%.1f KiB each)", dg, med("stalledn", "distgate"), med("stalled_kib", "distgate")),
			"met (stated)"})
	}
	if has("erl_p50") {
		for _, m := range []struct{ m, name string }{{"erl_p50", "p50"}, {"erl_p99", "p99"}} {
			dg, hp := add(m.m, "distgate"), add(m.m, "haproxy")
			out = append(out, [3]string{"Erlang added rpc " + m.name + " ≤ 0.75× HAProxy's added",
				fmt.Sprintf("distgate %+.1f µs, HAProxy %+.1f µs", dg, hp), verdict(dg <= 0.75*hp)})
		}
		dg, di := med("erl_bulk", "distgate"), med("erl_bulk", "direct")
		out = append(out, [3]string{fmt.Sprintf("Erlang %d MiB transfer ≤ 1.05× direct", h.o.erlMiB),
			fmt.Sprintf("%.1f ms vs %.1f ms (%.2f×)", dg, di, dg/di), verdict(dg <= 1.05*di)})
	}
	return out
}
