// Package scaffold writes the files of `distgate init` (design: init): a
// distgate.toml and, for an Elixir release, the rel/ templates that put the
// node behind distgate in the deployment topology the README teaches. The
// node binds 127.0.0.1:PORT, distgate binds PUBLIC:PORT with upstream
// 127.0.0.1:PORT: one port number on both sides, so every client keeps the
// same -erl_epmd_port and finds the node by resolving its host part.
package scaffold

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Kinds of node init writes for.
const (
	KindElixir = "elixir" // a mix release: distgate.toml and rel/*.eex
	KindErlang = "erlang" // a plain erl node: distgate.toml only
)

// DefaultPort is the distribution port when none is given.
const DefaultPort = 9100

// nodeAddr is where the node listens: loopback, so that only distgate (and
// this machine) can reach it.
const nodeAddr = "127.0.0.1"

// ErrExists is returned, wrapped, by Write when a file is already there and
// force is off.
var ErrExists = errors.New("already exists")

// Options are init's flags.
type Options struct {
	Kind   string   // KindElixir or KindErlang
	Node   string   // the node's name, NAME@HOST
	Public string   // the address distgate listens on (an IPv4 address)
	Allow  []string // sources that may connect: CIDRs or bare addresses
	Port   int      // the distribution port (init's default: DefaultPort)
}

// File is one file to write.
type File struct {
	Path    string // relative to the output directory, slash-separated
	Content []byte
}

// setup is Options, checked and split up.
type setup struct {
	Options
	name, host string // the node name's two parts
	public     netip.Addr
	sources    []string // as given, trimmed
}

func (s *setup) listen() string   { return netip.AddrPortFrom(s.public, uint16(s.Port)).String() }
func (s *setup) upstream() string { return nodeAddr + ":" + strconv.Itoa(s.Port) }
func (s *setup) hostIsIP() bool   { _, err := netip.ParseAddr(s.host); return err == nil }

// Plan checks o and returns the files to write, distgate.toml first. It
// writes nothing. Every error names the flag and the value.
func Plan(o Options) ([]File, error) {
	s, err := check(o)
	if err != nil {
		return nil, err
	}
	conf, err := distgateTOML(s)
	if err != nil {
		return nil, err
	}
	files := []File{{Path: "distgate.toml", Content: conf}}
	if s.Kind == KindElixir {
		files = append(files,
			File{Path: "rel/env.sh.eex", Content: []byte(envSh(s))},
			File{Path: "rel/vm.args.eex", Content: []byte(vmArgs(s))},
			File{Path: "rel/remote.vm.args.eex", Content: []byte(remoteVMArgs(s))},
		)
	}
	return files, nil
}

func check(o Options) (*setup, error) {
	s := &setup{Options: o}
	if o.Kind != KindElixir && o.Kind != KindErlang {
		return nil, fmt.Errorf("the kind of node is %q: want elixir or erlang", o.Kind)
	}
	if s.Port < 1 || s.Port > 65535 {
		return nil, fmt.Errorf("-port %d: not a port (1-65535)", o.Port)
	}
	var err error
	if s.name, s.host, err = parseNode(o.Node); err != nil {
		return nil, err
	}
	if s.public, err = parsePublic(o.Public); err != nil {
		return nil, err
	}
	if len(o.Allow) == 0 {
		return nil, errors.New("-allow: give at least one source that may connect (a CIDR or an address; repeat -allow for more)")
	}
	for _, a := range o.Allow {
		a = strings.TrimSpace(a)
		if err := checkSource(a); err != nil {
			return nil, fmt.Errorf("-allow %q: %w", a, err)
		}
		s.sources = append(s.sources, a)
	}
	return s, nil
}

