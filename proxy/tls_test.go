package proxy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distgate/distgate/forward"
	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/wire"
)

// A test PKI: CAs and the certificates they issue, made in memory.

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

var serials struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serials.Lock()
	defer serials.Unlock()
	serials.n++
	return big.NewInt(1000 + serials.n)
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue signs tmpl (its key, serial and usage filled in here).
func (ca *testCA) issue(t testing.TB, tmpl *x509.Certificate, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = nextSerial()
	if tmpl.NotAfter.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func (ca *testCA) server(t testing.TB) tls.Certificate {
	return ca.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "gate"}, DNSNames: []string{"gate.lab", "127.0.0.1"}},
		x509.ExtKeyUsageServerAuth)
}

func (ca *testCA) client(t testing.TB, cn string) tls.Certificate {
	return ca.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn}}, x509.ExtKeyUsageClientAuth)
}

// serverConfig is a terminating gate's server side, as config builds it:
// a client certificate required and verified against ca.
func serverConfig(cert tls.Certificate, ca *testCA) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		ClientCAs: ca.pool, ClientAuth: tls.RequireAndVerifyClientCert, SessionTicketsDisabled: true}
}

// clientConfig is an OTP 25 client's side as far as Go can play it: TLS
// 1.2, the gate's name checked, the client certificate (if given) sent
// whatever CAs the gate says it accepts, as an OTP client sends its own.
func clientConfig(ca *testCA, certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: ca.pool, ServerName: "gate.lab", MaxVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if len(certs) == 0 {
				return &tls.Certificate{}, nil
			}
			return &certs[0], nil
		}}
}

// terminating returns settings for a terminating gate in front of entries.
func terminating(cfg *tls.Config, entries ...policy.Entry) *Settings {
	s := settings(rules(policy.RequireOTP25, entries...))
	s.TLS, s.TLSConfig = TLSTerminate, cfg
	return s
}

func withIdentities(t testing.TB, e policy.Entry, ids ...string) policy.Entry {
	t.Helper()
	for _, id := range ids {
		g, err := policy.CompileGlob(id)
		if err != nil {
			t.Fatal(err)
		}
		e.Identities = append(e.Identities, g)
	}
	return e
}

// dialTLS connects to the gate from src and runs the TLS handshake with
// cfg; the error is the handshake's (nil for a working session).
func dialTLS(t testing.TB, h *harness, src string, cfg *tls.Config) (*tls.Conn, *net.TCPConn, error) {
	t.Helper()
	raw := dialFrom(t, src, h.addr)
	tc := tls.Client(raw, cfg)
	return tc, raw, tc.Handshake()
}

// frame4 puts body behind a 4-byte length, as inet_tls_dist frames the
// handshake inside TLS (§12.1).
func frame4(t testing.TB, body []byte) []byte {
	t.Helper()
	f, err := wire.AppendFrame(nil, wire.HeaderTLS, body)
	if err != nil {
		t.Fatalf("frame: %v", err)
	}
	return f
}

// reframe4 turns a stream of 2-byte frames into the same frames behind
// 4-byte lengths.
func reframe4(t testing.TB, b []byte) []byte {
	t.Helper()
	var out []byte
	for len(b) > 0 {
		body, n, err := wire.SplitFrame(b, wire.HeaderTCP, 1<<16)
		if err != nil || n == 0 {
			t.Fatalf("reframe: %v", err)
		}
		out = append(out, frame4(t, body)...)
		b = b[n:]
	}
	return out
}

// reachTLS sends the first message for name inside TLS and returns the
// upstream's end once the node has read it, 2-byte framed.
func reachTLS(t testing.TB, tc *tls.Conn, up *fakeUpstream, name string) *net.TCPConn {
	t.Helper()
	m := hello(t, name)
	write(t, tc, frame4(t, m[2:]))
	u := up.next(t)
	expect(t, u, m)
	return u
}

