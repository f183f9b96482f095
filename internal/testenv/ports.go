package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

// portSpan is how many ports below the ephemeral range FreePort draws from.
const portSpan = 12000

// FreePort returns a port that can be bound now on every address in ips
// (e.g. 127.0.0.1 for distgate and 127.0.0.2 for the node behind it) and
// that this process has not handed out before. It draws from just below
// the kernel's ephemeral range (net.ipv4.ip_local_port_range), so no
// outgoing connection, of this process or of a load generator beside it,
// can be holding it when the caller binds it later; a port the kernel
// picks (":0") comes from that range and has no such guarantee.
func FreePort(ips ...string) (int, error) {
	if len(ips) == 0 {
		ips = []string{"127.0.0.1"}
	}
	hi := ephemeralLow()
	lo := max(1024, hi-portSpan)
	for range 500 {
		p := lo + rand.IntN(hi-lo)
		portMu.Lock()
		used := portsUsed[p]
		portMu.Unlock()
		if used || !portFree(p, ips) {
			continue
		}
		portMu.Lock()
		used = portsUsed[p]
		portsUsed[p] = true
		portMu.Unlock()
		if !used {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no port in %d-%d free on all of %s", lo, hi-1, strings.Join(ips, ", "))
}

// Port is FreePort for a test; it fails the test if there is none.
func Port(t testing.TB, ips ...string) int {
	t.Helper()
	p, err := FreePort(ips...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ephemeralLow returns the first port of the kernel's ephemeral range, or
// Linux's default (32768) if it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 1024+1000 {
				return n
			}
		}
	}
	return 32768
}

// portFree reports whether p can be bound on every address in ips.
func portFree(p int, ips []string) bool {
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			_ = ln.Close()
		}
	}()
	for _, ip := range ips {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		held = append(held, ln)
	}
	return true
}

// Addr joins an address and a port.
func Addr(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
