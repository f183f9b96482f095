package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// target is one command-line argument, resolved.
type target struct {
	host string     // as given (brackets removed)
	addr netip.Addr // what is dialled
	port int        // 0: only epmd
}

// parseTarget reads HOST, HOST:PORT, [IPv6] or [IPv6]:PORT (a bare IPv6
// address works too). A host name is resolved once, here, within timeout,
// so every connection goes to the same address.
func parseTarget(ctx context.Context, s string, timeout time.Duration) (target, error) {
	host, portStr := s, ""
	if a, err := netip.ParseAddr(s); err == nil {
		host = a.String()
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	} else if strings.Contains(s, ":") {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return target{}, fmt.Errorf("target %q: not HOST, HOST:PORT or [IPv6]:PORT", s)
		}
		host, portStr = h, p
	}
	t := target{host: host}
	if portStr != "" {
		p, err := strconv.Atoi(portStr)
		if err != nil || p < 1 || p > 65535 {
			return target{}, fmt.Errorf("target %q: port %q is not 1–65535", s, portStr)
		}
		t.port = p
	}
	if host == "" {
		return target{}, fmt.Errorf("target %q: empty host", s)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return target{}, fmt.Errorf("target %q: zoned addresses are not supported", s)
		}
		t.addr = a.Unmap()
		t.host = t.addr.String()
		return t, nil
	}
	// Only what a DNS name may hold goes to the resolver, so a typo is
	// reported as such rather than as a lookup failure.
	for _, c := range host {
		if !(c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return target{}, fmt.Errorf("target %q: %q is neither an IP address nor a host name", s, host)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return target{}, fmt.Errorf("target %q: cannot resolve %q: %v", s, host, err)
	}
	t.addr = addrs[0].Unmap()
	return t, nil
}
