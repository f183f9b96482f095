package main

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
)

// DISTGATE_PPROF, when set to an address such as 127.0.0.1:6060, serves
// net/http/pprof there so the accept, decide and splice path can be profiled
// under load (bench/profile.sh). It is deliberately left out of the
// documented configuration: it is a developer's switch, off unless set, and
// it has its own mux so nothing of it ever appears on the metrics listener.
func init() {
	addr := os.Getenv("DISTGATE_PPROF")
	if addr == "" {
		return
	}
	runtime.SetMutexProfileFraction(100)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() {
		if err := http.ListenAndServe(addr, mux); err != nil {
			fmt.Fprintf(os.Stderr, "distgate: DISTGATE_PPROF: %v\n", err)
		}
	}()
}
