package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
	"golang.org/x/time/rate"

	"github.com/distgate/distgate/forward"
	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/wire"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// gate's Serve must have cleaned up after itself.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testWait bounds every wait in these tests; a passing test takes far less.
const testWait = 5 * time.Second

// logBuf collects a gate's JSON log lines. It is safe for concurrent use.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// entry is one parsed log line.
type entry map[string]any

func (e entry) str(k string) string { s, _ := e[k].(string); return s }

func (e entry) num(k string) int64 { f, _ := e[k].(float64); return int64(f) }

func (e entry) has(k string) bool { _, ok := e[k]; return ok }

// entries parses every line written so far.
func (l *logBuf) entries(t testing.TB) []entry {
	t.Helper()
	l.mu.Lock()
	data := bytes.Clone(l.buf.Bytes())
	l.mu.Unlock()
	var out []entry
	for line := range bytes.Lines(data) {
		var e entry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// all returns the lines with message msg that match (nil: any).
func (l *logBuf) all(t testing.TB, msg string, match func(entry) bool) []entry {
	t.Helper()
	var out []entry
	for _, e := range l.entries(t) {
		if e.str("message") == msg && (match == nil || match(e)) {
			out = append(out, e)
		}
	}
	return out
}

// waitFor polls until a line with message msg that matches is logged.
func (l *logBuf) waitFor(t testing.TB, msg string, match func(entry) bool) entry {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for {
		if es := l.all(t, msg, match); len(es) > 0 {
			return es[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q line after %v; log:\n%s", msg, testWait, l)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// from matches lines whose remote is c's local address.
func from(c net.Conn) func(entry) bool {
	want := c.LocalAddr().String()
	return func(e entry) bool { return e.str("remote") == want }
}

// testObs is an Observer that counts what it is told.
type testObs struct {
	mu             sync.Mutex
	decided        map[policy.Reason]int
	active, peak   int
	in, out        int64
	suppressed     int
	limiterReports int

	// onMoved, if set before the gate starts, runs at the start of Moved,
	// on the goroutine that ends the connection: a test can hold the
	// connection's end there.
	onMoved func()
}

func newTestObs() *testObs { return &testObs{decided: make(map[policy.Reason]int)} }

func (o *testObs) Decided(r policy.Reason, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.decided[r]++
}

func (o *testObs) Moved(in, out int64) {
	if o.onMoved != nil {
		o.onMoved()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.in += in
	o.out += out
}

func (o *testObs) Active(delta int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.active += delta
	o.peak = max(o.peak, o.active)
}

func (o *testObs) Suppressed(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.suppressed += n
}

func (o *testObs) LimiterSources(int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.limiterReports++
}

type obsView struct {
	decided      map[policy.Reason]int
	active, peak int
	in, out      int64
	suppressed   int
}

func (o *testObs) view() obsView {
	o.mu.Lock()
	defer o.mu.Unlock()
	d := make(map[policy.Reason]int, len(o.decided))
	for k, v := range o.decided {
		d[k] = v
	}
	return obsView{decided: d, active: o.active, peak: o.peak, in: o.in, out: o.out, suppressed: o.suppressed}
}

func (v obsView) total() int {
	n := 0
	for _, c := range v.decided {
		n += c
	}
	return n
}

// fakeUpstream stands in for the node: it accepts, counts accepts and hands
// each connection to the test.
type fakeUpstream struct {
	ln      *net.TCPListener
	accepts atomic.Int64
	conns   chan *net.TCPConn
}

func newUpstream(t testing.TB, addr string) *fakeUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("upstream listen: %v", err)
	}
	u := &fakeUpstream{ln: ln.(*net.TCPListener), conns: make(chan *net.TCPConn, 128)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := u.ln.AcceptTCP()
			if err != nil {
				return
			}
			u.accepts.Add(1)
			select {
			case u.conns <- c:
			default:
				_ = c.Close()
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		for {
			select {
			case c := <-u.conns:
				_ = c.Close()
			default:
				return
			}
		}
	})
	return u
}

func (u *fakeUpstream) addr() string { return u.ln.Addr().String() }

// next returns the next connection the gate made to the upstream.
func (u *fakeUpstream) next(t testing.TB) *net.TCPConn {
	t.Helper()
	select {
	case c := <-u.conns:
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(testWait))
		return c
	case <-time.After(testWait):
		t.Fatalf("upstream got no connection within %v", testWait)
		return nil
	}
}

// dialFrom connects to addr from source address src (127.0.0.x, ::1).
func dialFrom(t testing.TB, src, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: testWait}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	tc := c.(*net.TCPConn)
	t.Cleanup(func() { _ = tc.Close() })
	_ = tc.SetDeadline(time.Now().Add(testWait))
	return tc
}

func write(t testing.TB, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write %d bytes: %v", len(b), err)
	}
}

// expect reads exactly len(want) bytes and compares them.
func expect(t testing.TB, c net.Conn, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read %d bytes: %v", len(want), err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read bytes differ from those sent (%d bytes; first got % x, want % x)",
			len(want), got[:min(len(got), 16)], want[:min(len(want), 16)])
	}
}

// readToEnd reads c until the read fails and returns what arrived and the
// error that ended it (io.EOF for a FIN).
func readToEnd(t testing.TB, c net.Conn) ([]byte, error) {
	t.Helper()
	var got []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("connection still open after %v (%d bytes read)", testWait, len(got))
			}
			return got, err
		}
	}
}