// handshakeTLS4 plays the rest of the handshake between a TLS client and
// the node, each frame checked re-framed on the other side.
func handshakeTLS4(t testing.TB, tc *tls.Conn, u *net.TCPConn, cookie string) {
	t.Helper()
	nodeFrames := append(statusFrame(t, wire.StatusOK), challengeFrame(t)...)
	write(t, u, nodeFrames)
	expect(t, tc, reframe4(t, nodeFrames))
	reply := replyFrame(t, cookie)
	write(t, tc, reframe4(t, reply))
	expect(t, u, reply)
	ack := ackFrame(t)
	write(t, u, ack)
	expect(t, tc, reframe4(t, ack))
}

// A TLS client through a terminating gate: the first message and the
// handshake re-framed both ways (4-byte inside TLS, 2-byte to the node),
// then bytes unchanged both ways, half-closes passed on, and the lines
// say tls, identity, path tls and plaintext byte counts.
func TestTLSTerminateConversation(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "ca")
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), terminating(serverConfig(ca.server(t), ca),
		withIdentities(t, allow(t, []string{"127.0.0.2"}, "rem-*@*"), "rem@ops")))

	tc, raw, err := dialTLS(t, h, "127.0.0.2", clientConfig(ca, ca.client(t, "rem@ops")))
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	u := reachTLS(t, tc, up, "rem-1-app@127.0.0.1")
	handshakeTLS4(t, tc, u, testCookie)

	// After 'a': 4-byte frames both ways, passed as they are, in pieces
	// larger than a TLS record.
	toNode := randBytes(100 << 10)
	write(t, tc, toNode)
	expect(t, u, toNode)
	toClient := randBytes(70 << 10)
	write(t, u, toClient)
	expect(t, tc, toClient)

	// The admin status counts plaintext and names the path. (The count
	// moves just after the bytes are written: wait for it.)
	wantIn := hsIn(t, "rem-1-app@127.0.0.1") + int64(len(toNode))
	waitUntil(t, "the status to count the bytes in", func() bool {
		st := h.g.Status()
		return len(st.Conns) == 1 && st.Conns[0].In == wantIn
	})
	if st := h.g.Status(); st.Path != "tls" || st.Conns[0].Path != "tls" {
		t.Errorf("status = %+v, want path tls", st)
	}

	// The client's close_notify half-closes the node's side; the node's
	// FIN reaches the client as close_notify and EOF.
	if err := tc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := readToEnd(t, u); len(rest) != 0 || err != io.EOF {
		t.Fatalf("upstream after the client's close_notify: %d bytes, %v; want EOF", len(rest), err)
	}
	write(t, u, []byte("last words"))
	expect(t, tc, []byte("last words"))
	_ = u.Close()
	if rest, err := readToEnd(t, tc); len(rest) != 0 || err != io.EOF {
		t.Fatalf("client after the node closed: %d bytes, %v; want EOF", len(rest), err)
	}

	closed := h.log.waitFor(t, "closed", from(raw))
	adm := h.log.waitFor(t, "admitted", from(raw))
	hs := h.log.waitFor(t, "handshake", from(raw))
	for _, e := range []entry{adm, hs, closed} {
		if e.str("tls") != "terminate" || e.str("identity") != "rem@ops" || e.str("node") != "rem-1-app@127.0.0.1" {
			t.Errorf("%s line = %v, want tls terminate, identity rem@ops, the node", e.str("message"), e)
		}
	}
	if hs.str("outcome") != "ok" || closed.str("path") != "tls" || closed.has("reason") {
		t.Errorf("handshake %v, closed %v: want outcome ok, path tls, no reason", hs, closed)
	}
	// Plaintext, as the node sent and received it.
	in := hsIn(t, "rem-1-app@127.0.0.1") + int64(len(toNode))
	out := hsOut(t) + int64(len(toClient)) + int64(len("last words"))
	if closed.num("bytes_in") != in || closed.num("bytes_out") != out {
		t.Errorf("closed bytes %d/%d, want %d/%d", closed.num("bytes_in"), closed.num("bytes_out"), in, out)
	}
	if v := h.obs.view(); v.in != in || v.out != out || v.active != 0 || v.decided[policy.Admitted] != 1 {
		t.Errorf("observer: moved %d/%d active %d decided %v; want %d/%d, 0, one admitted", v.in, v.out, v.active, v.decided, in, out)
	}
}

