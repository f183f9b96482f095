package main

import (
	"flag"
	"fmt"
	"time"
)

// cmdLoad drives one kind of load against addr for a while and prints what
// it did; bench/profile.sh runs it while it takes distgate's profiles.
func cmdLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	kind := fs.String("kind", "setup", "setup | flood | pingpong")
	addr := fs.String("addr", "", "where to connect (required)")
	dur := fs.Duration("dur", 10*time.Second, "how long (at most 10m)")
	clients := fs.Int("clients", 32, "concurrent clients (setup, flood)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" {
		return fmt.Errorf("load: -addr is required")
	}
	d := min(*dur, 10*time.Minute)
	switch *kind {
	case "setup":
		r := setupRate(*addr, *clients, d, 10_000_000)
		fmt.Printf("setup: %d connections in %v (%.0f/s), %d errors (first: %v), p99 %.2f ms\n",
			r.conns, r.elapsed.Round(time.Millisecond), float64(r.conns)/r.elapsed.Seconds(), r.errs, r.firstErr,
			percentile(r.lat, .99)/1e3)
	case "flood":
		r := flood(*addr, *clients, d)
		fmt.Printf("flood: %d rejects in %v (%.0f/s), %d got bytes, %d timeouts, %d dial errors (first: %v)\n",
			rejects(r), r.Elapsed.Round(time.Millisecond), float64(rejects(r))/r.Elapsed.Seconds(),
			r.GotBytes, r.Timeouts, r.DialErrs, r.FirstErr)
	case "pingpong":
		c, err := echoConn(*addr, time.Now().Add(d+10*time.Second))
		if err != nil {
			return err
		}
		defer c.Close()
		lat, err := pingpong(c, 64, 100_000_000, 100, time.Now().Add(d), nil)
		if err != nil {
			return err
		}
		fmt.Printf("pingpong: %d round trips, p50 %.1f µs, p99 %.1f µs\n", len(lat), percentile(lat, .5), percentile(lat, .99))
	default:
		return fmt.Errorf("load: unknown -kind %q", *kind)
	}
	return nil
}
