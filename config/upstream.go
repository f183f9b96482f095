package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ResolveTimeout bounds ResolveUpstreams when its context has no deadline.
const ResolveTimeout = 5 * time.Second

// splitUpstream checks that s is HOST:PORT with a port in 1–65535 and a host
// that is an IP address or a syntactically valid host name. It resolves
// nothing: Load stays free of network waits, so a reload never hangs on
// DNS (ResolveUpstreams does that at check and at start).
func splitUpstream(s string) (host string, err error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", errors.New("not HOST:PORT (e.g. \"127.0.0.1:9101\")")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return "", fmt.Errorf("port %q is not 1–65535", port)
	}
	if host == "" {
		// Go would dial the local system; say which address is meant.
		return "", errors.New("no host (write 127.0.0.1 for a node on loopback)")
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return host, nil
	}
	if !validHostname(host) {
		return "", fmt.Errorf("host %q is neither an IP address nor a host name", host)
	}
	return host, nil
}

// validHostname reports whether h is a DNS name as resolvers take it:
// dot-separated labels of letters, digits, '-' and '_', 1–63 bytes each,
// not starting or ending with '-', at most 253 bytes (a final dot allowed).
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Lookup resolves a host name to its addresses.
type Lookup func(ctx context.Context, host string) ([]netip.Addr, error)

// ResolveUpstreams resolves every gate's upstream that is a host name: one
// that does not resolve is an error, and one that resolves to an address
// off loopback adds a warning to l.Warnings (the node's port would be
// reachable around the gate). An upstream written as an IP address is
// checked by Load already. lookup nil means the system resolver. `check`
// and `run` call it once; a reload does not, since upstreams cannot change
// on reload and DNS must not hold SIGHUP up.
func (l *Config) ResolveUpstreams(ctx context.Context, lookup Lookup) error {
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ResolveTimeout)
		defer cancel()
	}
	var errs []error
	for _, g := range l.Gates {
		host, _, err := net.SplitHostPort(g.Upstream)
		if err != nil {
			continue // Load refused it already
		}
		if _, err := netip.ParseAddr(host); err == nil {
			continue
		}
		addrs, err := lookup(ctx, host)
		if err == nil && len(addrs) == 0 {
			err = errors.New("no address")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: gate %q: upstream: %q: host %q does not resolve: %w", l.Source, g.Name, g.Upstream, host, err))
			continue
		}
		var off []string
		for _, a := range addrs {
			if !a.Unmap().IsLoopback() {
				off = append(off, a.Unmap().String())
			}
		}
		if len(off) > 0 {
			l.Warnings = append(l.Warnings, fmt.Sprintf("gate %q: upstream: %q resolves to %s, not a loopback address; the node's port must not be reachable from outside, or the gate can be walked around", g.Name, g.Upstream, strings.Join(off, ", ")))
		}
	}
	return errors.Join(errs...)
}
