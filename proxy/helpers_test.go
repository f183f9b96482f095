package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"maps"
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
	outcomes       map[wire.Outcome]int
	closed         map[string]int // by CloseReason
	bans           int
	bansActive     int

	// onMoved, if set before the gate starts, runs at the start of Moved,
	// on the goroutine that ends the connection: a test can hold the
	// connection's end there.
	onMoved func()
}

func newTestObs() *testObs {
	return &testObs{decided: make(map[policy.Reason]int), outcomes: make(map[wire.Outcome]int), closed: make(map[string]int)}
}

func (o *testObs) Handshake(out wire.Outcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.outcomes[out]++
}

func (o *testObs) Closed(r policy.Reason, out wire.Outcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed[CloseReason(r, out)]++
}

func (o *testObs) Banned() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.bans++
}

func (o *testObs) BansActive(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.bansActive = n
}

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
	decided          map[policy.Reason]int
	active, peak     int
	in, out          int64
	suppressed       int
	outcomes         map[wire.Outcome]int
	closed           map[string]int
	bans, bansActive int
}

func (o *testObs) view() obsView {
	o.mu.Lock()
	defer o.mu.Unlock()
	return obsView{decided: maps.Clone(o.decided), active: o.active, peak: o.peak, in: o.in, out: o.out,
		suppressed: o.suppressed, outcomes: maps.Clone(o.outcomes), closed: maps.Clone(o.closed),
		bans: o.bans, bansActive: o.bansActive}
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
	dial         func(ctx context.Context, addr string) (net.Conn, error)
	onBans       func()
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

func withDial(d func(ctx context.Context, addr string) (net.Conn, error)) gateOpt {
	return func(c *gateConf) { c.dial = d }
}

func withOnBans(f func()) gateOpt { return func(c *gateConf) { c.onBans = f } }

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
		Observer: h.obs, Handshakes: conf.hs, Forwarder: conf.fwd, SummaryEvery: conf.summaryEvery,
		Dial: conf.dial, OnBansChanged: conf.onBans})
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

// admit dials the gate from src, sends a hello for name, plays both ends
// of the rest of the handshake through the gate (handshake) and returns
// the client and the upstream's end, ready to forward.
func admit(t testing.TB, h *harness, up *fakeUpstream, src, name string) (client, upstream *net.TCPConn) {
	t.Helper()
	c, u := reach(t, h, up, src, name)
	handshake(t, c, u, testCookie)
	return c, u
}

// reach dials the gate from src, sends a hello for name and returns the
// client and the upstream's end once the upstream has read the hello.
func reach(t testing.TB, h *harness, up *fakeUpstream, src, name string) (client, upstream *net.TCPConn) {
	t.Helper()
	c := dialFrom(t, src, h.addr)
	m := hello(t, name)
	write(t, c, m)
	u := up.next(t)
	expect(t, u, m)
	return c, u
}

// The fake node. A test plays the node on the upstream's end of a
// connection (and the client on the client's end), with frames built by
// wire's encoders, so the gate's watch sees what a real handshake sends
// (erlang-dist-facts.md §11.1).

const (
	testCookie = "c0ok"
	nodeName   = "app@127.0.0.1"
	// The challenges each side sends; any numbers do.
	nodeChallenge   uint32 = 0x8e8f2327
	clientChallenge uint32 = 0x4af3223a
)

// frame2 puts body behind a 2-byte length.
func frame2(t testing.TB, body []byte) []byte {
	t.Helper()
	f, err := wire.AppendFrame(nil, wire.HeaderTCP, body)
	if err != nil {
		t.Fatalf("frame: %v", err)
	}
	return f
}

// statusFrame is the node's status (ok, not_allowed, alive, ...) or the
// client's answer to alive (true, false).
func statusFrame(t testing.TB, word string) []byte {
	t.Helper()
	b, err := wire.AppendStatus(nil, wire.Status{Text: []byte(word)})
	if err != nil {
		t.Fatalf("status %q: %v", word, err)
	}
	return frame2(t, b)
}

// namedFrame is the node's named: grant of a dynamic name.
func namedFrame(t testing.TB, name string) []byte {
	t.Helper()
	b, err := wire.AppendStatus(nil, wire.Status{Text: []byte(wire.StatusNamed), Name: []byte(name), Creation: 7})
	if err != nil {
		t.Fatalf("named: %v", err)
	}
	return frame2(t, b)
}

// challengeFrame is the node's 'N' challenge.
func challengeFrame(t testing.TB) []byte {
	t.Helper()
	b, err := wire.AppendChallenge(nil, wire.Challenge{Tag: wire.TagNew, Flags: wire.DefaultHiddenFlags | wire.FlagPublished,
		Challenge: nodeChallenge, Creation: 0x7d4bd31c, Name: []byte(nodeName)})
	if err != nil {
		t.Fatalf("challenge: %v", err)
	}
	return frame2(t, b)
}

// replyFrame is the client's 'r', its digest made with cookie.
func replyFrame(t testing.TB, cookie string) []byte {
	t.Helper()
	return frame2(t, wire.AppendReply(nil, wire.Reply{Challenge: clientChallenge, Digest: wire.Digest([]byte(cookie), nodeChallenge)}))
}

// ackFrame is the node's 'a'.
func ackFrame(t testing.TB) []byte {
	t.Helper()
	return frame2(t, wire.AppendAck(nil, wire.Ack{Digest: wire.Digest([]byte(testCookie), clientChallenge)}))
}

// pass writes b on one end and expects it, byte for byte, at the other.
func pass(t testing.TB, from, to *net.TCPConn, b []byte) {
	t.Helper()
	write(t, from, b)
	expect(t, to, b)
}

// handshake plays the rest of a handshake whose first message the node
// has read: the node's status and challenge (in one write, so the gate may
// read both at once), the client's reply made with cookie, the node's ack.
// Each must reach the other end intact.
func handshake(t testing.TB, c, u *net.TCPConn, cookie string) {
	t.Helper()
	pass(t, u, c, append(statusFrame(t, wire.StatusOK), challengeFrame(t)...))
	pass(t, c, u, replyFrame(t, cookie))
	pass(t, u, c, ackFrame(t))
}

// hsIn and hsOut are the bytes a handshake played by admit moves each way
// (in: client to node), the first message for name included.
func hsIn(t testing.TB, name string) int64 {
	return int64(len(hello(t, name)) + len(replyFrame(t, testCookie)))
}

func hsOut(t testing.TB) int64 {
	return int64(len(statusFrame(t, wire.StatusOK)) + len(challengeFrame(t)) + len(ackFrame(t)))
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