// The TLS handshake fails: no certificate, one from another CA, an expired
// one, an old TLS version. Each is tls_failed, counts as a failure, and
// the node is never dialled.
func TestTLSFailed(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "ca")
	other := newTestCA(t, "other")
	up := newUpstream(t, "127.0.0.1:0")
	s := terminating(serverConfig(ca.server(t), ca), allow(t, []string{"127.0.0.2"}))
	s.Ban = banRules(10)
	h := startGate(t, up.addr(), s)

	expired := ca.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "old@ops"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}, x509.ExtKeyUsageClientAuth)
	tls11 := clientConfig(ca, ca.client(t, "rem@ops"))
	tls11.MinVersion, tls11.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	for _, tt := range []struct {
		name string
		cfg  *tls.Config
		err  string // in the denied line's error
	}{
		{"no certificate", clientConfig(ca), "certificate"},
		{"another CA", clientConfig(ca, other.client(t, "rem@ops")), "unknown authority"},
		{"expired", clientConfig(ca, expired), "expired"},
		{"tls 1.1", tls11, "version"},
	} {
		tc, raw, err := dialTLS(t, h, "127.0.0.2", tt.cfg)
		if err == nil {
			// A client that finished its side first learns on its read.
			_, err = tc.Read(make([]byte, 1))
		}
		if err == nil {
			t.Errorf("%s: the client's TLS session works", tt.name)
		}
		e := h.log.waitFor(t, "denied", from(raw))
		if e.str("reason") != "tls_failed" || e.str("tls") != "terminate" || !strings.Contains(e.str("error"), tt.err) || e.has("identity") {
			t.Errorf("%s: denied line = %v, want reason tls_failed with %q in the error", tt.name, e, tt.err)
		}
	}
	if n := up.accepts.Load(); n != 0 {
		t.Errorf("the upstream was dialled %d times, want 0", n)
	}
	if v := h.obs.view(); v.decided[policy.TLSFailed] != 4 {
		t.Errorf("Decided = %v, want 4 tls_failed", v.decided)
	}
	if f, _ := h.g.bans.Sizes(); f != 1 {
		t.Errorf("%d sources with failures, want 1 (tls_failed counts)", f)
	}
}

// First bytes that are not a ClientHello on a terminating gate, and a TLS
// ClientHello on a plain gate: bad_handshake, the node never dialled. A
// ClientHello cut short and left there: handshake_timeout.
func TestTLSBadFirstBytes(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "ca")
	up := newUpstream(t, "127.0.0.1:0")
	s := terminating(serverConfig(ca.server(t), ca), allow(t, []string{"127.0.0.2"}))
	s.HandshakeTimeout = 300 * time.Millisecond
	h := startGate(t, up.addr(), s)

	for _, send := range [][]byte{hello(t, "a@h"), wire.ScannerProbe, []byte("GET / HTTP/1.0\r\n\r\n")} {
		c := dialFrom(t, "127.0.0.2", h.addr)
		write(t, c, send)
		expectClosed(t, c) // RST: the gate read only the first record header
		if e := h.log.waitFor(t, "denied", from(c)); e.str("reason") != "bad_handshake" || e.str("tls") != "terminate" {
			t.Errorf("first bytes % x: %v, want bad_handshake", send[:4], e)
		}
	}
	c := dialFrom(t, "127.0.0.2", h.addr)
	write(t, c, []byte{0x16, 0x03, 0x01, 0x01, 0x00, 0x01}) // a record that never ends
	expectSilentClose(t, c, false)
	if e := h.log.waitFor(t, "denied", from(c)); e.str("reason") != "handshake_timeout" {
		t.Errorf("a stalled ClientHello: %v, want handshake_timeout", e)
	}
	// A whole ClientHello, then silence: the TLS handshake runs out of time.
	c = dialFrom(t, "127.0.0.2", h.addr)
	write(t, c, goFirstFlight(t, "gate.lab"))
	if e := h.log.waitFor(t, "denied", from(c)); e.str("reason") != "handshake_timeout" || e.str("tls") != "terminate" {
		t.Errorf("a client silent after its ClientHello: %v, want handshake_timeout", e)
	}

	// A plain gate: a TLS client's first record is bad_handshake.
	plain := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))
	_, raw, err := dialTLS(t, plain, "127.0.0.2", clientConfig(ca, ca.client(t, "rem@ops")))
	if err == nil {
		t.Error("a TLS handshake with a plain gate worked")
	}
	if e := plain.log.waitFor(t, "denied", from(raw)); e.str("reason") != "bad_handshake" || e.has("tls") {
		t.Errorf("TLS on a plain gate: %v, want bad_handshake and no tls field", e)
	}
	if n := up.accepts.Load(); n != 0 {
		t.Errorf("the upstream was dialled %d times, want 0", n)
	}
}

