package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distgate/distgate/wire"
)

func TestParseTarget(t *testing.T) {
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
		got, err := parseTarget(context.Background(), tt.in, time.Second)
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

// Run refuses unusable input before it sends anything.
func TestRunErrors(t *testing.T) {
	tests := []struct {
		targets []string
		opts    Options
		want    string
	}{
		{nil, Options{}, "no TARGET given"},
		{[]string{"127.0.0.1:1", "127.0.0.1:0"}, Options{}, `target "127.0.0.1:0": port "0" is not 1–65535`},
		{[]string{"127.0.0.1:1", "127.0.0.1"}, Options{NoEpmd: true}, `target "127.0.0.1" has no port and -epmd-port is 0: nothing to probe`},
		{[]string{"127.0.0.1:1"}, Options{Timeout: -time.Second}, "must be positive"},
		{[]string{"127.0.0.1:1"}, Options{EpmdPort: 65536}, "not a port"},
	}
	for _, tt := range tests {
		_, err := Run(context.Background(), tt.targets, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run(%q, %+v): %v, want %q", tt.targets, tt.opts, err, tt.want)
		}
	}
}

// serve accepts on a loopback listener and hands each connection to handle,
// one after the other, until the test ends.
func serve(t *testing.T, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
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

// readFirst reads what the probe sent, as a gate or a node would before
// deciding.
func readFirst(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, len(madeUpMessage))
	_, _ = c.Read(b)
}

// freePort returns a loopback port where nothing listens (it was just
// released; nothing else on this machine binds 127.0.0.1 ports at random
// within the test's few milliseconds, as a rule).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return p
}

// TestRun probes a port that closes without a byte (as distgate does), one
// that answers as a node does, and one where nothing listens, with epmd
// asked on a port where nothing listens.
func TestRun(t *testing.T) {
	silent := serve(t, func(c net.Conn) { readFirst(c); _ = c.Close() })
	node := serve(t, func(c net.Conn) {
		readFirst(c)
		_, _ = c.Write([]byte("\x00\x0csnot_allowed"))
		_ = c.Close()
	})
	closed := freePort(t)
	epmd := freePort(t)
	rep, err := Run(context.Background(), []string{
		silent.String(), node.String(), "127.0.0.1:" + strconv.Itoa(closed), silent.String(),
	}, Options{Timeout: 2 * time.Second, EpmdPort: epmd})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Exposed || len(rep.Epmd) != 1 || rep.Epmd[0].State != StateClosed || rep.Epmd[0].Port != epmd {
		t.Fatalf("got %+v", rep)
	}
	if len(rep.Ports) != 3 {
		t.Fatalf("ports %+v: want 3 (the repeated target once)", rep.Ports)
	}
	for i, want := range []string{StateSilent, StateExposed, StateClosed} {
		if p := rep.Ports[i]; p.State != want || p.From != "target" || len(p.Attempts) != 2 {
			t.Errorf("ports[%d] = %+v, want %s", i, p, want)
		}
	}
	if a := rep.Ports[1].Attempts; a[0].Status != "not_allowed" || a[1].ReplyHex != "000c736e6f745f616c6c6f776564" {
		t.Errorf("node attempts %+v", a)
	}
	if rep.Ports[1].Fix == "" || rep.Ports[0].Fix != "" {
		t.Errorf("a fix only for the exposed port: %+v", rep.Ports)
	}
	if rep.Unprobed == nil || len(rep.Unprobed) != 0 {
		t.Errorf("unprobed %#v, want [] (every target had a port)", rep.Unprobed)
	}
}

