package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gateWith is goodGate with extra gate keys (before the allow entry) and
// extra text after it (more allow keys, sub-tables).
func gateWith(keys, after string) string {
	return strings.Replace(goodGate, "[[gate.allow]]", keys+"\n[[gate.allow]]", 1) + after
}

func mustLoad(t *testing.T, text string) *Config {
	t.Helper()
	c, err := Load(writeConfig(t, text), nil)
	if err != nil {
		t.Fatalf("load: %v\n%s", err, text)
	}
	return c
}

func loadErr(t *testing.T, text string, env ...string) string {
	t.Helper()
	_, err := Load(writeConfig(t, text), env)
	if err == nil {
		t.Fatalf("load accepted:\n%s", text)
	}
	return err.Error()
}

func writeFileMode(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode passes through the umask; set it exactly.
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewKeyDefaults(t *testing.T) {
	l := mustLoad(t, goodGate)
	if l.Forward != "user" || l.StateFile != "" || l.Admin.Socket != "" || *l.Metrics.MaxConns != 64 {
		t.Errorf("top-level defaults: forward %q state_file %q admin %q metrics.max_conns %d", l.Forward, l.StateFile, l.Admin.Socket, *l.Metrics.MaxConns)
	}
	g := l.Gates[0]
	if g.Settings.SetupTimeout != 10*time.Second || g.Cookie != nil || g.TLS.Mode != TLSOff || g.TLS.Config != nil {
		t.Errorf("gate defaults: setup %v cookie %v tls %v %v", g.Settings.SetupTimeout, g.Cookie == nil, g.TLS.Mode, g.TLS.Config)
	}
	b := g.Settings.Ban
	if b.After != 5 || b.Window != 10*time.Minute || b.Duration != 15*time.Minute || b.MaxDuration != 24*time.Hour || len(b.Never) != 0 {
		t.Errorf("ban defaults: %+v", b)
	}
	out := l.Encode()
	for _, k := range []string{`forward = "user"`, `state_file = ""`, "[metrics]", "max_conns = 64", "[admin]", `socket = ""`,
		`setup_timeout = "10s"`, `cookie_file = ""`, "[gate.ban]", "after = 5", `window = "10m0s"`, `duration = "15m0s"`,
		`max_duration = "24h0m0s"`, "never = []", "[gate.tls]", `mode = "off"`} {
		if !strings.Contains(out, k) {
			t.Errorf("check output lacks %s:\n%s", k, out)
		}
	}
}

func TestNewKeyValues(t *testing.T) {
	text := "forward = \"kernel\"\nstate_file = \"/var/lib/distgate/state.json\"\n[admin]\nsocket = \"/run/distgate/admin.sock\"\n[metrics]\nmax_conns = 8\n" +
		gateWith("setup_timeout = \"20s\"", "[gate.ban]\nafter = 3\nwindow = \"1m\"\nduration = \"2m\"\nmax_duration = \"1h\"\nnever = [\"10.0.0.0/8\", \"::1\"]\n")
	l := mustLoad(t, text)
	if l.Forward != "kernel" || l.StateFile != "/var/lib/distgate/state.json" || l.Admin.Socket != "/run/distgate/admin.sock" || *l.Metrics.MaxConns != 8 {
		t.Errorf("top level: %+v", l.File)
	}
	g := l.Gates[0]
	if g.Settings.SetupTimeout != 20*time.Second {
		t.Errorf("setup_timeout %v", g.Settings.SetupTimeout)
	}
	b := g.Settings.Ban
	if b.After != 3 || b.Window != time.Minute || b.Duration != 2*time.Minute || b.MaxDuration != time.Hour ||
		len(b.Never) != 2 || b.Never[0].String() != "10.0.0.0/8" || b.Never[1].String() != "::1/128" {
		t.Errorf("ban: %+v", b)
	}
	// after = 0 turns bans off; the other keys need not make sense then.
	off := mustLoad(t, gateWith("", "[gate.ban]\nafter = 0\nwindow = \"0s\"\nduration = \"0s\"\n"))
	if !off.Gates[0].Settings.Ban.Off() {
		t.Errorf("after = 0: %+v", off.Gates[0].Settings.Ban)
	}
}

// Every new key's validation names the key and the value.
func TestNewKeyErrors(t *testing.T) {
	dir := t.TempDir()
	long := "/" + strings.Repeat("a", 107)
	tests := []struct {
		name, text string
		want       []string
	}{
		{"forward", "forward = \"splice\"\n" + goodGate, []string{`forward: "splice" is not one of user, kernel`}},
		{"metrics.max_conns 0", "[metrics]\nmax_conns = 0\n" + goodGate, []string{`metrics.max_conns: 0 is out of range`}},
		{"metrics unknown", "[metrics]\nmax_con = 1\n" + goodGate, []string{`"metrics.max_con"`}},
		{"admin.socket long", "[admin]\nsocket = \"" + long + "\"\n" + goodGate, []string{`admin.socket:`, `is 108 bytes long`}},
		{"admin unknown", "[admin]\npath = \"/x\"\n" + goodGate, []string{`"admin.path"`}},
		{"state_file dir", "state_file = \"" + dir + "\"\n" + goodGate, []string{`state_file: "` + dir + `" is a directory`}},
		{"setup_timeout 0", gateWith(`setup_timeout = "0s"`, ""), []string{`gate "g": setup_timeout: "0s" must be positive`}},
		{"setup_timeout short", gateWith(`setup_timeout = "1s"`, ""), []string{`setup_timeout: "1s" is shorter than handshake_timeout "3s"`}},
		{"setup_timeout bad", gateWith(`setup_timeout = "soon"`, ""), []string{`setup_timeout`, `"soon" is not a duration`}},
		{"ban.after -1", gateWith("", "[gate.ban]\nafter = -1\n"), []string{`gate "g": ban.after: -1 is out of range [0, 100]`}},
		{"ban.after 101", gateWith("", "[gate.ban]\nafter = 101\n"), []string{`ban.after: 101 is out of range`}},
		{"ban.window 0", gateWith("", "[gate.ban]\nwindow = \"0s\"\n"), []string{`ban.window: "0s" must be positive`}},
		{"ban.duration negative", gateWith("", "[gate.ban]\nafter = 0\nduration = \"-1s\"\n"), []string{`ban.duration: "-1s" must be positive`}},
		{"ban.max_duration short", gateWith("", "[gate.ban]\nduration = \"2h\"\nmax_duration = \"1h\"\n"), []string{`ban.max_duration: "1h0m0s" is shorter than ban.duration "2h0m0s"`}},
		{"ban.duration huge", gateWith("", "[gate.ban]\nduration = \"9000h\"\nmax_duration = \"9000h\"\n"), []string{`ban.duration: "9000h0m0s" is over`}},
		{"ban.never", gateWith("", "[gate.ban]\nnever = [\"10.0.0.1/8\"]\n"), []string{`ban.never[0]: "10.0.0.1/8" has host bits set`}},
		{"ban unknown", gateWith("", "[gate.ban]\nafterr = 1\n"), []string{`"gate.ban.afterr"`}},
		{"tls.mode", gateWith("", "[gate.tls]\nmode = \"on\"\n"), []string{`gate "g": tls.mode: "on" is not one of off, terminate, passthrough`}},
		{"tls unknown", gateWith("", "[gate.tls]\nmode = \"off\"\ncertificate = \"x\"\n"), []string{`"gate.tls.certificate"`}},
		{"tls.cert on off", gateWith("", "[gate.tls]\ncert = \"/x.pem\"\n"), []string{`tls.cert: only used with tls.mode = "terminate" (this gate's mode is "off")`}},
		{"tls.min_version on passthrough", gateWith("", "[gate.tls]\nmode = \"passthrough\"\nmin_version = \"1.2\"\n"), []string{`tls.min_version: only used with tls.mode = "terminate"`}},
		{"terminate no cert", gateWith("", "[gate.tls]\nmode = \"terminate\"\n"), []string{`tls.cert: must be set`, `tls.key: must be set`}},
		{"terminate min_version", gateWith("", "[gate.tls]\nmode = \"terminate\"\nmin_version = \"1.1\"\n"), []string{`tls.min_version: "1.1" is not one of 1.2, 1.3`}},
		{"terminate missing files", gateWith("", "[gate.tls]\nmode = \"terminate\"\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n"),
			[]string{`tls.cert: stat /nonexistent/c.pem`, `tls.key: stat /nonexistent/k.pem`}},
		{"identities off", goodGate + "identities = [\"CN=*\"]\n", []string{`allow[0].identities: only a gate with tls.mode = "terminate"`}},
		{"sni off", goodGate + "sni = [\"*.example\"]\n", []string{`allow[0].sni: only a gate with tls.mode = "passthrough"`}},
		{"passthrough names", goodGate + "names = [\"a@b\"]\n[gate.tls]\nmode = \"passthrough\"\n", []string{`allow[0].names: a passthrough gate cannot see node names`}},
		{"passthrough require_flags", gateWith(`require_flags = "otp25"`, "[gate.tls]\nmode = \"passthrough\"\n"), []string{`require_flags: "otp25": a passthrough gate cannot see the capability flags`}},
		{"passthrough cookie_file", gateWith(`cookie_file = "/x"`, "[gate.tls]\nmode = \"passthrough\"\n"), []string{`cookie_file: "/x": a passthrough gate cannot check cookies`}},
		{"passthrough identities", goodGate + "identities = [\"a\"]\n[gate.tls]\nmode = \"passthrough\"\n", []string{`allow[0].identities: only a gate with tls.mode = "terminate"`}},
		{"bad sni glob", goodGate + "sni = [\"[a\"]\n[gate.tls]\nmode = \"passthrough\"\n", []string{`allow[0].sni[0]: bad glob "[a"`}},
		{"cookie missing", gateWith(`cookie_file = "/nonexistent/cookie"`, ""), []string{`gate "g": cookie_file: stat /nonexistent/cookie`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := loadErr(t, tt.text)
			for _, w := range tt.want {
				if !strings.Contains(err, w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestPassthroughGate(t *testing.T) {
	l := mustLoad(t, goodGate+"sni = [\"*.example\", \"gate.lab\"]\n[gate.tls]\nmode = \"passthrough\"\n")
	g := l.Gates[0]
	if g.TLS.Mode != TLSPassthrough || g.TLS.Config != nil {
		t.Errorf("tls %+v", g.TLS)
	}
	if g.Settings.Rules.Require.String() != "none" {
		t.Errorf("a passthrough gate requires flags %v", g.Settings.Rules.Require)
	}
	if e := g.Settings.Rules.Allow[0]; len(e.SNI) != 2 || e.SNI[1].String() != "gate.lab" {
		t.Errorf("sni %v", e.SNI)
	}
	if strings.Contains(l.Encode(), "require_flags") {
		t.Errorf("a passthrough gate prints require_flags:\n%s", l.Encode())
	}
}

// cookie_file: owner-only, trimmed, re-read by every Load, never printed.
func TestCookieFile(t *testing.T) {
	const cookie = "SECRETCOOKIEVALUE"
	dir := t.TempDir()
	load := func(path string) (*Config, error) {
		return Load(writeConfig(t, gateWith(fmt.Sprintf("cookie_file = %q", path), "")), nil)
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		p := writeFileMode(t, dir, fmt.Sprintf("ok%o", mode), "  \n"+cookie+"\r\n\n", mode)
		l, err := load(p)
		if err != nil {
			t.Fatalf("mode %04o: %v", mode, err)
		}
		if string(l.Gates[0].Cookie) != cookie {
			t.Errorf("mode %04o: cookie %q, want the trimmed content", mode, []byte(l.Gates[0].Cookie))
		}
	}
	for _, mode := range []os.FileMode{0o640, 0o644, 0o604, 0o660} {
		p := writeFileMode(t, dir, fmt.Sprintf("bad%o", mode), cookie+"\n", mode)
		_, err := load(p)
		want := fmt.Sprintf("cookie_file: %q is mode %04o; it must be readable by its owner only", p, mode)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("mode %04o: error %v, want %q", mode, err, want)
		}
		if err != nil && strings.Contains(err.Error(), cookie) {
			t.Errorf("the error shows the cookie: %v", err)
		}
	}
	for name, content := range map[string]string{
		"empty":     "",
		"blank":     " \n\t\n",
		"long":      strings.Repeat("c", 256),
		"two lines": cookie + "\n" + cookie + "\n",
		"control":   "abc\x1bdef",
		"not ascii": "caf\xc3\xa9",
		"nul":       "abc\x00",
		"huge":      strings.Repeat("c", 5000),
	} {
		p := writeFileMode(t, dir, strings.ReplaceAll(name, " ", "_"), content, 0o600)
		_, err := load(p)
		if err == nil || !strings.Contains(err.Error(), "cookie_file: ") || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want one naming cookie_file and the path", name, err)
		}
		if err != nil && content != "" && strings.TrimSpace(content) != "" && strings.Contains(err.Error(), strings.TrimSpace(content)) {
			t.Errorf("%s: the error shows the content: %v", name, err)
		}
	}
	// A FIFO is refused without blocking.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := load(fifo); err == nil || !strings.Contains(err.Error(), "a FIFO") {
		t.Errorf("fifo: %v", err)
	}

	// Each Load reads it again: that is how SIGHUP picks up a new cookie.
	p := writeFileMode(t, dir, "cookie", cookie, 0o600)
	path := writeConfig(t, gateWith(fmt.Sprintf("cookie_file = %q", p), ""))
	l1, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeFileMode(t, dir, "cookie", "OTHER", 0o600)
	l2, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(l1.Gates[0].Cookie) != cookie || string(l2.Gates[0].Cookie) != "OTHER" {
		t.Errorf("cookies %q then %q", []byte(l1.Gates[0].Cookie), []byte(l2.Gates[0].Cookie))
	}
	if err := RestartRequired(l1, l2); err != nil {
		t.Errorf("a new cookie needs no restart: %v", err)
	}

	// DISTGATE_COOKIE_FILE sets it for the single gate.
	l3, err := Load(writeConfig(t, goodGate), []string{"DISTGATE_COOKIE_FILE=" + p})
	if err != nil || string(l3.Gates[0].Cookie) != "OTHER" || l3.Gate[0].CookieFile != p {
		t.Errorf("DISTGATE_COOKIE_FILE: %v", err)
	}
}

// The cookie appears in no printed form of the configuration.
func TestCookieNeverPrinted(t *testing.T) {
	const cookie = "SECRETCOOKIEVALUE"
	p := writeFileMode(t, t.TempDir(), "cookie", cookie, 0o600)
	l := mustLoad(t, gateWith(fmt.Sprintf("cookie_file = %q", p), ""))
	if string(l.Gates[0].Cookie) != cookie {
		t.Fatalf("cookie %q", []byte(l.Gates[0].Cookie))
	}
	js, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	hex := fmt.Sprintf("%x", cookie)
	forms := map[string]string{
		"check":  l.Encode(),
		"json":   string(js),
		"%v":     fmt.Sprintf("%v", l.Gates[0]),
		"%+v":    fmt.Sprintf("%+v", l.Gates[0]),
		"%#v":    fmt.Sprintf("%#v", l.Gates[0]),
		"%s":     fmt.Sprintf("%s", l.Gates[0].Cookie),
		"%x":     fmt.Sprintf("%x", l.Gates[0].Cookie),
		"%d":     fmt.Sprintf("%d", l.Gates[0].Cookie),
		"%q":     fmt.Sprintf("%q", l.Gates[0].Cookie),
		"config": fmt.Sprintf("%+v", l),
	}
	for name, out := range forms {
		if strings.Contains(out, cookie) || strings.Contains(out, hex) || strings.Contains(out, "83 69 67") {
			t.Errorf("%s shows the cookie:\n%s", name, out)
		}
	}
	if !strings.Contains(l.Encode(), p) {
		t.Errorf("check does not show the cookie file's path:\n%s", l.Encode())
	}
}

// testPKI writes a CA, a server certificate signed by it (with the given
// DNS SANs) and its key (mode 0600) into dir.
type testPKI struct {
	caPEM, certPEM, keyPEM []byte
	ca, cert, key          string // paths
}

func newTestPKI(t *testing.T, dir string, dnsNames []string, ips []net.IP) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "gate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: dnsNames, IPAddresses: ips, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{
		caPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}),
	}
	p.ca = writeFileMode(t, dir, "ca.pem", string(p.caPEM), 0o644)
	p.cert = writeFileMode(t, dir, "cert.pem", string(p.certPEM), 0o644)
	p.key = writeFileMode(t, dir, "key.pem", string(p.keyPEM), 0o600)
	return p
}

