package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

// cmdProfile starts the upstream and a distgate with DISTGATE_PPROF set,
// drives the setup-rate load, the flood and a set of idle connections, and
// saves distgate's CPU, allocation, mutex, heap and goroutine profiles for
// each into -out. bench/profile.sh prints summaries of them.
func cmdProfile(args []string) error {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	distgate := fs.String("distgate", "", "distgate binary (required)")
	out := fs.String("out", "bench/results/profile", "directory for the profiles")
	dur := fs.Duration("dur", 15*time.Second, "CPU profile length per load (at most 2m)")
	idle := fs.Int("idle", 2000, "idle admitted connections for the heap profile")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *distgate == "" {
		return fmt.Errorf("profile: -distgate is required")
	}
	d := min(*dur, 2*time.Minute)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if _, err := raiseNoFile(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "distgate-profile-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer testenv.StopAll()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = testenv.FreePort("127.0.0.1"); err != nil {
			return err
		}
	}
	upAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	gateAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	pprofAddr := fmt.Sprintf("127.0.0.1:%d", ports[2])
	up, err := testenv.Cmd{Name: "upstream", Args: []string{self, "upstream", "-listen", upAddr}}.Start()
	if err != nil {
		return err
	}
	if err := testenv.WaitPort(upAddr, 10*time.Second, up); err != nil {
		return err
	}
	// At log level warn distgate does not say "listening": its ports say it.
	conf, err := writeDistgate(dir, "distgate.toml", distgateConfig(gateAddrs{listen: gateAddr, upstream: upAddr}, "warn", "close"))
	if err != nil {
		return err
	}
	dg, err := testenv.Cmd{Name: "distgate", Args: []string{*distgate, "run", "-config", conf},
		Env: testenv.CleanEnv("DISTGATE_PPROF=" + pprofAddr)}.Start()
	if err != nil {
		return err
	}
	for _, a := range []string{gateAddr, pprofAddr} {
		if err := testenv.WaitPort(a, 10*time.Second, dg); err != nil {
			return err
		}
	}
	get := func(path, file string) error {
		cl := http.Client{Timeout: d + time.Minute}
		resp, err := cl.Get("http://" + pprofAddr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		f, err := os.Create(filepath.Join(*out, file))
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			_ = f.Close()
			return err
		}
		return f.Close()
	}

	loads := []struct {
		kind string
		run  func() string
	}{
		{"setup", func() string {
			r := setupRate(gateAddr, 32, d+2*time.Second, 10_000_000)
			return fmt.Sprintf("%d connections, %.0f/s, %d errors", r.conns, float64(r.conns)/r.elapsed.Seconds(), r.errs)
		}},
		{"flood", func() string {
			r := flood(gateAddr, 16, d+2*time.Second)
			return fmt.Sprintf("%d rejects, %.0f/s, %d other", rejects(r), float64(rejects(r))/r.Elapsed.Seconds(), r.Conns-rejects(r)+r.DialErrs)
		}},
	}
	for _, l := range loads {
		logf("profile: %s load for %v", l.kind, d)
		if err := get("/debug/pprof/allocs", "allocs-"+l.kind+"-before.pb.gz"); err != nil {
			return err
		}
		if err := get("/debug/pprof/mutex", "mutex-"+l.kind+"-before.pb.gz"); err != nil {
			return err
		}
		done := make(chan string, 1)
		go func() { done <- l.run() }()
		time.Sleep(time.Second) // let the load reach its steady state
		if err := get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())), "cpu-"+l.kind+".pb.gz"); err != nil {
			return err
		}
		summary := <-done
		if err := get("/debug/pprof/allocs", "allocs-"+l.kind+"-after.pb.gz"); err != nil {
			return err
		}
		if err := get("/debug/pprof/mutex", "mutex-"+l.kind+"-after.pb.gz"); err != nil {
			return err
		}
		logf("profile: %s: %s", l.kind, summary)
	}

	logf("profile: %d idle admitted connections", *idle)
	held, err := openMany(gateAddr, *idle, 32, false, time.Now().Add(60*time.Second))
	defer closeAll(held)
	if err != nil {
		return err
	}
	waitStable(dg.Pid())
	if err := get("/debug/pprof/heap?gc=1", "heap-idle.pb.gz"); err != nil {
		return err
	}
	if err := get("/debug/pprof/heap?debug=1", "heap-idle.txt"); err != nil {
		return err
	}
	if err := get("/debug/pprof/goroutine?debug=1", "goroutine-idle.txt"); err != nil {
		return err
	}
	b, _ := os.ReadFile(filepath.Join(*out, "heap-idle.txt"))
	var stats []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, k := range []string{"# HeapInuse ", "# HeapAlloc ", "# Stack ", "# Sys ", "# NumGC "} {
			if strings.HasPrefix(l, k) {
				stats = append(stats, strings.TrimPrefix(l, "# "))
			}
		}
	}
	logf("profile: with %d idle connections: RSS %d KiB, %d descriptors; %s",
		len(held), rssKiB(dg.Pid()), fdCount(dg.Pid()), strings.Join(stats, ", "))
	return nil
}
