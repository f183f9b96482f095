package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/distgate/distgate/internal/safefile"
	"github.com/distgate/distgate/proxy"
)

// TLSMode is what a gate does with TLS (design: TLS distribution); the
// proxy's own type, so that Settings carry it as compiled.
type TLSMode = proxy.TLSMode

// The modes.
const (
	// TLSOff: a TLS record as first bytes is bad_handshake.
	TLSOff = proxy.TLSOff
	// TLSTerminate: the gate is the TLS server and reads the handshake
	// inside.
	TLSTerminate = proxy.TLSTerminate
	// TLSPassthrough: the gate reads the ClientHello, decides on source,
	// limits and SNI, and forwards the bytes unchanged.
	TLSPassthrough = proxy.TLSPassthrough
)

// GateTLS is a gate's compiled [gate.tls].
type GateTLS struct {
	Mode TLSMode
	// Config is the server side for TLSTerminate: the certificate and key,
	// the minimum version and, with client_ca, the CA pool client
	// certificates must chain to (then a client certificate is required
	// and verified). Nil for the other modes. Each Load builds a new one
	// from the files, so a reload installs a renewed certificate.
	Config *tls.Config
}

// maxPEMFile caps a certificate, key or CA file; a long chain or a
// bundle of CAs is still far below it.
const maxPEMFile = 1 << 20

// compileTLS fills [gate.tls]'s defaults, reads its files and builds the
// server configuration. Errors name the key; warnings are valid settings
// that OTP clients will probably trip over.
func compileTLS(t *TLS) (GateTLS, []string, []error) {
	var errs []error
	var warnings []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if t.Mode == "" {
		t.Mode = "off"
	}
	var gt GateTLS
	switch t.Mode {
	case "off":
		gt.Mode = TLSOff
	case "terminate":
		gt.Mode = TLSTerminate
	case "passthrough":
		gt.Mode = TLSPassthrough
	default:
		bad("tls.mode: %q is not one of off, terminate, passthrough", t.Mode)
		return gt, nil, errs
	}
	if gt.Mode != TLSTerminate {
		// A certificate on a gate that does not terminate is a sign that
		// the mode is not what was meant.
		for _, k := range []struct{ key, v string }{{"cert", t.Cert}, {"key", t.Key}, {"client_ca", t.ClientCA}, {"min_version", t.MinVersion}} {
			if k.v != "" {
				bad("tls.%s: only used with tls.mode = \"terminate\" (this gate's mode is %q)", k.key, t.Mode)
			}
		}
		return gt, nil, errs
	}

	// No session tickets: every connection is a full handshake, so a
	// client certificate is verified against the client_ca in force, and
	// its identity read from it, every time. (OTP 25 clients do not offer
	// tickets anyway.)
	cfg := &tls.Config{SessionTicketsDisabled: true}
	if t.MinVersion == "" {
		t.MinVersion = "1.2"
	}
	switch t.MinVersion {
	case "1.2":
		cfg.MinVersion = tls.VersionTLS12
	case "1.3":
		cfg.MinVersion = tls.VersionTLS13
		warnings = append(warnings, `tls.min_version: "1.3" refuses OTP 25 clients, which offer TLS 1.2 only`)
	default:
		bad("tls.min_version: %q is not one of 1.2, 1.3", t.MinVersion)
	}

	if t.Cert == "" {
		bad("tls.cert: must be set for tls.mode = \"terminate\"")
	}
	if t.Key == "" {
		bad("tls.key: must be set for tls.mode = \"terminate\"")
	}
	if t.Cert != "" && t.Key != "" {
		certPEM, err := safefile.Read(t.Cert, maxPEMFile)
		if err != nil {
			bad("tls.cert: %w", err)
		}
		// The key is a secret: owner-only, like cookie_file.
		keyPEM, kerr := safefile.ReadPrivate(t.Key, maxPEMFile)
		if kerr != nil {
			bad("tls.key: %w", kerr)
		}
		if err == nil && kerr == nil {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				// crypto/tls says which of the two is wrong (no PEM
				// block, a key that does not match the certificate)
				// without printing either.
				bad("tls.cert %q, tls.key %q: %w", t.Cert, t.Key, err)
			} else {
				cfg.Certificates = []tls.Certificate{pair}
				warnings = append(warnings, certWarnings(t.Cert, pair.Leaf, time.Now())...)
			}
		}
	}
	if t.ClientCA != "" {
		pool, err := readCAPool(t.ClientCA)
		if err != nil {
			bad("tls.client_ca: %w", err)
		} else {
			cfg.ClientCAs = pool
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	if len(errs) > 0 {
		return gt, nil, errs
	}
	gt.Config = cfg
	return gt, warnings, nil
}

// certWarnings are the reasons an OTP client would refuse the gate's
// certificate (erlang-dist-facts.md §12.4): the client checks the host part
// of the node name it dials as a DNS name, so a certificate with only an IP
// SAN, or only a CN, fails with hostname_check_failed; an extended key
// usage that leaves out serverAuth fails its path validation; and a
// certificate out of its validity period fails too.
func certWarnings(path string, leaf *x509.Certificate, now time.Time) []string {
	if leaf == nil {
		return nil
	}
	var w []string
	if len(leaf.DNSNames) == 0 {
		w = append(w, fmt.Sprintf("tls.cert: %q has no DNS name (SAN); OTP clients check the host part of the node name they dial as a DNS name, so an IP SAN or a CN alone fails with hostname_check_failed (for an IP, add it as a DNS SAN too)", path))
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		w = append(w, fmt.Sprintf("tls.cert: %q has an extended key usage without serverAuth; OTP clients refuse it as a server certificate", path))
	}
	if now.After(leaf.NotAfter) {
		w = append(w, fmt.Sprintf("tls.cert: %q expired at %s", path, leaf.NotAfter.UTC().Format(time.RFC3339)))
	} else if now.Before(leaf.NotBefore) {
		w = append(w, fmt.Sprintf("tls.cert: %q is not valid before %s", path, leaf.NotBefore.UTC().Format(time.RFC3339)))
	}
	return w
}

// readCAPool reads a PEM file of CA certificates. Every block must be a
// certificate that parses: a bundle with a broken entry is refused rather
// than silently trusting fewer CAs than written.
func readCAPool(path string) (*x509.CertPool, error) {
	b, err := safefile.Read(path, maxPEMFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for i := 0; ; i++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%q: PEM block %d is a %q, not a CERTIFICATE", path, i, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%q: certificate %d: %w", path, i, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%q: %w", path, errNoPEMCert)
	}
	return pool, nil
}

var errNoPEMCert = errors.New("holds no PEM certificate")