// parseNode splits NAME@HOST and refuses what OTP's -name refuses: a host
// part with no dot that is not an IP address. The node starts with such a
// name, but every client started with -name refuses to dial it ("Hostname
// myhost is illegal"), so nothing ever reaches distgate or the node, and
// neither logs a thing.
func parseNode(n string) (name, host string, err error) {
	if n == "" {
		return "", "", errors.New("-node: give the node's name, NAME@HOST (e.g. myapp@myhost.example)")
	}
	name, host, ok := strings.Cut(n, "@")
	if !ok || strings.Contains(host, "@") || name == "" || host == "" {
		return "", "", fmt.Errorf("-node %q: want NAME@HOST, one @ with both parts non-empty (e.g. myapp@myhost.example)", n)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return "", "", fmt.Errorf("-node %q: the name part %q may hold letters, digits, _ and - only", n, name)
		}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !a.Is4() {
			return "", "", fmt.Errorf("-node %q: the host part is an IPv6 address; Erlang's default distribution (inet_tcp) dials IPv4 only: use an IPv4 address or a name that resolves to one", n)
		}
		return name, host, nil
	}
	if !strings.Contains(host, ".") {
		return "", "", fmt.Errorf("-node %q: the host part %q has no dot and is not an IP address; "+
			"with long names (-name, RELEASE_DISTRIBUTION=name) every client refuses to dial it (\"Hostname %s is illegal\"), so nothing reaches distgate or the node: "+
			"use a fully qualified name such as %s@%s.example and make it resolve to the public address (DNS, or a line in /etc/hosts)",
			n, host, host, name, host)
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" {
			return "", "", fmt.Errorf("-node %q: the host part %q has an empty label (two dots in a row, or a leading or trailing dot)", n, host)
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return "", "", fmt.Errorf("-node %q: the host part %q may hold letters, digits, - and dots only", n, host)
			}
		}
	}
	return name, host, nil
}

// parsePublic checks the address distgate is to listen on.
func parsePublic(p string) (netip.Addr, error) {
	if p == "" {
		return netip.Addr{}, errors.New("-public: give the address clients reach this machine on (e.g. 203.0.113.5); distgate listens there")
	}
	a, err := netip.ParseAddr(p)
	switch {
	case err != nil:
		return netip.Addr{}, fmt.Errorf("-public %q: not an IP address (give the address itself, without a port: -port sets that)", p)
	case !a.Is4():
		return netip.Addr{}, fmt.Errorf("-public %q: an IPv6 address; Erlang's default distribution (inet_tcp) dials IPv4 only, so init writes the IPv4 setup: give the IPv4 address", p)
	case a.IsUnspecified():
		return netip.Addr{}, fmt.Errorf("-public %q: distgate must bind the public address itself: Linux refuses a wildcard bind on a port that the node's %s already holds", p, nodeAddr)
	case a == netip.MustParseAddr(nodeAddr):
		return netip.Addr{}, fmt.Errorf("-public %q: that is where the node listens; give the address clients reach this machine on", p)
	}
	return a, nil
}

// checkSource accepts what a gate's allow.sources accepts: a CIDR with no
// host bits set, or a bare address.
func checkSource(s string) error {
	if !strings.Contains(s, "/") {
		if _, err := netip.ParseAddr(s); err != nil || strings.Contains(s, "%") {
			return errors.New("not a CIDR or an address")
		}
		return nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Addr().Zone() != "" {
		return errors.New("not a CIDR or an address")
	}
	if p != p.Masked() {
		return fmt.Errorf("host bits set (did you mean %q?)", p.Masked())
	}
	return nil
}

// Write writes files into dir, creating dir and its subdirectories. Unless
// force is set it first checks that none of the files exists, and if one
// does it writes nothing and returns an error wrapping ErrExists.
func Write(dir string, files []File, force bool) error {
	if !force {
		var there []string
		for _, f := range files {
			p := filepath.Join(dir, filepath.FromSlash(f.Path))
			if _, err := os.Lstat(p); err == nil {
				there = append(there, p)
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if len(there) > 0 {
			return fmt.Errorf("%s: %w (nothing written; -force overwrites)", strings.Join(there, ", "), ErrExists)
		}
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Content, 0o644); err != nil {
			return err
		}
	}
	return nil
}
