package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/distgate/distgate/wire"
)

func TestParseProbeTarget(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port int
		err  string
	}{
		{"127.0.0.1", "127.0.0.1", 0, ""},
		{"127.0.0.1:9100", "127.0.0.1", 9100, ""},
		{"::1", "::1", 0, ""},
		{"[::1]", "::1", 0, ""},
		{"[::1]:9100", "::1", 9100, ""},
		{"[::ffff:127.0.0.1]:9100", "127.0.0.1", 9100, ""},
		{"127.0.0.1:0", "", 0, "not 1–65535"},
		{"127.0.0.1:x", "", 0, "not 1–65535"},
		{"::1:9100:", "", 0, "not HOST"},
		{":9100", "", 0, "empty host"},
		{"a b", "", 0, "neither an IP address nor a host name"},
		{"[fe80::1%lo]:1", "", 0, "zoned"},
	}
	for _, tt := range tests {
		got, err := parseProbeTarget(tt.in, time.Second)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got.host != tt.host || got.port != tt.port || got.addr != netip.MustParseAddr(tt.host) {
			t.Errorf("%q: got %+v, %v; want host %s port %d", tt.in, got, err, tt.host, tt.port)
		}
	}
}

func TestStateOf(t *testing.T) {
	tests := []struct {
		outcomes []string
		want     string
	}{
		{[]string{outAnswered, outClosed}, stateExposed},
		{[]string{outClosed, outAnswered}, stateExposed},
		{[]string{outClosed, outClosed}, stateSilent},
		{[]string{outHeld, outClosed}, stateSilent},
		{[]string{outRefused, outClosed}, stateSilent},
		{[]string{outRefused, outRefused}, stateClosed},
		{[]string{outTimeout, outRefused}, stateClosed},
		{[]string{outTimeout, outTimeout}, stateFiltered},
		{[]string{outError, outError}, stateFiltered},
	}
	for _, tt := range tests {
		var as []attempt
		for _, o := range tt.outcomes {
			as = append(as, attempt{Outcome: o})
		}
		if got := stateOf(as); got != tt.want {
			t.Errorf("%v: %s, want %s", tt.outcomes, got, tt.want)
		}
	}
}

func TestErlangStatus(t *testing.T) {
	for in, want := range map[string]string{
		"\x00\x0csnot_allowed":   "not_allowed",
		"\x00\x03sok":            "ok",
		"\x00\x03sok\x00\x1eN..": "ok", // challenge right behind the status
		"\x00\x0csnot_all":       "",   // cut short
		"\x00\x03sk\x00":         "",   // non-printable
		"HTTP/1.1 400":           "",
		"\x00\x01s":              "",
	} {
		if got := erlangStatus([]byte(in)); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestMadeUpMessage(t *testing.T) {
	h, err := wire.Parse(madeUpMessage)
	if err != nil {
		t.Fatal(err)
	}
	if h.Tag != wire.TagNew || string(h.Name) != madeUpName {
		t.Fatalf("got %+v", h)
	}
	if wire.Effective(h.Flags)&wire.Mandatory25 == wire.Mandatory25 {
		t.Fatalf("flags %#x carry every OTP 25 mandatory flag; a node would go on to a challenge", h.Flags)
	}
	if h, err := wire.Parse(scannerMessage); err != nil || h.Tag != wire.TagOld {
		t.Fatalf("scanner message: %+v, %v", h, err)
	}
}

// TestExchange drives exchange against loopback listeners that behave like
// the things a probe meets: a gate (close), a tarpit (hold), a node (answer).
func TestExchange(t *testing.T) {
	serve := func(t *testing.T, handle func(net.Conn)) netip.AddrPort {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		t.Cleanup(func() { _ = ln.Close(); <-done })
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				handle(c)
			}
		}()
		return ln.Addr().(*net.TCPAddr).AddrPort()
	}
	readFirst := func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, len(madeUpMessage))
		_, _ = c.Read(b)
	}

	t.Run("closed", func(t *testing.T) {
		ap := serve(t, func(c net.Conn) { readFirst(c); _ = c.Close() })
		x := exchange(ap, madeUpMessage, probeReplyCap, 2*time.Second, probeLinger)
		if x.Outcome != outClosed || len(x.reply) != 0 {
			t.Fatalf("got %+v", x)
		}
	})
	t.Run("reset", func(t *testing.T) {
		ap := serve(t, func(c net.Conn) {
			readFirst(c)
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
		})
		x := exchange(ap, madeUpMessage, probeReplyCap, 2*time.Second, probeLinger)
		if x.Outcome != outClosed {
			t.Fatalf("got %+v", x)
		}
	})
	t.Run("held", func(t *testing.T) {
		hold := make(chan struct{})
		t.Cleanup(func() { close(hold) })
		ap := serve(t, func(c net.Conn) {
			go func() { <-hold; _ = c.Close() }()
		})
		start := time.Now()
		x := exchange(ap, madeUpMessage, probeReplyCap, 300*time.Millisecond, probeLinger)
		if x.Outcome != outHeld {
			t.Fatalf("got %+v", x)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %s with a 300ms timeout", d)
		}
	})
	t.Run("answered and held", func(t *testing.T) {
		hold := make(chan struct{})
		t.Cleanup(func() { close(hold) })
		ap := serve(t, func(c net.Conn) {
			readFirst(c)
			// sok then a challenge, then wait for the reply as a node would.
			_, _ = c.Write([]byte("\x00\x03sok"))
			_, _ = c.Write([]byte("\x00\x1eN\x00\x00\x00\x0d\x07\xdf\x7f\xbd"))
			go func() { <-hold; _ = c.Close() }()
		})
		start := time.Now()
		x := exchange(ap, madeUpMessage, probeReplyCap, 5*time.Second, probeLinger)
		if x.Outcome != outAnswered || x.Status != "ok" {
			t.Fatalf("got %+v", x)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %s: linger did not cut the wait", d)
		}
	})
}

// TestProbeJSONFields pins the documented -json field names.
func TestProbeJSONFields(t *testing.T) {
	rep := probeReport{
		Epmd:  []epmdResult{{Nodes: []epmdNode{{}}}},
		Ports: []portResult{{Attempts: []attempt{{Status: "x", ReplyHex: "00", Error: "e"}}, Fix: "f"}},
	}
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"exposed"`, `"epmd"`, `"ports"`, `"host"`, `"addr"`, `"port"`, `"state"`,
		`"nodes"`, `"name"`, `"verdict"`, `"from"`, `"attempts"`, `"message"`, `"outcome"`, `"status"`,
		`"reply_hex"`, `"error"`, `"ms"`, `"fix"`} {
		if !strings.Contains(b.String(), k) {
			t.Errorf("no %s in %s", k, b.String())
		}
	}
}
