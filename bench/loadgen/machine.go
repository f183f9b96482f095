package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

func lookPath(p string) (string, error) {
	if strings.Contains(p, "/") {
		if _, err := os.Stat(p); err != nil {
			return "", err
		}
		return p, nil
	}
	path, err := exec.LookPath(p)
	if err != nil {
		return "", fmt.Errorf("%s not found (bench/run.sh installs it): %w", p, err)
	}
	return path, nil
}

// output runs a short command and returns its combined output.
func output(name string, args ...string) (string, error) {
	out, err := testenv.Cmd{Args: append([]string{name}, args...)}.Run(30 * time.Second)
	return strings.TrimSpace(out), err
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}

// machineInfo describes where the numbers come from.
func machineInfo(bins map[string]string) []string {
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem = firstLine(string(b))
		mem = strings.Join(strings.Fields(strings.TrimPrefix(mem, "MemTotal:")), " ")
	}
	dg, _ := output(bins["distgate"], "version")
	hp, _ := output(bins["haproxy"], "-v")
	ng, _ := output(bins["nginx"], "-v")
	otp, _ := output(bins["erl"], "-noshell", "-eval",
		`io:format("OTP ~s, erts ~s", [erlang:system_info(otp_release), erlang:system_info(version)]), halt().`)
	return []string{
		fmt.Sprintf("CPUs: %d × %s", runtime.NumCPU(), cpu),
		"memory: " + mem,
		"kernel: Linux " + kernel,
		"distgate: " + firstLine(dg),
		"HAProxy: " + firstLine(hp),
		"nginx: " + strings.TrimPrefix(firstLine(ng), "nginx version: "),
		"Erlang: " + firstLine(otp),
		"Go (load generator and upstream): " + runtime.Version(),
	}
}

// loadAvg is the first three fields of /proc/loadavg: how busy the shared
// machine was.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// tcpMemory reads the kernel's TCP memory in use and its limits, in pages
// (/proc/net/sockstat's "mem" and net.ipv4.tcp_mem: low, pressure, high).
// The count is the whole kernel's, not this network namespace's: on a
// shared machine another program's sockets can push every connection into
// memory pressure, where loopback drops segments and a bulk transfer
// stalls. ok is false when either file cannot be read.
func tcpMemory() (inUse, pressure, high int64, ok bool) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0, 0, 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			if f[i] == "mem" {
				inUse, err = strconv.ParseInt(f[i+1], 10, 64)
				ok = err == nil
			}
		}
	}
	lim, err := os.ReadFile("/proc/sys/net/ipv4/tcp_mem")
	if err != nil || !ok {
		return 0, 0, 0, false
	}
	f := strings.Fields(string(lim))
	if len(f) != 3 {
		return 0, 0, 0, false
	}
	pressure, err1 := strconv.ParseInt(f[1], 10, 64)
	high, err2 := strconv.ParseInt(f[2], 10, 64)
	return inUse, pressure, high, err1 == nil && err2 == nil
}

// tcpMemoryNote describes the kernel's TCP memory when it is above the
// pressure threshold, else "".
func tcpMemoryNote(when string) string {
	inUse, pressure, high, ok := tcpMemory()
	if !ok || inUse < pressure {
		return ""
	}
	return fmt.Sprintf("%s the kernel's TCP memory was %d pages, over its pressure threshold (%d; limit %d, "+
		"net.ipv4.tcp_mem): sockets of other programs on this machine count too, and under pressure "+
		"loopback drops segments, so transfers slow down or stall", when, inUse, pressure, high)
}