func tlsGate(p testPKI, extra string) string {
	return goodGate + fmt.Sprintf("[gate.tls]\nmode = \"terminate\"\ncert = %q\nkey = %q\n", p.cert, p.key) + extra
}

func TestTLSTerminate(t *testing.T) {
	dir := t.TempDir()
	p := newTestPKI(t, dir, []string{"gate.lab"}, nil)

	l := mustLoad(t, tlsGate(p, ""))
	gt := l.Gates[0].TLS
	if gt.Mode != TLSTerminate || gt.Config == nil {
		t.Fatalf("tls %+v", gt)
	}
	if len(gt.Config.Certificates) != 1 || gt.Config.MinVersion != tls.VersionTLS12 || gt.Config.ClientAuth != tls.NoClientCert || gt.Config.ClientCAs != nil {
		t.Errorf("server config without client_ca: %+v", gt.Config)
	}
	if len(l.Warnings) != 0 {
		t.Errorf("warnings: %v", l.Warnings)
	}
	if !strings.Contains(l.Encode(), `min_version = "1.2"`) {
		t.Errorf("check does not print the default min_version:\n%s", l.Encode())
	}

	// client_ca: client certificates required and verified; identities
	// allowed.
	l = mustLoad(t, strings.Replace(tlsGate(p, fmt.Sprintf("client_ca = %q\n", p.ca)), "sources = [\"127.0.0.1\"]", "sources = [\"127.0.0.1\"]\nidentities = [\"rem-*@*\", \"client.example\"]", 1))
	gt = l.Gates[0].TLS
	if gt.Config.ClientAuth != tls.RequireAndVerifyClientCert || gt.Config.ClientCAs == nil {
		t.Errorf("client_ca not applied: %+v", gt.Config)
	}
	if ids := l.Gates[0].Settings.Rules.Allow[0].Identities; len(ids) != 2 || ids[0].String() != "rem-*@*" {
		t.Errorf("identities %v", ids)
	}

	// The certificate works for a TLS handshake as loaded.
	caPool := x509.NewCertPool()
	caPool.AppendCertsFromPEM(p.caPEM)
	srv, cli := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- tls.Server(srv, mustLoad(t, tlsGate(p, "")).Gates[0].TLS.Config).Handshake() }()
	c := tls.Client(cli, &tls.Config{RootCAs: caPool, ServerName: "gate.lab", MaxVersion: tls.VersionTLS12})
	if err := c.Handshake(); err != nil {
		t.Errorf("client handshake: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("server handshake: %v", err)
	}
	_ = srv.Close()
	_ = cli.Close()

	// min_version 1.3 works and warns.
	l = mustLoad(t, tlsGate(p, "min_version = \"1.3\"\n"))
	if l.Gates[0].TLS.Config.MinVersion != tls.VersionTLS13 || !strings.Contains(strings.Join(l.Warnings, "\n"), `tls.min_version: "1.3" refuses OTP 25 clients`) {
		t.Errorf("min_version 1.3: %v, warnings %v", l.Gates[0].TLS.Config.MinVersion, l.Warnings)
	}

	// identities without client_ca.
	if err := loadErr(t, strings.Replace(tlsGate(p, ""), "sources = [\"127.0.0.1\"]", "sources = [\"127.0.0.1\"]\nidentities = [\"x\"]", 1)); !strings.Contains(err, "allow[0].identities: needs tls.client_ca") {
		t.Errorf("identities without client_ca: %v", err)
	}
}