// Identities: a certificate no entry admits is refused right after the TLS
// handshake, before a first message is read; an identity opens only its
// own entry's names; a reload that drops an identity revokes its live
// connections.
func TestTLSIdentity(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "ca")
	up := newUpstream(t, "127.0.0.1:0")
	cfg := serverConfig(ca.server(t), ca)
	ops := withIdentities(t, allow(t, []string{"127.0.0.2"}, "rem-*@*"), "rem@ops", "*.ops.example")
	ci := withIdentities(t, allow(t, []string{"127.0.0.2"}, "rpc-*@*"), "ci@build")
	s := terminating(cfg, ops, ci)
	s.Ban = banRules(10)
	h := startGate(t, up.addr(), s)

	// Not listed: denied without reading a first message (none is sent).
	tc, raw, err := dialTLS(t, h, "127.0.0.2", clientConfig(ca, ca.client(t, "eve@else")))
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	if rest, err := readToEnd(t, tc); len(rest) != 0 || err == nil {
		t.Errorf("client with an unlisted identity got %d bytes, %v", len(rest), err)
	}
	e := h.log.waitFor(t, "denied", from(raw))
	if e.str("reason") != "identity_not_allowed" || e.str("identity") != "eve@else" || e.str("tls") != "terminate" || e.has("node") {
		t.Errorf("denied line = %v, want identity_not_allowed for eve@else, before any name", e)
	}

	// A SAN matches; the identity opens rem-*, not rpc-*.
	san := ca.issue(t, &x509.Certificate{DNSNames: []string{"laptop.ops.example"},
		URIs: []*url.URL{{Scheme: "urn", Opaque: "x"}}}, x509.ExtKeyUsageClientAuth)
	tc, raw, err = dialTLS(t, h, "127.0.0.2", clientConfig(ca, san))
	if err != nil {
		t.Fatal(err)
	}
	write(t, tc, frame4(t, hello(t, "rpc-1-app@h")[2:]))
	if rest, err := readToEnd(t, tc); len(rest) != 0 || err == nil {
		t.Errorf("client got %d bytes, %v", len(rest), err)
	}
	if e := h.log.waitFor(t, "denied", from(raw)); e.str("reason") != "name_not_allowed" || e.str("identity") != "laptop.ops.example" {
		t.Errorf("denied line = %v, want name_not_allowed with the SAN as identity", e)
	}

	// The ci identity's own names pass; a reload that drops ci revokes it.
	tc, raw, err = dialTLS(t, h, "127.0.0.2", clientConfig(ca, ca.client(t, "ci@build")))
	if err != nil {
		t.Fatal(err)
	}
	u := reachTLS(t, tc, up, "rpc-2-app@h")
	handshakeTLS4(t, tc, u, testCookie)
	pass4 := []byte{0, 0, 0, 0}
	write(t, tc, pass4)
	expect(t, u, pass4)
	if n := h.g.Update(terminating(cfg, ops)); n != 1 {
		t.Errorf("Update revoked %d connections, want 1", n)
	}
	expectClosed(t, u)
	if c := h.log.waitFor(t, "closed", from(raw)); c.str("reason") != "revoked" || c.str("path") != "tls" {
		t.Errorf("closed line = %v, want revoked on path tls", c)
	}
	if n := up.accepts.Load(); n != 1 {
		t.Errorf("the upstream was dialled %d times, want 1 (only the admitted one)", n)
	}
	if f, _ := h.g.bans.Sizes(); f != 1 {
		t.Errorf("%d sources with failures, want 1 (identity_not_allowed and name_not_allowed count)", f)
	}
}

