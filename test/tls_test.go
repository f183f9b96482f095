// End-to-end tests of TLS distribution at the gate (design.md, TLS
// distribution; erlang-dist-facts.md §12): real OTP 25 clients started with
// -proto_dist inet_tls, certificates made for each test.

package test

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/testenv"
)

// tlsPKI is a test's certificates: the CA, the gate's certificate (DNS SANs
// 127.0.0.1 and gate.lab: OTP clients check the host part they dial as a
// DNS name, §12.4) and a client certificate with CN rem@ops.
type tlsPKI struct {
	ca     *testenv.CA
	gate   testenv.Cert
	client testenv.Cert
}

func newTLSPKI(t *testing.T) tlsPKI {
	t.Helper()
	ca := testenv.NewTestCA(t, "distgate test CA")
	return tlsPKI{
		ca:     ca,
		gate:   ca.MustIssue(t, "gate", testenv.CertSpec{CN: "gate", DNS: []string{"127.0.0.1", "gate.lab"}}),
		client: ca.MustIssue(t, "rem", testenv.CertSpec{CN: "rem@ops", DNS: []string{"laptop.ops.example"}}),
	}
}

// terminateGate is the app topology's gate, terminating TLS with pk's
// certificate and client CA, with the allow entries given.
func terminateGate(p int, pk tlsPKI, allow ...config.Allow) *config.File {
	f := testenv.AppGate("tls", p, allow...)
	f.Gate[0].TLS = config.TLS{Mode: "terminate", Cert: pk.gate.Path, Key: pk.gate.KeyPath, ClientCA: pk.ca.Path}
	return f
}

// tlsClient is a hidden client that dials the app through port p with TLS
// distribution, presenting cert (nil: none) and checking the gate's
// certificate against ca.
func tlsClient(t *testing.T, name string, p int, ca *testenv.CA, cert *testenv.Cert) testenv.Erl {
	t.Helper()
	e := testenv.Client(name, p)
	e.TLS = testenv.DistOptFile(t, testenv.DistOpts{CA: ca.Path, Client: cert})
	return e
}

// An inet_tls client with a valid certificate: rpc:call works through the
// gate to a plain node, and a 64 MiB binary goes there and back intact.
// The lines say tls, the identity, path tls and plaintext byte counts.
func TestTLSTerminateRPC(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	testenv.StartNode(t, testenv.App(p))
	pk := newTLSPKI(t)
	g := testenv.StartGate(t, terminateGate(p, pk, config.Allow{Sources: []string{"127.0.0.1/32"},
		Names: []string{"rem-*@*"}, Identities: []string{"rem@ops"}}))

	c := tlsClient(t, "rem-ab12-app@127.0.0.1", p, pk.ca, &pk.client)
	out := testenv.MustRun(t, c, `io:format("node ~p~n", [rpc:call(Node, erlang, node, [])]),
Big = crypto:strong_rand_bytes(64 bsl 20),
Back = rpc:call(Node, erlang, iolist_to_binary, [[Big]], 50000),
io:format("same ~p ~p~n", [Back =:= Big, byte_size(Big)])`)
	if !strings.Contains(out, "node 'app@127.0.0.1'") || !strings.Contains(out, "same true 67108864") {
		t.Fatalf("client output:\n%s", out)
	}
	is := testenv.NodeIs("rem-ab12-app@127.0.0.1")
	a := g.Wait(testenv.Msg("admitted"), is)
	h := g.Wait(testenv.Msg("handshake"), is)
	cl := g.Wait(testenv.Msg("closed"), is)
	for _, l := range []testenv.Line{a, h, cl} {
		if l.Str("tls") != "terminate" || l.Str("identity") != "rem@ops" {
			t.Errorf("%s line = %v, want tls terminate, identity rem@ops", l.Str("message"), l)
		}
	}
	if h.Str("outcome") != "ok" || cl.Str("path") != "tls" || cl.Str("outcome") != "ok" {
		t.Errorf("handshake %v, closed %v: want outcome ok, path tls", h, cl)
	}
	// Plaintext both ways: 64 MiB each, plus the distribution's framing.
	if in, out := cl.Num("bytes_in"), cl.Num("bytes_out"); in < 64<<20 || out < 64<<20 || in > 65<<20 || out > 65<<20 {
		t.Errorf("closed bytes_in %v bytes_out %v, want a little over 64 MiB each", in, out)
	}
}

