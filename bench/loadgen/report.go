package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

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

type column struct{ name, head string }

func (h *harness) report(machine []string, took time.Duration, quick bool) string {
	o := h.o
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	cmd := "bench/run.sh"
	if quick {
		cmd = "QUICK=1 bench/run.sh"
	}
	var cols []column
	var heads []string
	for _, t := range h.targets {
		cols = append(cols, column{t.name, t.head})
		heads = append(heads, t.head)
	}
	p("## Results (%s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	p("Command: `%s` (took %s). Machine:\n\n", cmd, took.Round(time.Second))
	for _, m := range machine {
		p("- %s\n", m)
	}
	p("\nMedians of %d interleaved rounds (%d for Erlang) — %s, then again; "+
		"ratios (×) are against direct in the same run, and \"+\" is what a proxy adds to direct's "+
		"figure (the median of per-round differences). Memory is one pass on freshly started proxies.\n\n",
		o.rounds, o.erlRounds, strings.Join(heads, ", "))

	rows := []row{
		{label: fmt.Sprintf("1. bulk client→upstream, MB/s (%d MiB, one connection)", o.bulkSize>>20), metric: "bulk_up", format: "%.0f", kind: ratio},
		{label: "1. bulk upstream→client, MB/s", metric: "bulk_down", format: "%.0f", kind: ratio},
		{label: "1. proxy CPU s/GiB, client→upstream", metric: "cpu_up", format: "%.3f"},
		{label: "1. proxy CPU s/GiB, upstream→client", metric: "cpu_down", format: "%.3f"},
		{label: fmt.Sprintf("2. ping-pong 64 B p50, µs (%d round trips)", o.pingN), metric: "pp_p50", format: "%.1f", kind: added},
		{label: "2. ping-pong 64 B p99, µs", metric: "pp_p99", format: "%.1f", kind: added},
		{label: "2. ping-pong 64 B p99.9, µs", metric: "pp_p999", format: "%.1f", kind: added},
		{label: fmt.Sprintf("2. ping-pong 1 KiB p50, µs (%d round trips)", o.pingKN), metric: "pk_p50", format: "%.1f", kind: added},
		{label: "2. ping-pong 1 KiB p99, µs", metric: "pk_p99", format: "%.1f", kind: added},
		{label: "2. ping-pong 1 KiB p99.9, µs", metric: "pk_p999", format: "%.1f", kind: added},
		{label: fmt.Sprintf("3. connection setups/s (%d clients, %v)", o.clients, o.setupDur), metric: "setup_rate", format: "%.0f", kind: ratio},
		{label: "3. setup p50, ms", metric: "setup_p50", format: "%.2f", kind: added},
		{label: "3. setup p99, ms", metric: "setup_p99", format: "%.2f", kind: added},
		{label: "3. proxy CPU per connection, µs", metric: "setup_cpu", format: "%.1f"},
		{label: fmt.Sprintf("4. flood from 127.0.0.2: rejects/s (%d clients, %v)", o.floodClients, o.floodDur), metric: "flood_rate", format: "%.0f"},
		{label: "4. proxy CPU per reject, µs", metric: "flood_cpu", format: "%.1f"},
		{label: "4. allowed client's ping-pong p99 during the flood, µs", metric: "flood_p99", format: "%.1f"},
		{label: "5. open-files limit (soft) of the proxy's processes", metric: "nofile", format: "%.0f"},
	}
	for _, n := range o.memSizes {
		rows = append(rows,
			row{label: fmt.Sprintf("5. idle admitted connections held (of %d)", n), metric: fmt.Sprintf("memn_%d", n), format: "%.0f"},
			row{label: fmt.Sprintf("5. RSS per idle admitted connection, KiB (%d)", n), metric: fmt.Sprintf("mem_%d", n), format: "%.1f", count: fmt.Sprintf("memn_%d", n), want: n},
			row{label: fmt.Sprintf("5. proxy file descriptors per idle connection (%d)", n), metric: fmt.Sprintf("fds_%d", n), format: "%.2f", count: fmt.Sprintf("memn_%d", n), want: n})
	}
	rows = append(rows,
		row{label: fmt.Sprintf("5. RSS with %d stalled half-sent handshakes, MiB", o.stalled), metric: "stalled_mib", format: "%.1f", count: "stalledn", want: o.stalled},
		row{label: "5. RSS per stalled handshake, KiB", metric: "stalled_kib", format: "%.1f", count: "stalledn", want: o.stalled},
		row{label: fmt.Sprintf("6. Erlang erpc:call p50, µs (%d calls)", o.erlCalls), metric: "erl_p50", format: "%.1f", kind: added},
		row{label: "6. Erlang erpc:call p99, µs", metric: "erl_p99", format: "%.1f", kind: added},
		row{label: "6. Erlang erpc:call p99.9, µs", metric: "erl_p999", format: "%.1f", kind: added},
		row{label: fmt.Sprintf("6. Erlang %d calls, total ms", o.erlCalls), metric: "erl_total", format: "%.0f", kind: ratio},
		row{label: fmt.Sprintf("6. Erlang %d MiB binary in one call, ms", o.erlMiB), metric: "erl_bulk", format: "%.1f", kind: ratio},
		row{label: fmt.Sprintf("7. Erlang connect → erpc:call → disconnect p50, ms (≤ %d per round, ≤ %v)", o.esetupMax, o.esetupDur), metric: "esetup_p50", format: "%.2f", kind: added},
		row{label: "7. Erlang connect → erpc:call → disconnect p99, ms", metric: "esetup_p99", format: "%.2f", kind: added},
		row{label: "7. Erlang setups/s, one client", metric: "esetup_rate", format: "%.0f", kind: ratio},
	)
	h.table(&b, cols, rows)

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

	if _, ok := h.res.m["tls_p50"]; ok {
		p("\n### 8. TLS distribution\n\nMedians of %d interleaved rounds; \"+\" and × are against plain TCP with no proxy "+
			"in the same round. The TLS client and node use P-256 certificates from a CA made at the start of the run; "+
			"the node (b) and distgate (a) require and verify the client's certificate.\n\n", o.tlsRounds)
		var tc []column
		for _, tp := range h.tlsPaths {
			// A path dropped in its first round has no figures; Not
			// measured says why.
			if _, ok := h.res.median("tls_p50", tp.label); ok {
				tc = append(tc, column{tp.label, tp.head})
			}
		}
		h.table(&b, tc, []row{
			{label: fmt.Sprintf("Erlang erpc:call p50, µs (%d calls)", o.tlsCalls), metric: "tls_p50", format: "%.1f", kind: added},
			{label: "Erlang erpc:call p99, µs", metric: "tls_p99", format: "%.1f", kind: added},
			{label: "Erlang erpc:call p99.9, µs", metric: "tls_p999", format: "%.1f", kind: added},
			{label: fmt.Sprintf("Erlang %d calls, total ms", o.tlsCalls), metric: "tls_total", format: "%.0f", kind: ratio},
			{label: fmt.Sprintf("Erlang %d MiB binary in one call, ms", o.tlsMiB), metric: "tls_bulk", format: "%.1f", kind: ratio},
		})
	}

	if len(h.skipped) > 0 {
		p("\n### Not measured\n\n")
		for _, name := range sortedKeys(h.skipped) {
			p("- %s: %s\n", name, h.skipped[name])
		}
	}

	p("\n### Targets\n\n| target | figures | verdict |\n|---|---|---|\n")
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

// table writes one markdown table: a row per metric measured, a column
// per target.
func (h *harness) table(b *strings.Builder, cols []column, rows []row) {
	fmt.Fprint(b, "| test |")
	for _, c := range cols {
		fmt.Fprintf(b, " %s |", c.head)
	}
	fmt.Fprint(b, "\n|---|")
	for range cols {
		fmt.Fprint(b, "---:|")
	}
	fmt.Fprint(b, "\n")
	for _, r := range rows {
		if _, ok := h.res.m[r.metric]; !ok {
			continue
		}
		fmt.Fprintf(b, "| %s |", r.label)
		for _, c := range cols {
			fmt.Fprintf(b, " %s |", h.cell(r, c.name))
		}
		fmt.Fprint(b, "\n")
	}
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

// checks builds the target rows. Each check names the targets and metrics
// it needs; when one of them was not measured, the row says so (and why)
// instead of judging.
type checks struct {
	h   *harness
	out [][3]string
}

func (c *checks) med(m, t string) float64 { v, _ := c.h.res.median(m, t); return v }
func (c *checks) add(m, t string) float64 { v, _ := c.h.res.added(m, t, "direct"); return v }

// missing says why metric m has no figure for one of targets, or "".
func (c *checks) missing(m string, targets ...string) string {
	for _, t := range targets {
		if _, ok := c.h.res.median(m, t); ok {
			continue
		}
		if _, ok := c.h.skipped[t]; ok {
			return t + " did not run (see Not measured)"
		}
		if _, ok := c.h.res.m[m]; !ok {
			return "test not run"
		}
		return t + " has no figure"
	}
	return ""
}

// check adds a row: when every metric has a figure for every target,
// figures() and ok() judge it; else the row says what is missing.
func (c *checks) check(label string, metrics []string, targets []string, figures func() string, ok func() bool) {
	for _, m := range metrics {
		if why := c.missing(m, targets...); why != "" {
			c.out = append(c.out, [3]string{label, why, "not measured"})
			return
		}
	}
	c.out = append(c.out, [3]string{label, figures(), verdict(ok())})
}

// targetChecks compares medians from this run with the targets: the
// earlier ones for distgate's default path, then those of the forwarding
// paths, the handshake watch and TLS.
func (h *harness) targetChecks() [][3]string {
	c := &checks{h: h}
	const dg, hp, ng = "distgate", "haproxy", "nginx"
	dirs := []struct{ m, name string }{{"bulk_up", "client→upstream"}, {"bulk_down", "upstream→client"}}
	pcts := []struct{ m, name string }{{"p50", "p50"}, {"p99", "p99"}}

	// Targets kept from the first benchmark, for distgate as it runs by default.
	for _, d := range dirs {
		c.check("bulk "+d.name+" ≥ 1.5× HAProxy and ≥ 0.5× direct", []string{d.m}, []string{dg, hp, "direct"},
			func() string {
				v, h, di := c.med(d.m, dg), c.med(d.m, hp), c.med(d.m, "direct")
				return fmt.Sprintf("%.0f MB/s = %.2f× HAProxy (%.0f), %.2f× direct (%.0f)", v, v/h, h, v/di, di)
			},
			func() bool { return c.med(d.m, dg) >= 1.5*c.med(d.m, hp) && c.med(d.m, dg) >= 0.5*c.med(d.m, "direct") })
	}
	for _, q := range pcts {
		m := "pp_" + q.m
		c.check("`user`: added 64 B ping-pong "+q.name+" ≤ the better of HAProxy and nginx", []string{m}, []string{dg, hp, ng},
			func() string {
				return fmt.Sprintf("distgate %+.1f µs, HAProxy %+.1f µs, nginx %+.1f µs", c.add(m, dg), c.add(m, hp), c.add(m, ng))
			},
			func() bool { return c.add(m, dg) <= math.Min(c.add(m, hp), c.add(m, ng)) })
	}
	c.check("`user`: connection setup rate ≥ HAProxy's", []string{"setup_rate"}, []string{dg, hp},
		func() string {
			v, h := c.med("setup_rate", dg), c.med("setup_rate", hp)
			return fmt.Sprintf("%.0f/s vs %.0f/s (%.2f×)", v, h, v/h)
		},
		func() bool { return c.med("setup_rate", dg) >= c.med("setup_rate", hp) })
	c.check("rejects per second ≥ HAProxy's", []string{"flood_rate"}, []string{dg, hp},
		func() string {
			v, h := c.med("flood_rate", dg), c.med("flood_rate", hp)
			return fmt.Sprintf("%.0f/s vs %.0f/s (%.2f×)", v, h, v/h)
		},
		func() bool { return c.med("flood_rate", dg) >= c.med("flood_rate", hp) })
	// HAProxy's "tcp-request connection reject" answers with RST; the
	// like-for-like distgate is on_deny = "reset" (its own rounds).
	if rr, ok := h.res.median("x_flood_rate", "distgate (on_deny reset)"); ok {
		c.check("rejects per second ≥ HAProxy's, like for like (both RST; distgate `on_deny = \"reset\"`, from the variant rounds)",
			[]string{"flood_rate"}, []string{hp},
			func() string {
				h := c.med("flood_rate", hp)
				return fmt.Sprintf("%.0f/s vs %.0f/s (%.2f×)", rr, h, rr/h)
			},
			func() bool { return rr >= c.med("flood_rate", hp) })
	}
	c.check("allowed client's p99 during the flood ≤ the better of HAProxy and nginx", []string{"flood_p99"}, []string{dg, hp, ng},
		func() string {
			return fmt.Sprintf("distgate %.1f µs, HAProxy %.1f µs, nginx %.1f µs", c.med("flood_p99", dg), c.med("flood_p99", hp), c.med("flood_p99", ng))
		},
		func() bool {
			return c.med("flood_p99", dg) <= math.Min(c.med("flood_p99", hp), c.med("flood_p99", ng))
		})
	n := 0
	if len(h.o.memSizes) > 0 {
		n = h.o.memSizes[len(h.o.memSizes)-1]
	}
	mem, memn, fds := fmt.Sprintf("mem_%d", n), fmt.Sprintf("memn_%d", n), fmt.Sprintf("fds_%d", n)
	c.check("memory per idle admitted connection ≤ 3× HAProxy's", []string{mem}, []string{dg, hp},
		func() string {
			v, h := c.med(mem, dg), c.med(mem, hp)
			return fmt.Sprintf("%.1f KiB (%.0f conns) vs %.1f KiB (%.0f conns): %.2f×", v, c.med(memn, dg), h, c.med(memn, hp), v/h)
		},
		func() bool { return c.med(mem, dg) <= 3*c.med(mem, hp) })
	c.check(fmt.Sprintf("memory bounded under %d stalled handshakes", h.o.stalled), []string{"stalled_mib"}, []string{dg},
		func() string {
			return fmt.Sprintf("distgate RSS %.1f MiB with %.0f held (%.1f KiB each)", c.med("stalled_mib", dg), c.med("stalledn", dg), c.med("stalled_kib", dg))
		},
		func() bool { return true })
	for _, q := range pcts {
		m := "erl_" + q.m
		c.check("Erlang added rpc "+q.name+" ≤ 0.75× HAProxy's added", []string{m}, []string{dg, hp},
			func() string { return fmt.Sprintf("distgate %+.1f µs, HAProxy %+.1f µs", c.add(m, dg), c.add(m, hp)) },
			func() bool { return c.add(m, dg) <= 0.75*c.add(m, hp) })
	}
	c.check(fmt.Sprintf("Erlang %d MiB transfer ≤ 1.05× direct", h.o.erlMiB), []string{"erl_bulk"}, []string{dg, "direct"},
		func() string {
			v, di := c.med("erl_bulk", dg), c.med("erl_bulk", "direct")
			return fmt.Sprintf("%.1f ms vs %.1f ms (%.2f×)", v, di, v/di)
		},
		func() bool { return c.med("erl_bulk", dg) <= 1.05*c.med("erl_bulk", "direct") })

	// The handshake watch: a real Erlang connection's setup, every variant.
	for _, v := range allVariants {
		if v.erlListen == "" {
			continue
		}
		name := v.name
		c.check(fmt.Sprintf("`%s`: Erlang setup (connect → erpc → disconnect) added p50 ≤ 1.2× HAProxy's added", v.key),
			[]string{"esetup_p50", "esetup_p99"}, []string{name, hp, ng},
			func() string {
				return fmt.Sprintf("p50: %s %+.2f ms, HAProxy %+.2f ms, nginx %+.2f ms; p99: %+.2f / %+.2f / %+.2f ms",
					name, c.add("esetup_p50", name), c.add("esetup_p50", hp), c.add("esetup_p50", ng),
					c.add("esetup_p99", name), c.add("esetup_p99", hp), c.add("esetup_p99", ng))
			},
			func() bool { return c.add("esetup_p50", name) <= 1.2*c.add("esetup_p50", hp) })
	}

	// forward = "user".
	for _, q := range pcts {
		m := "erl_" + q.m
		c.check("`user`: Erlang erpc added "+q.name+" ≤ nginx's", []string{m}, []string{dg, ng},
			func() string { return fmt.Sprintf("distgate %+.1f µs, nginx %+.1f µs", c.add(m, dg), c.add(m, ng)) },
			func() bool { return c.add(m, dg) <= c.add(m, ng) })
	}
	c.check(fmt.Sprintf("`user`: RSS per idle connection ≤ HAProxy's, with 2 descriptors (%d)", n), []string{mem, fds}, []string{dg, hp},
		func() string {
			return fmt.Sprintf("distgate %.1f KiB and %.2f fds (%.0f held), HAProxy %.1f KiB and %.2f fds (%.0f held)",
				c.med(mem, dg), c.med(fds, dg), c.med(memn, dg), c.med(mem, hp), c.med(fds, hp), c.med(memn, hp))
		},
		func() bool { return c.med(mem, dg) <= c.med(mem, hp) && c.med(fds, dg) <= 2.05 })
	for _, d := range dirs {
		c.check("`user`: bulk "+d.name+" ≥ 1.2× HAProxy", []string{d.m}, []string{dg, hp},
			func() string {
				v, h := c.med(d.m, dg), c.med(d.m, hp)
				return fmt.Sprintf("%.0f MB/s vs %.0f MB/s (%.2f×)", v, h, v/h)
			},
			func() bool { return c.med(d.m, dg) >= 1.2*c.med(d.m, hp) })
	}
	c.check(fmt.Sprintf("`user`: Erlang %d MiB in one call ≤ the best of HAProxy's and nginx's time", h.o.erlMiB),
		[]string{"erl_bulk"}, []string{dg, hp, ng},
		func() string {
			return fmt.Sprintf("distgate %.1f ms, HAProxy %.1f ms, nginx %.1f ms", c.med("erl_bulk", dg), c.med("erl_bulk", hp), c.med("erl_bulk", ng))
		},
		func() bool { return c.med("erl_bulk", dg) <= math.Min(c.med("erl_bulk", hp), c.med("erl_bulk", ng)) })

	// forward = "kernel".
	const kd = "distgate-kernel"
	c.check("`kernel`: 1 KiB ping-pong added p50 ≤ 0.5× nginx's", []string{"pk_p50"}, []string{kd, ng},
		func() string {
			return fmt.Sprintf("kernel %+.1f µs, nginx %+.1f µs", c.add("pk_p50", kd), c.add("pk_p50", ng))
		},
		func() bool { return c.add("pk_p50", kd) <= 0.5*c.add("pk_p50", ng) })
	c.check("`kernel`: Erlang erpc added p50 ≤ nginx's", []string{"erl_p50"}, []string{kd, ng},
		func() string {
			return fmt.Sprintf("kernel %+.1f µs, nginx %+.1f µs", c.add("erl_p50", kd), c.add("erl_p50", ng))
		},
		func() bool { return c.add("erl_p50", kd) <= c.add("erl_p50", ng) })
	c.check("`kernel`: Erlang erpc added p99 ≤ 0.5× nginx's", []string{"erl_p99"}, []string{kd, ng},
		func() string {
			return fmt.Sprintf("kernel %+.1f µs, nginx %+.1f µs", c.add("erl_p99", kd), c.add("erl_p99", ng))
		},
		func() bool { return c.add("erl_p99", kd) <= 0.5*c.add("erl_p99", ng) })
	c.check(fmt.Sprintf("`kernel`: RSS per idle connection ≤ 2.5 KiB (%d)", n), []string{mem}, []string{kd},
		func() string {
			return fmt.Sprintf("%.1f KiB, %.2f fds (%.0f held)", c.med(mem, kd), c.med(fds, kd), c.med(memn, kd))
		},
		func() bool { return c.med(mem, kd) <= 2.5 })

	// TLS: (a) terminate at distgate against (b) TLS at the node.
	const ta, tb = "distgate-tls", "tls-node"
	for _, q := range pcts {
		m := "tls_" + q.m
		c.check("TLS: (a) distgate terminate adds less erpc "+q.name+" latency than (b) inet_tls at the node",
			[]string{m}, []string{ta, tb},
			func() string {
				return fmt.Sprintf("(a) %+.1f µs, (b) %+.1f µs over plain TCP", c.add(m, ta), c.add(m, tb))
			},
			func() bool { return c.add(m, ta) < c.add(m, tb) })
	}
	c.check(fmt.Sprintf("TLS: (a) moves %d MiB at least as fast as (b)", h.o.tlsMiB), []string{"tls_bulk"}, []string{ta, tb},
		func() string {
			return fmt.Sprintf("(a) %.1f ms, (b) %.1f ms", c.med("tls_bulk", ta), c.med("tls_bulk", tb))
		},
		func() bool { return c.med("tls_bulk", ta) <= c.med("tls_bulk", tb) })
	return c.out
}