// A reload with a new certificate: new connections get it, a live one goes
// on with the old session.
func TestTLSReloadCertificate(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "ca")
	up := newUpstream(t, "127.0.0.1:0")
	first, second := ca.server(t), ca.server(t)
	entries := []policy.Entry{allow(t, []string{"127.0.0.2"})}
	h := startGate(t, up.addr(), terminating(serverConfig(first, ca), entries...))

	live, _, err := dialTLS(t, h, "127.0.0.2", clientConfig(ca, ca.client(t, "a")))
	if err != nil {
		t.Fatal(err)
	}
	if got := live.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(first.Leaf.SerialNumber) != 0 {
		t.Fatalf("served serial %v, want %v", got, first.Leaf.SerialNumber)
	}
	u := reachTLS(t, live, up, "a@h")
	handshakeTLS4(t, live, u, testCookie)

	if n := h.g.Update(terminating(serverConfig(second, ca), entries...)); n != 0 {
		t.Errorf("Update revoked %d connections, want 0", n)
	}
	next, _, err := dialTLS(t, h, "127.0.0.2", clientConfig(ca, ca.client(t, "b")))
	if err != nil {
		t.Fatal(err)
	}
	if got := next.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(second.Leaf.SerialNumber) != 0 {
		t.Errorf("after the reload: served serial %v, want %v", got, second.Leaf.SerialNumber)
	}
	ping := []byte{0, 0, 0, 2, 'h', 'i'}
	write(t, live, ping)
	expect(t, u, ping)
	write(t, u, ping)
	expect(t, live, ping)
}

// The drain and a ban stop a terminated pair like any other.
func TestTLSStop(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "ca")
	up := newUpstream(t, "127.0.0.1:0")
	s := terminating(serverConfig(ca.server(t), ca), allow(t, []string{"127.0.0.2"}))
	s.DrainTimeout = 50 * time.Millisecond
	h := startGate(t, up.addr(), s)
	tc, raw, err := dialTLS(t, h, "127.0.0.2", clientConfig(ca, ca.client(t, "a")))
	if err != nil {
		t.Fatal(err)
	}
	u := reachTLS(t, tc, up, "a@h")
	handshakeTLS4(t, tc, u, testCookie)
	if _, err := h.g.Ban(raw.LocalAddr().(*net.TCPAddr).AddrPort().Addr(), time.Minute); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, u)
	if c := h.log.waitFor(t, "closed", from(raw)); c.str("reason") != "banned" || c.str("path") != "tls" {
		t.Errorf("closed line = %v, want reason banned on path tls", c)
	}
	if err := h.stop(); err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// passing returns settings for a passthrough gate.
func passing(entries ...policy.Entry) *Settings {
	s := settings(rules(policy.RequireNone, entries...))
	s.TLS = TLSPassthrough
	return s
}

func withSNIs(t testing.TB, e policy.Entry, names ...string) policy.Entry {
	t.Helper()
	for _, n := range names {
		g, err := policy.CompileGlob(n)
		if err != nil {
			t.Fatal(err)
		}
		e.SNI = append(e.SNI, g)
	}
	return e
}

