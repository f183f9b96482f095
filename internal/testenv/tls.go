package testenv

// TLS distribution (erlang-dist-facts.md §12): certificates made with
// crypto/x509 and written as PEM files, the ssl_dist_optfile an OTP node or
// client reads, and an Erlang inetrc that maps a dotted test host name to
// a loopback address (OTP's long names need a dot, and its TLS client
// checks the host part of the node it dials as a DNS name, §12.4).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CA is a certificate authority for tests: its certificate is in Path
// (PEM), its key in memory.
type CA struct {
	Cert *x509.Certificate
	Path string
	dir  string
	key  *ecdsa.PrivateKey
}

// Cert is a certificate and its key written as PEM files (the key mode
// 0600, as distgate wants it).
type Cert struct {
	Leaf          *x509.Certificate
	Path, KeyPath string
}

// CertSpec says what a certificate holds. Every certificate may serve both
// ends of a TLS connection (server and client authentication), as a TLS
// distribution node's does.
type CertSpec struct {
	CN  string
	DNS []string
	IPs []net.IP
	// NotBefore and NotAfter default to an hour either side of now.
	NotBefore, NotAfter time.Time
}

// NewCA makes a CA named name and writes its certificate into dir.
func NewCA(dir, name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, safeName(name)+"-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Path: path, dir: dir, key: key}, nil
}

// serial returns a random serial number, so that two certificates told
// apart by serial never share one.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n.Add(n, big.NewInt(1))
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == '@' {
			return '_'
		}
		return r
	}, s)
}

// Issue makes a certificate signed by ca and writes it and its key into
// ca's directory under base.
func (ca *CA) Issue(base string, spec CertSpec) (Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Cert{}, err
	}
	nb, na := spec.NotBefore, spec.NotAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	if na.IsZero() {
		na = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: spec.CN},
		DNSNames: spec.DNS, IPAddresses: spec.IPs, NotBefore: nb, NotAfter: na,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return Cert{}, fmt.Errorf("certificate %s: %w", base, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return Cert{}, err
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Cert{}, err
	}
	c := Cert{Leaf: leaf, Path: filepath.Join(ca.dir, base+".pem"), KeyPath: filepath.Join(ca.dir, base+".key")}
	if err := os.WriteFile(c.Path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return Cert{}, err
	}
	if err := os.WriteFile(c.KeyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return Cert{}, err
	}
	return c, nil
}

// NewTestCA makes a CA for a test, in a temporary directory of its own.
func NewTestCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := NewCA(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// MustIssue is Issue for a test.
func (ca *CA) MustIssue(t testing.TB, base string, spec CertSpec) Cert {
	t.Helper()
	c, err := ca.Issue(base, spec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Pool returns a pool holding ca, for a Go TLS client.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// KeyPair loads c for a Go TLS client or server.
func (c Cert) KeyPair() (tls.Certificate, error) { return tls.LoadX509KeyPair(c.Path, c.KeyPath) }

// DistOpts is what an ssl_dist_optfile says (§12.2). Client is the side a
// node uses when it dials (what a client of the gate needs); Server the side
// it uses when it accepts (what a node that runs TLS distribution itself
// needs). Each side verifies its peer against CA (verify_peer); a side's
// Cert is optional for a client.
type DistOpts struct {
	CA     string
	Client *Cert // nil: the client presents no certificate
	Server *Cert // nil: the node does not accept TLS (a client)
}

// WriteDistOpts writes an ssl_dist_optfile to path.
func WriteDistOpts(path string, o DistOpts) error {
	side := func(c *Cert, server bool) string {
		var opts []string
		if c != nil {
			opts = append(opts, "{certfile, "+erlString(c.Path)+"}", "{keyfile, "+erlString(c.KeyPath)+"}")
		}
		opts = append(opts, "{cacertfile, "+erlString(o.CA)+"}", "{verify, verify_peer}", "{secure_renegotiate, true}")
		if server {
			opts = append(opts, "{fail_if_no_peer_cert, true}")
		}
		return "[" + strings.Join(opts, ",\n   ") + "]"
	}
	server := "[]"
	if o.Server != nil {
		server = side(o.Server, true)
	}
	text := "[{server, " + server + "},\n {client, " + side(o.Client, false) + "}].\n"
	return os.WriteFile(path, []byte(text), 0o644)
}

// DistOptFile writes an ssl_dist_optfile for a test and returns its path.
func DistOptFile(t testing.TB, o DistOpts) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dist-tls.conf")
	if err := WriteDistOpts(path, o); err != nil {
		t.Fatal(err)
	}
	return path
}

// erlString writes s as an Erlang string literal.
func erlString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Inetrc writes an Erlang inetrc for a test that maps the hosts to addr
// (and looks names up there first), and returns the ERL_INETRC setting for
// an Erl's Env. One entry holds every name: a second entry for the same
// address would replace the first.
func Inetrc(t testing.TB, addr string, hosts ...string) string {
	t.Helper()
	tuple, err := erlIP(addr)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = erlString(h)
	}
	text := fmt.Sprintf("{host, %s, [%s]}.\n{lookup, [file, native]}.\n", tuple, strings.Join(names, ", "))
	path := filepath.Join(t.TempDir(), "inetrc")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return "ERL_INETRC=" + path
}

// SSLPath returns the code directories an Elixir release lacks to run
// -proto_dist inet_tls when it was built without the ssl application (and
// crypto, public_key, asn1 under it): the installation's own, for -pa.
func SSLPath() ([]string, error) {
	erl, err := ErlPath()
	if err != nil {
		return nil, err
	}
	dir := os.TempDir()
	out, err := Cmd{Name: "erl code paths", Dir: dir, Env: ErlEnv(dir), Args: []string{erl, "-noshell", "-eval",
		`[io:format("~s~n", [code:lib_dir(A, ebin)]) || A <- [ssl, public_key, crypto, asn1]], halt().`}}.Run(30 * time.Second)
	if err != nil {
		return nil, fmt.Errorf("find the ssl application (Debian/Ubuntu: apt-get install erlang-ssl): %w\n%s", err, out)
	}
	var dirs []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			if _, err := os.Stat(l); err != nil {
				return nil, fmt.Errorf("ssl code path: %w", err)
			}
			dirs = append(dirs, l)
		}
	}
	if len(dirs) != 4 {
		return nil, fmt.Errorf("ssl code paths: %q", out)
	}
	return dirs, nil
}