// TestRunUnprobed: a host given without a port where no epmd answers had
// nothing probed, and the report says so instead of a silent all-clear;
// a port on the same host given too, or a port epmd listed, is a probe.
func TestRunUnprobed(t *testing.T) {
	silent := serve(t, func(c net.Conn) { readFirst(c); _ = c.Close() })
	noEpmd := freePort(t)
	// An epmd that lists one node, on the silent port.
	epmd := serve(t, func(c net.Conn) {
		readFirst(c)
		_, _ = c.Write([]byte("\x00\x00\x11\x11name app at port " + strconv.Itoa(int(silent.Port())) + "\n"))
		_ = c.Close()
	})
	for _, tt := range []struct {
		name     string
		targets  []string
		epmdPort int
		unprobed []string
		exposed  bool
	}{
		{"bare host, no epmd", []string{"127.0.0.1"}, noEpmd, []string{"127.0.0.1"}, false},
		{"bare host twice, no epmd", []string{"127.0.0.1", "127.0.0.1"}, noEpmd, []string{"127.0.0.1"}, false},
		{"bare host and a port on it", []string{"127.0.0.1", silent.String()}, noEpmd, []string{}, false},
		{"bare host and a port elsewhere", []string{"127.0.0.1", "[::1]:" + strconv.Itoa(freePort(t))}, noEpmd, []string{"127.0.0.1"}, false},
		{"epmd lists a port", []string{"127.0.0.1"}, int(epmd.Port()), []string{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Run(context.Background(), tt.targets, Options{Timeout: 2 * time.Second, EpmdPort: tt.epmdPort})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(rep.Unprobed, ",") != strings.Join(tt.unprobed, ",") || rep.Unprobed == nil || rep.Exposed != tt.exposed {
				t.Fatalf("unprobed %#v exposed %v, want %#v %v; report %+v", rep.Unprobed, rep.Exposed, tt.unprobed, tt.exposed, rep)
			}
			msgs := rep.UnprobedMessages()
			if len(msgs) != len(tt.unprobed) {
				t.Fatalf("messages %q for %q", msgs, tt.unprobed)
			}
			for _, m := range msgs {
				want := fmt.Sprintf("no epmd on port %d answered", tt.epmdPort)
				if !strings.Contains(m, "nothing could be probed on 127.0.0.1") || !strings.Contains(m, want) ||
					!strings.Contains(m, "HOST:PORT") || !strings.Contains(m, "distgate probe 127.0.0.1:9100") {
					t.Errorf("message %q", m)
				}
			}
		})
	}
}

func TestStateOf(t *testing.T) {
	tests := []struct {
		outcomes []string
		want     string
	}{
		{[]string{OutcomeAnswered, OutcomeClosed}, StateExposed},
		{[]string{OutcomeClosed, OutcomeAnswered}, StateExposed},
		{[]string{OutcomeClosed, OutcomeClosed}, StateSilent},
		{[]string{OutcomeHeld, OutcomeClosed}, StateSilent},
		{[]string{OutcomeRefused, OutcomeClosed}, StateSilent},
		{[]string{OutcomeRefused, OutcomeRefused}, StateClosed},
		{[]string{OutcomeTimeout, OutcomeRefused}, StateClosed},
		{[]string{OutcomeTimeout, OutcomeTimeout}, StateFiltered},
		{[]string{OutcomeError, OutcomeError}, StateFiltered},
	}
	for _, tt := range tests {
		var as []Attempt
		for _, o := range tt.outcomes {
			as = append(as, Attempt{Outcome: o})
		}
		if got := stateOf(as); got != tt.want {
			t.Errorf("%v: %s, want %s", tt.outcomes, got, tt.want)
		}
	}
}