// Passthrough: a ClientHello whose server name an entry admits goes to the
// node byte for byte (fragmented too), and the TLS session runs end to end
// through the gate; a wrong name, no name, other first bytes are refused
// before the node is dialled.
func TestTLSPassthrough(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "ca")
	up := newUpstream(t, "127.0.0.1:0")
	s := passing(withSNIs(t, allow(t, []string{"127.0.0.2"}), "gate.lab", "*.example"), allow(t, []string{"127.0.0.3"}))
	s.HandshakeTimeout = 300 * time.Millisecond
	h := startGate(t, up.addr(), s)

	// A real session end to end: the upstream's end plays the node's TLS
	// server.
	raw := dialFrom(t, "127.0.0.2", h.addr)
	serverDone := make(chan error, 1)
	go func() {
		u := up.next(t)
		srv := tls.Server(u, &tls.Config{Certificates: []tls.Certificate{ca.server(t)}})
		if err := srv.Handshake(); err != nil {
			serverDone <- err
			return
		}
		if srv.ConnectionState().ServerName != "gate.lab" {
			serverDone <- errors.New("the node saw another server name")
			return
		}
		_, err := io.Copy(srv, srv) // echo until the client's close_notify
		_ = srv.CloseWrite()
		_ = u.Close()
		serverDone <- err
	}()
	tc := tls.Client(raw, clientConfig(ca))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS through a passthrough gate: %v", err)
	}
	data := randBytes(50 << 10)
	write(t, tc, data)
	expect(t, tc, data)
	_ = tc.CloseWrite()
	if rest, err := readToEnd(t, tc); len(rest) != 0 || err != io.EOF {
		t.Errorf("client after close: %d bytes, %v", len(rest), err)
	}
	_ = raw.Close()
	if err := <-serverDone; err != nil {
		t.Errorf("the node's side: %v", err)
	}
	adm := h.log.waitFor(t, "admitted", from(raw))
	closed := h.log.waitFor(t, "closed", from(raw))
	for _, e := range []entry{adm, closed} {
		if e.str("tls") != "passthrough" || e.str("sni") != "gate.lab" || e.has("node") || e.has("identity") {
			t.Errorf("%s line = %v, want tls passthrough, sni gate.lab, no node", e.str("message"), e)
		}
	}
	if closed.str("path") != "user" || closed.has("outcome") || closed.num("bytes_in") < int64(len(data)) {
		t.Errorf("closed line = %v, want path user, no outcome, the bytes", closed)
	}
	if len(h.log.all(t, "handshake", nil)) != 0 {
		t.Error("a passthrough connection has a handshake line; there is no watch")
	}

	// Byte for byte, in small records, with what follows left in order.
	frag := goFirstFlight(t, "node1.example")
	frag = refragmentHello(t, frag, 50)
	c := dialFrom(t, "127.0.0.2", h.addr)
	write(t, c, append(bytes.Clone(frag), "after"...))
	u := up.next(t)
	expect(t, u, append(bytes.Clone(frag), "after"...))
	if e := h.log.waitFor(t, "admitted", from(c)); e.str("sni") != "node1.example" {
		t.Errorf("admitted line = %v, want sni node1.example", e)
	}

	// Refused before the node is dialled.
	before := up.accepts.Load()
	for _, tt := range []struct {
		name, src string
		send      []byte
		reason    string
	}{
		{"wrong name", "127.0.0.2", goFirstFlight(t, "other.lab"), "name_not_allowed"},
		{"no name", "127.0.0.2", goFirstFlight(t, ""), "name_not_allowed"},
		{"plain distribution", "127.0.0.2", hello(t, "a@h"), "bad_handshake"},
		{"cut short", "127.0.0.2", goFirstFlight(t, "gate.lab")[:40], "handshake_timeout"},
	} {
		c := dialFrom(t, tt.src, h.addr)
		write(t, c, tt.send)
		expectClosed(t, c) // FIN, or RST for bytes left unread
		if e := h.log.waitFor(t, "denied", from(c)); e.str("reason") != tt.reason || e.str("tls") != "passthrough" {
			t.Errorf("%s: denied line = %v, want %s", tt.name, e, tt.reason)
		}
	}
	if n := up.accepts.Load(); n != before {
		t.Errorf("the upstream was dialled %d more times, want 0", n-before)
	}
	// An entry without sni admits no name at all.
	c = dialFrom(t, "127.0.0.3", h.addr)
	write(t, c, goFirstFlight(t, ""))
	up.next(t)
	h.log.waitFor(t, "admitted", from(c))
}

// goFirstFlight is Go's TLS client's first flight for serverName.
func goFirstFlight(t testing.TB, serverName string) []byte {
	t.Helper()
	srv, cli := net.Pipe()
	defer srv.Close()
	go func() {
		_ = tls.Client(cli, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}).Handshake()
		_ = cli.Close()
	}()
	_ = srv.SetDeadline(time.Now().Add(testWait))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(srv, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(srv, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// refragmentHello cuts a one-record first flight into records of at most
// size bytes.
func refragmentHello(t testing.TB, one []byte, size int) []byte {
	t.Helper()
	msg := one[5:]
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, 0x16, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// The Handle a terminated pair gives the session.
var _ forward.Handle = (*tlsPair)(nil)