// expectSilentClose asserts that the gate closed c without writing a byte:
// with a FIN (EOF), or with a RST when reset is set.
func expectSilentClose(t testing.TB, c net.Conn, reset bool) {
	t.Helper()
	got, err := readToEnd(t, c)
	if len(got) != 0 {
		t.Errorf("client got %d bytes (% x), want none", len(got), got[:min(len(got), 32)])
	}
	switch {
	case reset && !errors.Is(err, syscall.ECONNRESET):
		t.Errorf("client read ended with %v, want ECONNRESET", err)
	case !reset && err != io.EOF:
		t.Errorf("client read ended with %v, want EOF", err)
	}
}

// expectClosed asserts c ends, by FIN or RST, with no more bytes.
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	got, err := readToEnd(t, c)
	if len(got) != 0 {
		t.Errorf("client got %d more bytes, want none", len(got))
	}
	if err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read ended with %v, want EOF or ECONNRESET", err)
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// hello is a first message as an OTP 25 hidden node sends it.
func hello(t testing.TB, name string) []byte {
	t.Helper()
	b, err := wire.Append(nil, wire.Handshake{Tag: wire.TagNew, Flags: wire.DefaultHiddenFlags,
		Creation: 0xfa02cbc9, Name: []byte(name)})
	if err != nil {
		t.Fatalf("build hello: %v", err)
	}
	return b
}

// allow builds one allow entry; sources are CIDRs or bare addresses.
func allow(t testing.TB, sources []string, names ...string) policy.Entry {
	t.Helper()
	var e policy.Entry
	for _, s := range sources {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				t.Fatalf("source %q: %v", s, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		e.Sources = append(e.Sources, p.Masked())
	}
	for _, n := range names {
		g, err := policy.CompileGlob(n)
		if err != nil {
			t.Fatalf("glob %q: %v", n, err)
		}
		e.Names = append(e.Names, g)
	}
	return e
}

func rules(req policy.Require, entries ...policy.Entry) *policy.Rules {
	return &policy.Rules{Allow: entries, Require: req}
}

// settings returns permissive limits around r: no rate limit, no caps.
func settings(r *policy.Rules) *Settings {
	return &Settings{Rules: r, Rate: rate.Inf, HandshakeTimeout: 2 * time.Second}
}

// harness is a gate serving on a loopback listener.
type harness struct {
	g    *Gate
	addr string
	log  *logBuf
	obs  *testObs
	// stop cancels Serve's context and returns what Serve returned. It may
	// be called more than once.
	stop func() error
}

type gateConf struct {
	name         string
	listen       string
	hs           *policy.Handshakes
	fwd          forward.Forwarder
	summaryEvery time.Duration
	logTo        io.Writer
	obs          *testObs
}

type gateOpt func(*gateConf)

func withListen(addr string) gateOpt { return func(c *gateConf) { c.listen = addr } }

func withHandshakes(hs *policy.Handshakes) gateOpt { return func(c *gateConf) { c.hs = hs } }

func withForwarder(f forward.Forwarder) gateOpt { return func(c *gateConf) { c.fwd = f } }

func withSummaryEvery(d time.Duration) gateOpt { return func(c *gateConf) { c.summaryEvery = d } }

func withName(n string) gateOpt { return func(c *gateConf) { c.name = n } }

func withLogTo(w io.Writer) gateOpt { return func(c *gateConf) { c.logTo = w } }

func withObserver(o *testObs) gateOpt { return func(c *gateConf) { c.obs = o } }

// startGate serves a gate in front of upstream; t.Cleanup stops it and
// checks that Serve returned nil.
func startGate(t testing.TB, upstream string, s *Settings, opts ...gateOpt) *harness {
	t.Helper()
	conf := gateConf{name: "test", listen: "127.0.0.1:0"}
	for _, o := range opts {
		o(&conf)
	}
	h := &harness{log: &logBuf{}, obs: conf.obs}
	if h.obs == nil {
		h.obs = newTestObs()
	}
	var w io.Writer = h.log
	if conf.logTo != nil {
		w = conf.logTo
	}
	h.g = NewGate(Config{Name: conf.name, Upstream: upstream, Settings: s, Log: zerolog.New(w),
		Observer: h.obs, Handshakes: conf.hs, Forwarder: conf.fwd, SummaryEvery: conf.summaryEvery})
	ln, err := net.Listen("tcp", conf.listen)
	if err != nil {
		t.Fatalf("gate listen %s: %v", conf.listen, err)
	}
	h.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.g.Serve(ctx, ln) }()
	h.stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(testWait + s.DrainTimeout):
			return errors.New("Serve did not return after its context ended")
		}
	})
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return h
}

// admit dials the gate from src, sends a hello for name and returns the
// client and the upstream's end once the upstream has read the hello.
func admit(t testing.TB, h *harness, up *fakeUpstream, src, name string) (client, upstream *net.TCPConn) {
	t.Helper()
	c := dialFrom(t, src, h.addr)
	m := hello(t, name)
	write(t, c, m)
	u := up.next(t)
	expect(t, u, m)
	return c, u
}

// waitUntil polls cond until it holds.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
