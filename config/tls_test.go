package config

import (
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The gate's Settings carry the TLS mode and the server configuration, so
// a reload's Update hands a renewed certificate to new connections; tickets
// are off, so each connection's client certificate is verified afresh.
func TestTLSSettings(t *testing.T) {
	p := newTestPKI(t, t.TempDir(), []string{"gate.lab"}, nil)
	l := mustLoad(t, tlsGate(p, fmt.Sprintf("client_ca = %q\n", p.ca)))
	g := l.Gates[0]
	if g.Settings.TLS != TLSTerminate || g.Settings.TLSConfig == nil || g.Settings.TLSConfig != g.TLS.Config {
		t.Errorf("settings: mode %v config %p, want terminate and the gate's %p", g.Settings.TLS, g.Settings.TLSConfig, g.TLS.Config)
	}
	if !g.Settings.TLSConfig.SessionTicketsDisabled {
		t.Error("session tickets are on: a resumed session would skip the client certificate's verification")
	}
	if g.Settings.TLS.String() != "terminate" {
		t.Errorf("mode prints as %q", g.Settings.TLS.String())
	}

	l = mustLoad(t, goodGate+"sni = [\"gate.lab\"]\n[gate.tls]\nmode = \"passthrough\"\n")
	if s := l.Gates[0].Settings; s.TLS != TLSPassthrough || s.TLSConfig != nil {
		t.Errorf("passthrough settings: %v %v", s.TLS, s.TLSConfig)
	}
	if s := mustLoad(t, goodGate).Gates[0].Settings; s.TLS != TLSOff || s.TLSConfig != nil {
		t.Errorf("default settings: %v %v", s.TLS, s.TLSConfig)
	}
}

// What `check` warns about in a gate's certificate: each reason an OTP
// client would refuse it (§12.4).
func TestCertWarnings(t *testing.T) {
	now := time.Now()
	good := x509.Certificate{DNSNames: []string{"gate.lab"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	tests := []struct {
		name string
		edit func(*x509.Certificate)
		want []string
	}{
		{"good", func(*x509.Certificate) {}, nil},
		{"no EKU", func(c *x509.Certificate) { c.ExtKeyUsage = nil }, nil},
		{"any EKU", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} }, nil},
		{"client only", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} }, []string{"without serverAuth"}},
		{"ip san only", func(c *x509.Certificate) { c.DNSNames = nil }, []string{"has no DNS name (SAN)"}},
		{"expired", func(c *x509.Certificate) { c.NotAfter = now.Add(-time.Minute) }, []string{"expired at"}},
		{"not yet", func(c *x509.Certificate) { c.NotBefore = now.Add(time.Minute) }, []string{"is not valid before"}},
	}
	for _, tt := range tests {
		c := good
		tt.edit(&c)
		w := certWarnings("/etc/gate.pem", &c, now)
		if len(w) != len(tt.want) {
			t.Errorf("%s: warnings %q, want %d", tt.name, w, len(tt.want))
			continue
		}
		for i, s := range tt.want {
			if !strings.Contains(w[i], s) || !strings.Contains(w[i], `"/etc/gate.pem"`) || !strings.HasPrefix(w[i], "tls.cert: ") {
				t.Errorf("%s: warning %q, want it to name tls.cert, the file and %q", tt.name, w[i], s)
			}
		}
	}
}
