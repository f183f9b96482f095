package pick

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/distgate/distgate/forward"
	"github.com/distgate/distgate/forward/kernel"
)

// logBuf collects log lines; safe for concurrent use.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, s := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if s == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("log line %q: %v", s, err)
		}
		out = append(out, m)
	}
	return out
}

// forwards checks that f moves a message each way between two loopback
// connections, and returns the pair's Handle once it has ended.
func forwards(t *testing.T, f forward.Forwarder) forward.Handle {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	link := func() (*net.TCPConn, *net.TCPConn) {
		d, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
		if err != nil {
			t.Fatal(err)
		}
		a, err := ln.AcceptTCP()
		if err != nil {
			t.Fatal(err)
		}
		_ = d.SetDeadline(time.Now().Add(20 * time.Second))
		return d, a
	}
	client, c := link()
	u, node := link()
	defer client.Close()
	defer node.Close()
	done := make(chan forward.Result, 1)
	h, err := f.Start(forward.Pair{Client: c, Upstream: u}, func(r forward.Result) { done <- r })
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range [][2]*net.TCPConn{{client, node}, {node, client}} {
		if _, err := dir[0].Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4)
		if _, err := io.ReadFull(dir[1], b); err != nil || string(b) != "ping" {
			t.Fatalf("read %q, %v; want ping", b, err)
		}
	}
	_ = client.CloseWrite()
	_ = node.CloseWrite()
	select {
	case r := <-done:
		if r.In != 4 || r.Out != 4 || r.Err != nil {
			t.Errorf("result %+v, want 4 bytes each way", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pair did not end")
	}
	return h
}

func TestOpenUser(t *testing.T) {
	var log logBuf
	f := Open(User, Options{Log: zerolog.New(&log)})
	defer f.Close()
	if f.Path != User || f.Fallback != nil {
		t.Fatalf("path %q, fallback %v; want user and none", f.Path, f.Fallback)
	}
	if _, ok := f.Forwarder.(*forward.User); !ok {
		t.Errorf("forwarder %T, want the event loop", f.Forwarder)
	}
	forwards(t, f.Forwarder)
	if ls := log.lines(t); len(ls) != 0 {
		t.Errorf("log lines %v, want none", ls)
	}
}

// "kernel" runs the kernel path where it is permitted; elsewhere it falls
// back to the event loop and says why in one warn line.
func TestOpenKernel(t *testing.T) {
	var log logBuf
	f := Open(Kernel, Options{Log: zerolog.New(&log)})
	defer f.Close()
	ls := log.lines(t)
	if f.Path == User {
		if !errors.Is(f.Fallback, kernel.ErrPermission) {
			t.Fatalf("kernel path refused for another reason than privileges: %v", f.Fallback)
		}
		if len(ls) != 1 || ls[0]["level"] != "warn" || ls[0]["path"] != "user" || !strings.Contains(ls[0]["error"].(string), "not permitted") {
			t.Errorf("log %v, want one warn line with the reason", ls)
		}
		forwards(t, f.Forwarder)
		t.Skipf("kernel path not permitted here: %v", f.Fallback)
	}
	if f.Path != Kernel || f.Fallback != nil || len(ls) != 0 {
		t.Fatalf("path %q, fallback %v, log %v; want kernel, none, nothing", f.Path, f.Fallback, ls)
	}
	before, _ := f.Stats() // the self-test's pairs
	h := forwards(t, f.Forwarder)
	if p := h.(*kernel.Handle).Path(); p != Kernel {
		t.Errorf("pair forwarded on %q, want kernel", p)
	}
	if s, ok := f.Stats(); !ok || s.Kernel != before.Kernel+1 {
		t.Errorf("stats %+v (%v), want one more pair in the kernel than %+v", s, ok, before)
	}
}

// Every intervention is counted; the warn lines are rate limited, and
// what they left out is said in the end.
func TestReporterLimits(t *testing.T) {
	var log logBuf
	var n atomic.Int64
	r := newReporter(zerolog.New(&log), func(kind string) {
		if kind == kernel.EventWatchdog {
			n.Add(1)
		}
	})
	const events = 100
	for range events {
		r.event(kernel.Event{Kind: kernel.EventWatchdog, Err: errors.New("stuck")})
	}
	r.close()
	if n.Load() != events {
		t.Errorf("counted %d, want %d", n.Load(), events)
	}
	ls := log.lines(t)
	if len(ls) < 2 || len(ls) > warnBurst+1 {
		t.Fatalf("%d lines, want at most %d and a last one with the rest", len(ls), warnBurst+1)
	}
	logged, suppressed := 0, 0.0
	for _, l := range ls {
		if l["level"] != "warn" {
			t.Errorf("line %v is not a warning", l)
		}
		if l["message"] == "forwarding intervention" {
			logged++
			if l["kind"] != "watchdog" || l["error"] != "stuck" {
				t.Errorf("line %v", l)
			}
		}
		if v, ok := l["suppressed"].(float64); ok {
			suppressed += v
		}
	}
	if logged+int(suppressed) != events {
		t.Errorf("%d logged and %v suppressed, want %d in all", logged, suppressed, events)
	}
}