// The TLS handshake fails (no client certificate, one from another CA, an
// expired one): tls_failed, and the node sees nothing. A valid certificate
// whose identity no entry lists: identity_not_allowed, and the node sees
// nothing either. Then a listed one gets through, and orders the node's
// output.
func TestTLSRefused(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	n := testenv.StartNode(t, testenv.App(p))
	pk := newTLSPKI(t)
	f := terminateGate(p, pk, config.Allow{Sources: []string{"127.0.0.0/8"}, Identities: []string{"rem@ops", "*.ops.example"}})
	f.Gate[0].Ban.After = testenv.Ptr(0) // four failures from one source: no ban in the way
	g := testenv.StartGate(t, f)

	other := testenv.NewTestCA(t, "another CA")
	stranger := other.MustIssue(t, "stranger", testenv.CertSpec{CN: "rem@ops"})
	expired := pk.ca.MustIssue(t, "expired", testenv.CertSpec{CN: "rem@ops",
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	eve := pk.ca.MustIssue(t, "eve", testenv.CertSpec{CN: "eve@else", DNS: []string{"eve.example"}})
	for _, tt := range []struct {
		name   string
		cert   *testenv.Cert
		reason string
		err    string
	}{
		{"no certificate", nil, "tls_failed", "certificate"},
		{"another CA", &stranger, "tls_failed", "unknown authority"},
		{"expired", &expired, "tls_failed", "expired"},
		{"identity not listed", &eve, "identity_not_allowed", ""},
	} {
		name := "bad" + strconv.Itoa(len(tt.name)) + "@127.0.0.1" // one name per case
		c := tlsClient(t, name, p, pk.ca, tt.cert).Bind("127.0.0.3")
		if r := testenv.Ping(t, c); r != "pang" {
			t.Errorf("%s: ping = %s, want pang", tt.name, r)
		}
		d := g.Wait(testenv.Msg("denied"), testenv.Reason(tt.reason), testenv.From("127.0.0.3"),
			func(l testenv.Line) bool { return strings.Contains(l.Str("error"), tt.err) })
		if d.Str("tls") != "terminate" || d.Str("node") != "" {
			t.Errorf("%s: denied line = %v, want tls terminate and no node (nothing read inside TLS)", tt.name, d)
		}
		if tt.reason == "identity_not_allowed" && d.Str("identity") != "eve@else" {
			t.Errorf("%s: denied line = %v, want identity eve@else", tt.name, d)
		}
	}
	if r := testenv.Ping(t, tlsClient(t, "good@127.0.0.1", p, pk.ca, &pk.client)); r != "pong" {
		t.Fatalf("good@127.0.0.1: ping = %s, want pong", r)
	}
	n.QuietUntil("nodeup 'good@127.0.0.1'")
	if c := g.Count(testenv.Msg("admitted")); c != 1 {
		t.Errorf("%d admitted lines, want 1", c)
	}
}

// A plain client against a terminating gate, and a TLS client against a
// plain gate: bad_handshake, and nothing reaches the node.
func TestTLSMixedUp(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	n := testenv.StartNode(t, testenv.App(p))
	pk := newTLSPKI(t)
	g := testenv.StartGate(t, terminateGate(p, pk, testenv.Allow([]string{"127.0.0.0/8"})))

	if r := testenv.Ping(t, testenv.Client("plain@127.0.0.1", p).Bind("127.0.0.3")); r != "pang" {
		t.Errorf("a plain client through a terminating gate: ping = %s, want pang", r)
	}
	d := g.Wait(testenv.Msg("denied"), testenv.From("127.0.0.3"))
	if d.Str("reason") != "bad_handshake" || d.Str("tls") != "terminate" {
		t.Errorf("plain client: denied line = %v, want bad_handshake", d)
	}
	if r := testenv.Ping(t, tlsClient(t, "flush1@127.0.0.1", p, pk.ca, &pk.client)); r != "pong" {
		t.Fatalf("flush1: ping = %s, want pong", r)
	}
	n.QuietUntil("nodeup 'flush1@127.0.0.1'")
	if code := g.Shutdown(); code != 0 {
		t.Fatalf("distgate exit code %d", code)
	}

	n.Mark = len(n.Out.All())
	plain := testenv.StartGate(t, testenv.AppGate("plain", p, testenv.Allow([]string{"127.0.0.0/8"})))
	if r := testenv.Ping(t, tlsClient(t, "tls@127.0.0.1", p, pk.ca, &pk.client).Bind("127.0.0.3")); r != "pang" {
		t.Errorf("a TLS client through a plain gate: ping = %s, want pang", r)
	}
	d = plain.Wait(testenv.Msg("denied"), testenv.From("127.0.0.3"))
	if d.Str("reason") != "bad_handshake" || d.Str("tls") != "" {
		t.Errorf("TLS client: denied line = %v, want bad_handshake and no tls field", d)
	}
	if r := testenv.Ping(t, testenv.Client("flush2@127.0.0.1", p)); r != "pong" {
		t.Fatalf("flush2: ping = %s, want pong", r)
	}
	n.QuietUntil("nodeup 'flush2@127.0.0.1'")
}

// A wrong cookie inside TLS: the gate sees the node close after 'r'
// (auth_failed) and the node logs the attempt; with cookie_file (applied by
// a reload), the gate cuts it before 'r' reaches the node, which says
// nothing.
func TestTLSWrongCookie(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	n, err := testenv.App(p).StartNode(t.TempDir(), false) // unwatched: what an operator sees
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(syscall.SIGTERM, 10*time.Second) })
	pk := newTLSPKI(t)
	f := terminateGate(p, pk, testenv.Allow([]string{"127.0.0.0/8"}))
	g := testenv.StartGate(t, f)

	bad := tlsClient(t, "bad@127.0.0.1", p, pk.ca, &pk.client).Bind("127.0.0.3")
	bad.Cookie = "not-the-cookie"
	if r := testenv.Ping(t, bad); r != "pang" {
		t.Fatalf("wrong cookie: ping = %s, want pang", r)
	}
	h := g.Wait(testenv.Msg("handshake"), testenv.NodeIs("bad@127.0.0.1"))
	if h.Str("outcome") != "auth_failed" || h.Str("tls") != "terminate" || h.Str("identity") != "rem@ops" {
		t.Errorf("handshake line = %v, want auth_failed over tls", h)
	}
	err = n.WaitFor("the node's report of the wrong cookie", testenv.WaitTimeout, func(ls []string) bool {
		return slices.ContainsFunc(ls, func(l string) bool { return strings.Contains(l, "Invalid challenge reply") })
	})
	if err != nil {
		t.Fatal(err)
	}

	cookie := filepath.Join(t.TempDir(), "cookie")
	if err := os.WriteFile(cookie, []byte(testenv.Cookie+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.Gate[0].CookieFile = cookie
	g.Reload(f)
	g.Wait(testenv.Msg("reloaded"))
	seen := len(n.Out.All())
	bad2 := bad
	bad2.Name = "bad2@127.0.0.1"
	if r := testenv.Ping(t, bad2); r != "pang" {
		t.Fatalf("wrong cookie, cookie at the gate: ping = %s, want pang", r)
	}
	h = g.Wait(testenv.Msg("handshake"), testenv.NodeIs("bad2@127.0.0.1"))
	if h.Str("outcome") != "auth_failed" || !strings.Contains(h.Str("error"), "digest") {
		t.Errorf("handshake line = %v, want auth_failed with a digest error", h)
	}
	if r := testenv.Ping(t, tlsClient(t, "good@127.0.0.1", p, pk.ca, &pk.client)); r != "pong" {
		t.Fatalf("right cookie: ping = %s, want pong", r)
	}
	g.Wait(testenv.Msg("handshake"), testenv.NodeIs("good@127.0.0.1"), testenv.Field("outcome", "ok"))
	time.Sleep(time.Second) // nothing to wait on: the check is that no line comes
	for _, l := range n.Out.All()[seen:] {
		t.Errorf("the node printed %q; an attempt cut at the gate must leave it silent", l)
	}
}

// replaceFile writes the contents of from over path atomically (a new file
// renamed into place), with mode.
func replaceFile(t *testing.T, path, from string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".new", b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// servedSerial runs a TLS handshake with the gate from Go and returns the
// serial number of the certificate it served.
func servedSerial(t *testing.T, addr string, pk tlsPKI) string {
	t.Helper()
	kp, err := pk.client.KeyPair()
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: testenv.WaitTimeout}
	c, err := tls.DialWithDialer(&d, "tcp", addr, &tls.Config{RootCAs: pk.ca.Pool(), ServerName: "gate.lab",
		Certificates: []tls.Certificate{kp}, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS handshake with the gate: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// SIGHUP with new certificate files: new connections get the new
// certificate (its serial), a live TLS connection goes on.
func TestTLSReloadCertificate(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	n := testenv.StartNode(t, testenv.App(p))
	pk := newTLSPKI(t)
	f := terminateGate(p, pk, testenv.Allow([]string{"127.0.0.0/8"}))
	g := testenv.StartGate(t, f)
	addr := testenv.Addr(testenv.GateIP, p)

	if got, want := servedSerial(t, addr, pk), pk.gate.Leaf.SerialNumber.String(); got != want {
		t.Fatalf("served serial %s, want %s", got, want)
	}
	sh := testenv.StartShell(t, tlsClient(t, "live@127.0.0.1", p, pk.ca, &pk.client))
	if r := sh.Do("node"); r != "'app@127.0.0.1'" {
		t.Fatalf("live shell: node = %s", r)
	}

	// Renewed files, written over the old ones as a renewal does.
	renewed := pk.ca.MustIssue(t, "renewed", testenv.CertSpec{CN: "gate", DNS: []string{"127.0.0.1", "gate.lab"}})
	replaceFile(t, pk.gate.Path, renewed.Path, 0o644)
	replaceFile(t, pk.gate.KeyPath, renewed.KeyPath, 0o600)
	g.Send(syscall.SIGHUP)
	g.Wait(testenv.Msg("reloaded"))

	if got, want := servedSerial(t, addr, pk), renewed.Leaf.SerialNumber.String(); got != want {
		t.Errorf("after the reload: served serial %s, want the renewed %s", got, want)
	}
	if r := testenv.Ping(t, tlsClient(t, "new@127.0.0.1", p, pk.ca, &pk.client)); r != "pong" {
		t.Errorf("a new client after the reload: ping = %s, want pong", r)
	}
	if r := sh.Do("node"); r != "'app@127.0.0.1'" {
		t.Errorf("the live shell after the reload: node = %s", r)
	}
	if n := g.Count(testenv.Msg("admitted"), testenv.NodeIs("live@127.0.0.1")); n != 1 {
		t.Errorf("the live shell was admitted %d times, want once (it never reconnected)", n)
	}
	if g.Count(testenv.Msg("closed"), testenv.NodeIs("live@127.0.0.1")) != 0 {
		t.Error("the live shell's connection was closed by the reload")
	}

	// A key that does not match refuses the whole reload; the renewed
	// certificate stays.
	replaceFile(t, pk.gate.KeyPath, pk.client.KeyPath, 0o600)
	g.Send(syscall.SIGHUP)
	if l := g.Wait(testenv.MsgPrefix("reload refused")); !strings.Contains(l.Str("error"), "tls.key") {
		t.Errorf("reload refused line = %v, want it to name tls.key", l)
	}
	if got := servedSerial(t, addr, pk); got != renewed.Leaf.SerialNumber.String() {
		t.Errorf("after a refused reload: served serial %s, want the renewed one still", got)
	}
	if r := sh.Do("connected"); r != "true" {
		t.Errorf("the live shell: connected = %s", r)
	}
	if testenv.Has(n.Out.All(), "nodedown 'live@127.0.0.1'") {
		t.Errorf("the node saw the live shell go down:\n%s", n.Out)
	}
	if err := sh.Quit(); err != nil {
		t.Errorf("the live shell: %v", err)
	}
}

// Passthrough in front of a node that runs TLS distribution itself
// (app@gate.lab, gate.lab mapped to 127.0.0.1 for every VM): an allowed
// source whose SNI an entry lists gets through; another source, another
// server name and bytes that are not TLS are refused; sni is logged.
func TestTLSPassthrough(t *testing.T) {
	t.Parallel()
	p := testenv.AppPort(t)
	ca := testenv.NewTestCA(t, "node CA")
	nodeCert := ca.MustIssue(t, "node", testenv.CertSpec{CN: "app@gate.lab", DNS: []string{"gate.lab"}})
	clientCert := ca.MustIssue(t, "client", testenv.CertSpec{CN: "rem@ops"})
	inetrc := testenv.Inetrc(t, testenv.GateIP, "gate.lab", "other.lab")

	node := testenv.Erl{Name: "app@gate.lab", Port: p, Addr: testenv.NodeIP, Env: []string{inetrc},
		TLS: testenv.DistOptFile(t, testenv.DistOpts{CA: ca.Path, Server: &nodeCert, Client: &nodeCert})}
	nd, err := node.StartNode(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nd.Stop(syscall.SIGTERM, 10*time.Second)
		if t.Failed() {
			t.Logf("node output:\n%s", nd.Out)
		}
	})

	f := testenv.AppGate("pass", p, config.Allow{Sources: []string{"127.0.0.1/32"}, SNI: []string{"gate.lab"}})
	f.Gate[0].TLS = config.TLS{Mode: "passthrough"}
	f.Gate[0].RequireFlags = ""
	g := testenv.StartGate(t, f)

	client := func(name, target string) testenv.Erl {
		e := testenv.Erl{Name: name, Port: p, Hidden: true, Target: target, Env: []string{inetrc}}
		e.TLS = testenv.DistOptFile(t, testenv.DistOpts{CA: ca.Path, Client: &clientCert})
		return e
	}
	out := testenv.MustRun(t, client("ok@127.0.0.1", "app@gate.lab"), `io:format("node ~p~n", [rpc:call(Node, erlang, node, [])])`)
	if !strings.Contains(out, "node 'app@gate.lab'") {
		t.Fatalf("rpc through the passthrough gate:\n%s", out)
	}
	a := g.Wait(testenv.Msg("admitted"))
	if a.Str("tls") != "passthrough" || a.Str("sni") != "gate.lab" || a.Str("node") != "" || !testenv.From("127.0.0.1")(a) {
		t.Errorf("admitted line = %v, want tls passthrough, sni gate.lab, no node", a)
	}
	cl := g.Wait(testenv.Msg("closed"), testenv.Field("remote", a.Str("remote")))
	if cl.Str("sni") != "gate.lab" || cl.Num("bytes_in") == 0 || cl.Num("bytes_out") == 0 {
		t.Errorf("closed line = %v, want sni and the bytes", cl)
	}

	// Another source: refused before a byte is read.
	if r := testenv.Ping(t, client("far@127.0.0.1", "app@gate.lab").Bind("127.0.0.3")); r != "pang" {
		t.Errorf("from 127.0.0.3: ping = %s, want pang", r)
	}
	if d := g.Wait(testenv.Msg("denied"), testenv.From("127.0.0.3")); d.Str("reason") != "source_not_allowed" {
		t.Errorf("from 127.0.0.3: %v, want source_not_allowed", d)
	}
	// Another server name from the allowed source.
	if r := testenv.Ping(t, client("other@127.0.0.1", "app@other.lab")); r != "pang" {
		t.Errorf("SNI other.lab: ping = %s, want pang", r)
	}
	if d := g.Wait(testenv.Msg("denied"), testenv.Field("sni", "other.lab")); d.Str("reason") != "name_not_allowed" {
		t.Errorf("SNI other.lab: %v, want name_not_allowed", d)
	}
	// Not TLS: a plain client, and the scanner probe.
	if r := testenv.Ping(t, testenv.Erl{Name: "plain@127.0.0.1", Port: p, Hidden: true, Target: "app@gate.lab", Env: []string{inetrc}}); r != "pang" {
		t.Errorf("plain client: ping = %s, want pang", r)
	}
	if n := len(g.WaitN(1, testenv.Msg("denied"), testenv.Reason("bad_handshake"))); n != 1 {
		t.Errorf("%d bad_handshake lines", n)
	}
	if c := g.Count(testenv.Msg("admitted")); c != 1 {
		t.Errorf("%d admitted lines, want 1", c)
	}
}

// An Elixir release's `bin/demo rpc` with TLS distribution, the way a
// client machine would run it: the release's remote VM arguments gain
// -proto_dist inet_tls and -ssl_dist_optfile (given here through
// ELIXIR_ERL_OPTIONS, which the release's scripts put on the erl command
// line, so the same release serves), and the gate terminates TLS in front
// of the release's plain node.
func TestTLSElixirRelease(t *testing.T) {
	t.Parallel()
	rel := testenv.StartRelease(t, relName, filepath.Join("testdata", "release", "rel"))
	p := rel.Port

	pk := newTLSPKI(t)
	g := testenv.StartGate(t, terminateGate(p, pk, config.Allow{Sources: []string{"127.0.0.1/32"},
		Names: []string{"rpc-*-" + relName + "@*"}, Identities: []string{"rem@ops"}}))

	// The test release was built without the ssl application; a real one
	// lists it (README); here the installation's own code paths stand in.
	ssl, err := testenv.SSLPath()
	if err != nil {
		t.Fatal(err)
	}
	opts := testenv.DistOptFile(t, testenv.DistOpts{CA: pk.ca.Path, Client: &pk.client})
	tlsEnv := []string{"ELIXIR_ERL_OPTIONS=-pa " + strings.Join(ssl, " ") + " -proto_dist inet_tls -ssl_dist_optfile " + opts}
	out, err := rel.Run(tlsEnv, "rpc", "IO.puts(node())")
	if err != nil || strings.TrimSpace(out) != relName+"@127.0.0.1" {
		t.Fatalf("bin/%s rpc over TLS: %v, output %q; want %s@127.0.0.1", relName, err, out, relName)
	}
	a := g.Wait(testenv.Msg("admitted"))
	if !rpcHelper.MatchString(a.Str("node")) || a.Str("tls") != "terminate" || a.Str("identity") != "rem@ops" {
		t.Errorf("admitted line = %v, want the rpc helper over tls as rem@ops", a)
	}
	g.Wait(testenv.Msg("closed"), testenv.Field("path", "tls"), testenv.NodeIs(a.Str("node")))

	// Without TLS the same rpc is refused at the gate.
	if out, err := rel.Run(nil, "rpc", "IO.puts(node())"); err == nil {
		t.Errorf("a plain bin/%s rpc through the terminating gate: succeeded:\n%s", relName, out)
	}
	g.Wait(testenv.Msg("denied"), testenv.Reason("bad_handshake"))

	if out, err := rel.Run(tlsEnv, "stop"); err != nil {
		t.Errorf("bin/%s stop over TLS: %v\n%s", relName, err, out)
	}
	if err := rel.Node.WaitExit(testenv.WaitTimeout); err != nil {
		t.Errorf("the release did not stop: %v", err)
	}
}

// distgate check on a terminating gate's files: good ones pass; a
// certificate without a DNS SAN passes with a warning; a key that does not
// match, a key others can read, a CA file that is not one: exit 2, naming
// the key.
func TestTLSCheck(t *testing.T) {
	t.Parallel()
	pk := newTLSPKI(t)
	check := func(edit func(*config.File)) (string, string, int) {
		f := terminateGate(9100, pk, config.Allow{Sources: []string{"127.0.0.1"}, Identities: []string{"rem@ops"}})
		edit(f)
		return testenv.RunDistgate(t, nil, "check", "-config", testenv.ConfigFile(t, f))
	}
	keyPEM, err := os.ReadFile(pk.gate.KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	secret := string(keyPEM[40:80]) // a piece of the key itself
	out, errOut, code := check(func(*config.File) {})
	if code != 0 || !strings.Contains(out, `mode = "terminate"`) || errOut != "" {
		t.Errorf("good files: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if strings.Contains(out+errOut, secret) {
		t.Error("check printed the key")
	}

	ipOnly := pk.ca.MustIssue(t, "iponly", testenv.CertSpec{CN: "gate", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	_, errOut, code = check(func(f *config.File) { f.Gate[0].TLS.Cert, f.Gate[0].TLS.Key = ipOnly.Path, ipOnly.KeyPath })
	if code != 0 || !strings.Contains(errOut, `warning: gate "tls": tls.cert: `) || !strings.Contains(errOut, "has no DNS name (SAN)") {
		t.Errorf("IP SAN only: exit %d, stderr %q; want 0 and a warning", code, errOut)
	}

	open := filepath.Join(t.TempDir(), "open.key")
	replaceFile(t, open, pk.gate.KeyPath, 0o644)
	for _, tt := range []struct {
		name string
		edit func(*config.File)
		want string
	}{
		{"mismatched key", func(f *config.File) { f.Gate[0].TLS.Key = pk.client.KeyPath }, "private key does not match public key"},
		{"key readable by others", func(f *config.File) { f.Gate[0].TLS.Key = open }, "tls.key: " + strconv.Quote(open) + " is mode 0644"},
		{"CA not a certificate", func(f *config.File) { f.Gate[0].TLS.ClientCA = pk.gate.KeyPath }, "tls.client_ca:"},
		{"missing cert", func(f *config.File) { f.Gate[0].TLS.Cert = "/nonexistent/gate.pem" }, "tls.cert: "},
	} {
		_, errOut, code := check(tt.edit)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", tt.name, code, errOut, tt.want)
		}
		if strings.Contains(errOut, secret) {
			t.Errorf("%s: check printed the key", tt.name)
		}
	}
}