func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	p := newTestPKI(t, dir, []string{"gate.lab"}, nil)

	// The key is a secret: owner-only.
	for _, mode := range []os.FileMode{0o640, 0o644} {
		if err := os.Chmod(p.key, mode); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("tls.key: %q is mode %04o; it must be readable by its owner only", p.key, mode)
		if err := loadErr(t, tlsGate(p, "")); !strings.Contains(err, want) {
			t.Errorf("key mode %04o: %v", mode, err)
		}
	}
	if err := os.Chmod(p.key, 0o600); err != nil {
		t.Fatal(err)
	}

	// A key that does not match the certificate.
	other := newTestPKI(t, t.TempDir(), []string{"gate.lab"}, nil)
	mismatch := tlsGate(testPKI{cert: p.cert, key: other.key}, "")
	if err := loadErr(t, mismatch); !strings.Contains(err, "tls.cert") || !strings.Contains(err, "private key does not match public key") {
		t.Errorf("mismatched key: %v", err)
	}
	// Not PEM.
	junk := writeFileMode(t, dir, "junk.pem", "not a certificate\n", 0o644)
	if err := loadErr(t, tlsGate(testPKI{cert: junk, key: p.key}, "")); !strings.Contains(err, "tls.cert") || !strings.Contains(err, junk) {
		t.Errorf("junk cert: %v", err)
	}
	if err := loadErr(t, tlsGate(p, fmt.Sprintf("client_ca = %q\n", junk))); !strings.Contains(err, "tls.client_ca: "+fmt.Sprintf("%q", junk)+": holds no PEM certificate") {
		t.Errorf("junk client_ca: %v", err)
	}
	keyAsCA := tlsGate(p, fmt.Sprintf("client_ca = %q\n", p.key))
	if err := loadErr(t, keyAsCA); !strings.Contains(err, `not a CERTIFICATE`) || strings.Contains(err, string(p.keyPEM[40:80])) {
		t.Errorf("key as client_ca: %v", err)
	}
	// A key file never shows in an error.
	if err := loadErr(t, tlsGate(testPKI{cert: p.key, key: p.key}, "")); strings.Contains(err, string(p.keyPEM[40:80])) {
		t.Errorf("an error shows the key: %v", err)
	}

	// A certificate without a DNS SAN warns (OTP clients need one).
	ipOnly := newTestPKI(t, t.TempDir(), nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	l := mustLoad(t, tlsGate(ipOnly, ""))
	if w := strings.Join(l.Warnings, "\n"); !strings.Contains(w, "has no DNS name (SAN)") || !strings.Contains(w, ipOnly.cert) {
		t.Errorf("IP-only certificate: warnings %q", w)
	}

	// Each Load reads the files again: a renewed certificate is picked up,
	// and a broken one refuses the load (and so the reload).
	path := writeConfig(t, tlsGate(p, ""))
	l1, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	renewed := newTestPKI(t, t.TempDir(), []string{"gate.lab"}, nil)
	writeFileMode(t, dir, "cert.pem", string(renewed.certPEM), 0o644)
	writeFileMode(t, dir, "key.pem", string(renewed.keyPEM), 0o600)
	l2, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l1.Gates[0].TLS.Config.Certificates[0].Leaf.Equal(l2.Gates[0].TLS.Config.Certificates[0].Leaf) {
		t.Error("the second Load kept the old certificate")
	}
	if err := RestartRequired(l1, l2); err != nil {
		t.Errorf("a new certificate needs no restart: %v", err)
	}
	writeFileMode(t, dir, "key.pem", string(p.keyPEM), 0o600) // the old key: mismatch
	if _, err := Load(path, nil); err == nil {
		t.Error("a mismatched key after renewal was accepted")
	}
}

