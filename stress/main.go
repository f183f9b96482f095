// Command stress runs distgate's long attack scenarios, the big versions of
// the tests in test/fault_test.go, and prints what it measured, run by run
// and as medians. The scripts stress/*.sh build it and call it:
//
//	stress flood     -distgate BIN [-conns 50000] [-runs 3]
//	stress slow      -distgate BIN [-conns 100000] [-for 10s] [-runs 3]
//	stress integrity -distgate BIN [-bytes 1073741824] [-flood 50000] [-runs 3]
//
// Every load is bounded in count and time, runs over loopback (127.0.0.x)
// only, and every process it starts is stopped by its PID when the run
// ends. See docs/SECURITY.md for what the figures mean.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/distgate/distgate/internal/attack"
	"github.com/distgate/distgate/internal/testenv"
)

const usage = `usage:
  stress flood     -distgate BIN [-conns N] [-workers N] [-sessions] [-runs N]
  stress slow      -distgate BIN [-conns N] [-for D] [-workers N] [-defaults] [-gap D] [-runs N]
  stress integrity -distgate BIN [-bytes N] [-flood N] [-silent N] [-runs N]
`

// metric is one measured figure of a run.
type metric struct {
	name, unit string
	v          float64
}

// result is a run's figures, in order, and whether its checks held.
type result struct {
	metrics []metric
	fails   []string
}

func (r *result) add(name, unit string, v float64) {
	r.metrics = append(r.metrics, metric{name, unit, v})
}

func (r *result) failf(format string, a ...any) { r.fails = append(r.fails, fmt.Sprintf(format, a...)) }

type env struct {
	distgate string
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	scenario := os.Args[1]
	fs := flag.NewFlagSet(scenario, flag.ExitOnError)
	bin := fs.String("distgate", "", "the distgate binary (required)")
	runs := fs.Int("runs", 3, "how many runs (the summary gives medians)")
	var run func(env) (result, error)
	switch scenario {
	case "flood":
		conns := fs.Int("conns", 50000, "connections from sources that are not allowed")
		workers := fs.Int("workers", 64, "connections at a time")
		sessions := fs.Bool("sessions", false, "the operator opens a new session for each call (a new connection through the flood) instead of calling over one")
		run = func(e env) (result, error) { return runFlood(e, *conns, *workers, *sessions) }
	case "slow":
		conns := fs.Int("conns", 100000, "slow and silent connections, at most")
		dur := fs.Duration("for", 10*time.Second, "how long the attack lasts, at most")
		workers := fs.Int("workers", 512, "connections at a time")
		defaults := fs.Bool("defaults", false, "keep the default per-source limits (max_conns_per_source, rate)")
		gap := fs.Duration("gap", 0, "the operator's pause between sessions (default 20ms; 1.1s with -defaults, whose per-source rate limit applies to the operator too)")
		run = func(e env) (result, error) {
			g := *gap
			if g == 0 {
				g = map[bool]time.Duration{false: 20 * time.Millisecond, true: 1100 * time.Millisecond}[*defaults]
			}
			return runSlow(e, *conns, *dur, *workers, *defaults, g)
		}
	case "integrity":
		size := fs.Int64("bytes", 1<<30, "bytes to send through distgate (and get back)")
		flood := fs.Int("flood", 50000, "concurrent connections from sources that are not allowed")
		silent := fs.Int("silent", 2000, "concurrent silent connections from an allowed source")
		run = func(e env) (result, error) { return runIntegrity(e, *size, *flood, *silent) }
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	_ = fs.Parse(os.Args[2:])
	if *bin == "" || *runs < 1 || *runs > 20 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if _, err := testenv.ErlPath(); err != nil && scenario != "integrity" {
		fmt.Fprintln(os.Stderr, "stress: this scenario needs Erlang:", err)
		os.Exit(1)
	}
	e := env{distgate: *bin}
	// A signal stops the processes of the run in progress, not just this
	// program.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "stress: %v: stopping everything this run started\n", s)
		testenv.StopAll()
		os.Exit(130)
	}()

	var all []result
	failed := false
	for i := range *runs {
		fmt.Fprintf(os.Stderr, "== %s run %d of %d\n", scenario, i+1, *runs)
		r, err := run(e)
		if err != nil {
			fmt.Fprintf(os.Stderr, "stress %s: run %d: %v\n", scenario, i+1, err)
			os.Exit(1)
		}
		for _, m := range r.metrics {
			fmt.Printf("run %d  %-44s %12s %s\n", i+1, m.name, format(m.v), m.unit)
		}
		for _, f := range r.fails {
			fmt.Printf("run %d  FAIL: %s\n", i+1, f)
			failed = true
		}
		all = append(all, r)
	}
	fmt.Printf("\n%s: median of %d run(s)\n", scenario, len(all))
	for k, m := range all[0].metrics {
		vs := make([]float64, 0, len(all))
		for _, r := range all {
			if k < len(r.metrics) {
				vs = append(vs, r.metrics[k].v)
			}
		}
		med, _ := attack.Median(vs)
		fmt.Printf("  %-44s %12s %s   (runs: %s)\n", m.name, format(med), m.unit, formatAll(vs))
	}
	if failed {
		fmt.Println("\nSOME CHECKS FAILED (see FAIL lines above)")
		os.Exit(1)
	}
	fmt.Println("\nall checks held")
}

func format(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.2f", v)
}

func formatAll(vs []float64) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = format(v)
	}
	return strings.Join(s, ", ")
}

func ms(d time.Duration) float64   { return float64(d.Microseconds()) / 1000 }
func mib(b int64) float64          { return float64(b*100/(1<<20)) / 100 }
func secs(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }
