package config

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestUpstreamSyntax(t *testing.T) {
	for up, want := range map[string]string{
		"127.0.0.1:99999":      `upstream: "127.0.0.1:99999": port "99999" is not 1–65535`,
		"127.0.0.1:abc":        `upstream: "127.0.0.1:abc": port "abc" is not 1–65535`,
		"127.0.0.1:-1":         `port "-1" is not 1–65535`,
		"127.0.0.1:0":          `port "0" is not 1–65535`,
		"127.0.0.1:09101":      `port "09101" is not 1–65535`,
		":19101":               `upstream: ":19101": no host`,
		"127.0.0.1: 19101":     `port " 19101" is not 1–65535`,
		"no such host!!:19101": `host "no such host!!" is neither an IP address nor a host name`,
		"-bad.example:1":       `host "-bad.example"`,
		"a..b:1":               `host "a..b"`,
		"127.0.0.1":            `upstream: "127.0.0.1": not HOST:PORT`,
		"[::1]:65536":          `port "65536"`,
	} {
		text := strings.Replace(goodGate, "127.0.0.2:9100", up, 1)
		if err := loadErr(t, text); !strings.Contains(err, want) {
			t.Errorf("%q: error %q, want %q", up, err, want)
		}
	}
	for _, up := range []string{"localhost:1", "node-1.example.com:9100", "x_y.internal.:65535", "[fe80::1%lo]:9100", "[::1]:1"} {
		mustLoad(t, strings.Replace(goodGate, "127.0.0.2:9100", up, 1))
	}
}

func TestResolveUpstreams(t *testing.T) {
	lookup := func(ctx context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "loop.example":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::ffff:127.0.0.2"), netip.MustParseAddr("::1")}, nil
		case "mixed.example":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.7")}, nil
		case "empty.example":
			return nil, nil
		}
		return nil, errors.New("no such host")
	}
	resolve := func(up string) (*Config, error) {
		l := mustLoad(t, strings.Replace(goodGate, "127.0.0.2:9100", up, 1))
		return l, l.ResolveUpstreams(context.Background(), lookup)
	}
	if l, err := resolve("loop.example:9100"); err != nil || len(l.Warnings) != 0 {
		t.Errorf("loopback name: %v, warnings %v", err, l.Warnings)
	}
	if l, err := resolve("mixed.example:9100"); err != nil || len(l.Warnings) != 1 ||
		!strings.Contains(l.Warnings[0], `gate "g": upstream: "mixed.example:9100" resolves to 10.0.0.7, not a loopback address`) {
		t.Errorf("name off loopback: %v, warnings %v", err, l.Warnings)
	}
	for _, up := range []string{"nosuch.example:9100", "empty.example:9100"} {
		if _, err := resolve(up); err == nil || !strings.Contains(err.Error(), `gate "g": upstream: "`+up+`": host`) || !strings.Contains(err.Error(), "does not resolve") {
			t.Errorf("%s: %v", up, err)
		}
	}
	// An IP address is not looked up.
	if _, err := resolve("127.0.0.5:9100"); err != nil {
		t.Errorf("IP upstream was looked up: %v", err)
	}
	// The system resolver knows localhost (from /etc/hosts) as loopback.
	l := mustLoad(t, strings.Replace(goodGate, "127.0.0.2:9100", "localhost:9100", 1))
	if err := l.ResolveUpstreams(context.Background(), nil); err != nil || len(l.Warnings) != 0 {
		t.Errorf("localhost: %v, warnings %v", err, l.Warnings)
	}
}
