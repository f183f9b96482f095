package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/testenv"
)

// certs are the files of the run's small PKI: a CA, one server
// certificate for every TLS host of test 8 (its SANs are the node names'
// host parts written as DNS names, which is what an inet_tls client checks,
// erlang-dist-facts.md §12.4) and a client certificate.
type certs struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

// makeCerts generates the PKI in dir/tls with openssl (P-256 keys, valid
// for two days).
func (h *harness) makeCerts() (certs, error) {
	openssl, err := lookPath("openssl")
	if err != nil {
		return certs{}, err
	}
	dir := filepath.Join(h.dir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return certs{}, err
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	c := certs{ca: f("ca.pem"), serverCert: f("server.pem"), serverKey: f("server.key"),
		clientCert: f("client.pem"), clientKey: f("client.key")}
	var san []string
	for _, host := range []string{erlTLSGate, erlTLSNode, erlPassGate} {
		san = append(san, "DNS:"+host)
	}
	if err := os.WriteFile(f("server.ext"), []byte("subjectAltName="+strings.Join(san, ",")+
		"\nextendedKeyUsage=serverAuth\n"), 0o600); err != nil {
		return certs{}, err
	}
	if err := os.WriteFile(f("client.ext"), []byte("extendedKeyUsage=clientAuth\n"), 0o600); err != nil {
		return certs{}, err
	}
	newKey := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"}
	steps := [][]string{
		append([]string{"req", "-x509", "-new", "-days", "2", "-subj", "/CN=distgate bench CA",
			"-keyout", f("ca.key"), "-out", c.ca}, newKey...),
		append([]string{"req", "-new", "-subj", "/CN=distgate bench server", "-keyout", c.serverKey, "-out", f("server.csr")}, newKey...),
		{"x509", "-req", "-in", f("server.csr"), "-CA", c.ca, "-CAkey", f("ca.key"), "-CAcreateserial",
			"-days", "2", "-extfile", f("server.ext"), "-out", c.serverCert},
		append([]string{"req", "-new", "-subj", "/CN=benchtls@127.0.0.1", "-keyout", c.clientKey, "-out", f("client.csr")}, newKey...),
		{"x509", "-req", "-in", f("client.csr"), "-CA", c.ca, "-CAkey", f("ca.key"), "-CAcreateserial",
			"-days", "2", "-extfile", f("client.ext"), "-out", c.clientCert},
	}
	for _, s := range steps {
		if out, err := output(openssl, s...); err != nil {
			return certs{}, fmt.Errorf("openssl %s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	// distgate checks its key's mode as it does the cookie file's.
	for _, k := range []string{f("ca.key"), c.serverKey, c.clientKey} {
		if err := os.Chmod(k, 0o600); err != nil {
			return certs{}, err
		}
	}
	return c, nil
}

// optfiles writes the -ssl_dist_optfile of the TLS node (verifies the
// client's certificate, requires one) and of the TLS client (verifies the
// server's, erlang-dist-facts.md §12.2).
func (h *harness) optfiles(c certs) (server, client string, err error) {
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	srv := fmt.Sprintf(`[{server, [{certfile, %s}, {keyfile, %s}, {cacertfile, %s},
           {verify, verify_peer}, {fail_if_no_peer_cert, true}, {secure_renegotiate, true}]},
 {client, []}].
`, q(c.serverCert), q(c.serverKey), q(c.ca))
	cli := fmt.Sprintf(`[{server, []},
 {client, [{certfile, %s}, {keyfile, %s}, {cacertfile, %s},
           {verify, verify_peer}, {secure_renegotiate, true}]}].
`, q(c.clientCert), q(c.clientKey), q(c.ca))
	if server, err = writeFile(h.dir, "tls/server-dist.conf", srv); err != nil {
		return "", "", err
	}
	client, err = writeFile(h.dir, "tls/client-dist.conf", cli)
	return server, client, err
}

// tlsPath is one path of test 8.
type tlsPath struct {
	label, head string
	node        string
	client      *erlClient
}

// tlsGateConfig is a one-gate distgate in front of an Erlang node, with
// the bench's limits; distgateText sets its [gate.tls] table.
func tlsGateConfig(listen, upstream, requireFlags string) *config.File {
	f := distgateConfig(gateAddrs{listen: listen, upstream: upstream}, "warn", "close")
	f.Gate[0].Name = "erlang-tls"
	f.Gate[0].RequireFlags = requireFlags
	return f
}

// startTLSGate checks and starts a TLS distgate variant; a refusal of its
// configuration comes back as the reason to skip it.
func (h *harness) startTLSGate(name, listen, upstream, requireFlags string, tls *config.TLS) (*testenv.Proc, string, error) {
	text, err := distgateText(tlsGateConfig(listen, upstream, requireFlags), "", tls)
	if err != nil {
		return nil, "", err
	}
	conf, err := h.checkDistgate(name+".toml", text)
	if err != nil {
		return nil, err.Error(), nil
	}
	p, err := h.start(name, h.bins["distgate"], "run", "-config", conf)
	if err != nil {
		return nil, "", err
	}
	if err := testenv.WaitPort(listen, 10*time.Second, p); err != nil {
		p.Stop(syscall.SIGTERM, 5*time.Second)
		return nil, fmt.Sprintf("it did not listen: %v", err), nil
	}
	return p, "", nil
}

// testTLS is test 8: Erlang erpc latency and a 64 MiB call, interleaved
// per round, over
//
//	direct       plain TCP client → plain node (the baseline)
//	distgate     (c) plain TCP client → distgate → plain node
//	distgate-tls (a) inet_tls client → distgate, mode = "terminate" → plain node
//	tls-node     (b) inet_tls client → a node running inet_tls itself
//
// and, with -variants passthrough, inet_tls client → distgate, mode =
// "passthrough" → inet_tls node. A path that cannot run is skipped with
// the reason; (a) runs only where distgate accepts its configuration.
func (h *harness) testTLS(r *erlRun, plain *erlClient) error {
	paths := []tlsPath{{label: "direct", head: "plain TCP, no proxy", node: h.target("direct").erl.name, client: plain}}
	if dg := h.target("distgate"); dg != nil {
		paths = append(paths, tlsPath{label: "distgate", head: "(c) plain TCP → distgate → node", node: dg.erl.name, client: plain})
	} else {
		h.skip("tls (c)", "plain TCP through distgate needs the `user` variant")
	}
	tlsSkip := func(why string) {
		for _, n := range []string{"tls-node", "distgate-tls", "distgate-passthrough"} {
			h.skip(n, why)
		}
	}
	c, err := h.makeCerts()
	if err != nil {
		tlsSkip(err.Error())
		return h.tlsRounds(paths)
	}
	srvOpt, cliOpt, err := h.optfiles(c)
	if err != nil {
		return err
	}
	tlsArgs := func(optfile string) []string {
		return []string{"-proto_dist", "inet_tls", "-ssl_dist_optfile", optfile}
	}
	if _, err := r.node("tls-node", testenv.Erl{Name: "app@" + erlTLSNode, Addr: erlTLSNode, Args: tlsArgs(srvOpt)}); err != nil {
		tlsSkip(fmt.Sprintf("a node with inet_tls_dist did not start (is erlang-ssl installed?): %v", err))
		return h.tlsRounds(paths)
	}
	tc, err := r.client("client-tls", testenv.Erl{Name: "benchtls@127.0.0.1", Args: tlsArgs(cliOpt)})
	if err != nil {
		tlsSkip(fmt.Sprintf("an inet_tls client did not start: %v", err))
		return h.tlsRounds(paths)
	}
	ep := func(ip string) string { return fmt.Sprintf("%s:%d", ip, h.erlPort) }
	if !h.variants["tls"] {
		h.skip("distgate-tls", fmt.Sprintf("not in -variants (VARIANTS=%s)", variantList(h.variants)))
	} else {
		p, why, err := h.startTLSGate("distgate-tls", ep(erlTLSGate), ep(erlTLSGateNode), "otp25", &config.TLS{
			Mode: "terminate", Cert: c.serverCert, Key: c.serverKey, ClientCA: c.ca})
		switch {
		case err != nil:
			return err
		case p == nil:
			h.skip("distgate-tls", why)
		default:
			defer p.Stop(syscall.SIGTERM, 5*time.Second)
			if _, err := r.node("tls-gate-node", testenv.Erl{Name: "app@" + erlTLSGate, Addr: erlTLSGateNode}); err != nil {
				return err
			}
			paths = append(paths, tlsPath{label: "distgate-tls", head: "(a) inet_tls → distgate terminate → node",
				node: "app@" + erlTLSGate, client: tc})
		}
	}
	paths = append(paths, tlsPath{label: "tls-node", head: "(b) inet_tls → inet_tls node", node: "app@" + erlTLSNode, client: tc})
	if !h.variants["passthrough"] {
		h.skip("distgate-passthrough", fmt.Sprintf("not in -variants (VARIANTS=%s)", variantList(h.variants)))
	} else {
		p, why, err := h.startTLSGate("distgate-passthrough", ep(erlPassGate), ep(erlPassNode), "", &config.TLS{Mode: "passthrough"})
		switch {
		case err != nil:
			return err
		case p == nil:
			h.skip("distgate-passthrough", why)
		default:
			defer p.Stop(syscall.SIGTERM, 5*time.Second)
			if _, err := r.node("tls-pass-node", testenv.Erl{Name: "app@" + erlPassGate, Addr: erlPassNode, Args: tlsArgs(srvOpt)}); err != nil {
				return err
			}
			paths = append(paths, tlsPath{label: "distgate-passthrough", head: "inet_tls → distgate passthrough → inet_tls node",
				node: "app@" + erlPassGate, client: tc})
		}
	}
	return h.tlsRounds(paths)
}

// tlsRounds runs test 8's interleaved rounds. The baseline must work; any
// other path that fails is dropped from the rounds that follow, with the
// reason.
func (h *harness) tlsRounds(paths []tlsPath) error {
	h.tlsPaths = paths
	logf("tls: %d rounds of %d erpc:call's and one %d MiB binary over %d paths", h.o.tlsRounds, h.o.tlsCalls, h.o.tlsMiB, len(paths))
	dropped := map[string]bool{}
	for r := 1; r <= h.o.tlsRounds; r++ {
		for _, p := range paths {
			if dropped[p.label] {
				continue
			}
			s, err := h.callsRound(p.client, "tls", p.label, p.node, r, h.o.tlsCalls, h.o.tlsMiB)
			if err != nil {
				if p.label == "direct" {
					return err
				}
				dropped[p.label] = true
				h.skip(p.label, fmt.Sprintf("failed in round %d: %v", r, firstLine(err.Error())))
				continue
			}
			logf("tls round %d %s", r, s)
		}
	}
	return nil
}