func TestReplyStatus(t *testing.T) {
	for in, want := range map[string]string{
		"\x00\x0csnot_allowed":   "not_allowed",
		"\x00\x03sok":            "ok",
		"\x00\x03sok\x00\x1eN..": "ok", // challenge right behind the status
		"\x00\x0csnot_all":       "",   // cut short
		"\x00\x03sk\x00":         "",   // non-printable
		"HTTP/1.1 400":           "",
		"\x00\x01s":              "",
		"\x00":                   "",
		"\x00\x10snamed:\x00\x03a@b\x00\x00\x00\x01": "named:",
	} {
		if got := replyStatus([]byte(in)); got != want {
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
}

// TestExchange drives exchange against loopback listeners that behave like
// the things a probe meets: a gate (close), a tarpit (hold), a node (answer).
func TestExchange(t *testing.T) {
	ctx := context.Background()
	t.Run("closed", func(t *testing.T) {
		ap := serve(t, func(c net.Conn) { readFirst(c); _ = c.Close() })
		x := exchange(ctx, ap, madeUpMessage, replyCap, 2*time.Second, linger)
		if x.Outcome != OutcomeClosed || len(x.reply) != 0 {
			t.Fatalf("got %+v", x)
		}
	})
	t.Run("reset", func(t *testing.T) {
		ap := serve(t, func(c net.Conn) {
			readFirst(c)
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
		})
		x := exchange(ctx, ap, madeUpMessage, replyCap, 2*time.Second, linger)
		if x.Outcome != OutcomeClosed {
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
		x := exchange(ctx, ap, madeUpMessage, replyCap, 300*time.Millisecond, linger)
		if x.Outcome != OutcomeHeld {
			t.Fatalf("got %+v", x)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %s with a 300ms timeout", d)
		}
	})
	t.Run("held and cancelled", func(t *testing.T) {
		hold := make(chan struct{})
		t.Cleanup(func() { close(hold) })
		accepted := make(chan struct{}, 1)
		ap := serve(t, func(c net.Conn) {
			accepted <- struct{}{}
			go func() { <-hold; _ = c.Close() }()
		})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-accepted; cancel() }()
		start := time.Now()
		x := exchange(ctx, ap, madeUpMessage, replyCap, 10*time.Second, linger)
		if x.Outcome != OutcomeError || x.Error != context.Canceled.Error() {
			t.Fatalf("got %+v", x)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %s: cancelling did not cut the wait", d)
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
		x := exchange(ctx, ap, madeUpMessage, replyCap, 5*time.Second, linger)
		if x.Outcome != OutcomeAnswered || x.Status != "ok" {
			t.Fatalf("got %+v", x)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %s: linger did not cut the wait", d)
		}
	})
}

// TestJSONFields pins the documented -json field names.
func TestJSONFields(t *testing.T) {
	rep := Report{
		Epmd:     []Epmd{{Nodes: []Node{{}}}},
		Ports:    []Port{{Attempts: []Attempt{{Status: "x", ReplyHex: "00", Error: "e"}}, Fix: "f"}},
		Unprobed: []string{"h"},
		Timeout:  time.Second,
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"exposed"`, `"epmd"`, `"ports"`, `"host"`, `"addr"`, `"port"`, `"state"`,
		`"nodes"`, `"name"`, `"verdict"`, `"from"`, `"attempts"`, `"message"`, `"outcome"`, `"status"`,
		`"reply_hex"`, `"error"`, `"ms"`, `"fix"`, `"unprobed"`} {
		if !strings.Contains(b.String(), k) {
			t.Errorf("no %s in %s", k, b.String())
		}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b.Bytes(), &top); err != nil || len(top) != 4 {
		t.Errorf("top-level keys %v (%v), want exposed, epmd, ports, unprobed only", top, err)
	}
}

// TestWriteText pins the text output the README shows.
func TestWriteText(t *testing.T) {
	rep := Report{
		Exposed: true,
		Epmd: []Epmd{{Host: "127.0.0.2", Addr: "127.0.0.2", Port: 14674, State: StateClosed, Nodes: []Node{},
			Verdict: "refused: no epmd listens here"}},
		Ports: []Port{{Host: "127.0.0.2", Addr: "127.0.0.2", Port: 18210, From: "target", State: StateExposed,
			Attempts: []Attempt{
				{Message: "scanner_n", Outcome: OutcomeClosed},
				{Message: "made_up_N", Outcome: OutcomeAnswered, Status: "not_allowed", ReplyHex: "000c736e6f745f616c6c6f776564"},
			},
			Verdict: "an Erlang node answers here (status not_allowed to a made-up node): anyone who can reach this port can start the distribution handshake and try cookies",
			Fix:     portFix,
		}},
		Timeout: 3 * time.Second,
	}
	want := `127.0.0.2:14674  epmd  closed
  verdict: refused: no epmd listens here

127.0.0.2:18210  exposed
  scanner 'n' message: closed without a byte
  made-up 'N' message: answered "\x00\fsnot_allowed" (status not_allowed)
  verdict: an Erlang node answers here (status not_allowed to a made-up node): anyone who can reach this port can start the distribution handshake and try cookies
  fix: bind the node to loopback (-kernel inet_dist_use_interface '{127,0,0,1}') and put distgate on this port with an allowlist, or firewall the port to the hosts that must connect

1 exposed, 0 silent, 1 closed, 0 filtered
`
	var b bytes.Buffer
	if err := WriteText(&b, rep); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