func TestNewEnvironment(t *testing.T) {
	env := []string{"DISTGATE_FORWARD=kernel", "DISTGATE_STATE_FILE=/var/lib/distgate/bans", "DISTGATE_ADMIN_SOCKET=/run/distgate/admin.sock"}
	l, err := Load(writeConfig(t, goodGate+goodGate2), env)
	if err != nil {
		t.Fatal(err)
	}
	if l.Forward != "kernel" || l.StateFile != "/var/lib/distgate/bans" || l.Admin.Socket != "/run/distgate/admin.sock" {
		t.Errorf("top-level variables (they apply with two gates too): %+v", l.File)
	}
	if err := loadErr(t, goodGate, "DISTGATE_FORWARD=fast"); !strings.Contains(err, `forward: "fast"`) {
		t.Errorf("bad DISTGATE_FORWARD: %v", err)
	}
	// DISTGATE_COOKIE_FILE is a per-gate variable.
	if err := loadErr(t, goodGate+goodGate2, "DISTGATE_COOKIE_FILE=/x"); !strings.Contains(err, "DISTGATE_COOKIE_FILE: apply only to a configuration with at most one gate; this one has 2") {
		t.Errorf("DISTGATE_COOKIE_FILE with two gates: %v", err)
	}
	// The allow variables would drop a TLS gate's identities or sni.
	pass := goodGate + "sni = [\"gate.lab\"]\n[gate.tls]\nmode = \"passthrough\"\n"
	for _, v := range []string{"DISTGATE_ALLOW_SOURCES=10.0.0.1", "DISTGATE_ALLOW_NAMES=a@b"} {
		if err := loadErr(t, pass, v); !strings.Contains(err, `gate "g" has tls.mode = "passthrough"`) {
			t.Errorf("%s on a TLS gate: %v", v, err)
		}
	}
	// DISTGATE_LISTEN and the like are fine on a TLS gate.
	if _, err := Load(writeConfig(t, pass), []string{"DISTGATE_LISTEN=127.0.0.1:9300"}); err != nil {
		t.Errorf("DISTGATE_LISTEN on a TLS gate: %v", err)
	}
}

const goodGate2 = `
[[gate]]
name = "h"
listen = "127.0.0.1:9200"
upstream = "127.0.0.2:9200"
[[gate.allow]]
sources = ["127.0.0.1"]
`
