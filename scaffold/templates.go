package scaffold

import (
	"fmt"
	"os"
	"strings"

	"github.com/distgate/distgate/config"
)

// gateName is the node's name part as a gate name ([A-Za-z0-9_.-]{1,64}).
func (s *setup) gateName() string {
	if len(s.name) > 64 {
		return s.name[:64]
	}
	return s.name
}

// names are the allow entry's globs: an Elixir release's remote and rpc
// helpers (stop and pid go through rpc); nil (any name) for Erlang.
func (s *setup) names() []string {
	if s.Kind != KindElixir {
		return nil
	}
	return []string{"rem-*-" + s.name + "@*", "rpc-*-" + s.name + "@*"}
}

// resolves says how clients find the node, for the comments.
func (s *setup) resolves() string {
	if s.hostIsIP() {
		return fmt.Sprintf("Clients dial the node's host part, %s, on port %d.", s.host, s.Port)
	}
	return fmt.Sprintf("Clients find the node by its name: %s must resolve to %s\n"+
		"# where they run (DNS, or the line \"%s %s\" in /etc/hosts).", s.host, s.public, s.public, s.host)
}

// distgateTOML encodes the gate with config.File.Encode, adds the comments,
// and checks that config.Load reads it back.
func distgateTOML(s *setup) ([]byte, error) {
	f := config.File{Gate: []config.Gate{{
		Name:     s.gateName(),
		Listen:   s.listen(),
		Upstream: s.upstream(),
		Allow:    []config.Allow{{Sources: s.sources, Names: s.names()}},
	}}}
	body, err := f.Encode()
	if err != nil {
		return nil, fmt.Errorf("encode distgate.toml: %w", err)
	}
	nodeFlags := "(rel/vm.args.eex)"
	if s.Kind == KindErlang {
		nodeFlags = fmt.Sprintf("(erl ... -start_epmd false -erl_epmd_port %d\n#   -kernel inet_dist_use_interface '{127,0,0,1}')", s.Port)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# distgate.toml for the node %s,
# written by `+"`distgate init %s`"+`.
#
# The node listens on %s only %s.
# distgate owns %s and hands what it admits to the node. One
# port number on both sides, so every client keeps -erl_epmd_port %d.
# %s
#
#   distgate check -config distgate.toml    validate, print the effective configuration
#   distgate run -config distgate.toml
#
# Keys left out take their defaults; config.example.toml documents every key.

`, s.Node, s.Kind, s.upstream(), nodeFlags, s.listen(), s.Port, s.resolves())
	allowNote := []string{
		"Who may connect. A source not listed here is closed before a byte is",
		"read, and the node never hears of it.",
	}
	if s.Kind == KindErlang {
		allowNote = append(allowNote,
			"No names: any node name from these sources. To narrow it, list the",
			"names your clients use (globs): a shell started with",
			fmt.Sprintf("`erl -name ops@laptop.example ... -remsh %s` sends ops@laptop.example,", s.Node),
			`so names = ["ops@*"] admits it and nothing else.`)
	}
	b.WriteString(annotate(string(body), map[string][]string{
		"gate.listen":   {"the public distribution port"},
		"gate.upstream": {"the node, on loopback, on the same port"},
		"gate.allow":    allowNote,
		"gate.allow.names": {
			fmt.Sprintf("bin/%s remote and bin/%s rpc (and stop, pid, which use rpc) name", s.name, s.name),
			fmt.Sprintf("their helper nodes rem-XXXX-%s and rpc-XXXX-%s.", s.Node, s.Node),
		},
	}))
	out := []byte(b.String())
	if err := loads(out); err != nil {
		return nil, fmt.Errorf("the distgate.toml written does not load: %w", err)
	}
	return out, nil
}

// loads checks conf with config.Load, as `distgate check` would, with no
// DISTGATE_* variables in the way.
func loads(conf []byte) error {
	f, err := os.CreateTemp("", "distgate-init-*.toml")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	_, err = config.Load(f.Name(), nil)
	return err
}

// annotate adds comment lines above the keys and tables of an encoded
// configuration (keyed "table.key", or "table" for a table's header), and
// drops keys set to "" and the tables left empty: they are defaults that
// config.File spells out, and a generated file should show what was chosen.
func annotate(encoded string, comments map[string][]string) string {
	type block struct {
		header string   // the table's header line; "" for the top level
		table  string   // dotted name
		lines  []string // its key lines, comments included
		keys   int
	}
	var blocks []*block
	cur := &block{}
	blocks = append(blocks, cur)
	comment := func(dst []string, key, line string) []string {
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		for _, c := range comments[key] {
			dst = append(dst, indent+"# "+c)
		}
		return dst
	}
	for _, line := range strings.Split(encoded, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(t, "["):
			cur = &block{header: line, table: strings.Trim(t, "[]")}
			blocks = append(blocks, cur)
		case t == "":
		case strings.HasSuffix(t, `= ""`):
		default:
			key, _, _ := strings.Cut(t, " =")
			if cur.table != "" {
				key = cur.table + "." + key
			}
			cur.lines = comment(cur.lines, key, line)
			cur.lines = append(cur.lines, line)
			cur.keys++
		}
	}
	var b strings.Builder
	for _, bl := range blocks {
		if bl.keys == 0 {
			continue
		}
		if bl.header != "" {
			if b.Len() > 0 {
				b.WriteString("\n")
			}
			for _, l := range comment(nil, bl.table, bl.header) {
				b.WriteString(l + "\n")
			}
			b.WriteString(bl.header + "\n")
		}
		for _, l := range bl.lines {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// envSh is rel/env.sh.eex: long names, the node's name, and the cookie.
func envSh(s *setup) string {
	return fmt.Sprintf(`#!/bin/sh
# Written by `+"`distgate init elixir`"+`: the node %[1]s, epmdless, behind
# distgate (distgate.toml). Long names: the host part needs a dot or must be
# an IP address, else clients refuse to dial it ("Hostname ... is illegal").
export RELEASE_DISTRIBUTION=name
export RELEASE_NODE=%[1]s

# The cookie must be the same for the node and for bin/%[2]s remote and rpc on
# every machine. Unset, a release reads releases/COOKIE, which every build
# writes anew with a random value: two builds, two cookies, and every rpc
# fails. Set RELEASE_COOKIE in the environment (under systemd: an
# EnvironmentFile=), or keep it in a file that only you can read:
#   tr -dc A-Za-z0-9 </dev/urandom | head -c 40 >~/.%[2]s.cookie && chmod 600 ~/.%[2]s.cookie
if [ -z "$RELEASE_COOKIE" ] && [ -r "$HOME/.%[2]s.cookie" ]; then
  RELEASE_COOKIE="$(cat "$HOME/.%[2]s.cookie")"
  export RELEASE_COOKIE
fi
`, s.Node, s.name)
}

// vmArgs is rel/vm.args.eex: the node, epmdless, on loopback.
func vmArgs(s *setup) string {
	return fmt.Sprintf(`## Written by `+"`distgate init elixir`"+`. The node: no epmd, the fixed
## distribution port %[1]d, on %[2]s only; distgate owns %[3]s.
## Give -erl_epmd_port once: given twice (here and in ELIXIR_ERL_OPTIONS),
## OTP ignores it and listens on a random port.
-start_epmd false
-erl_epmd_port %[1]d
-kernel inet_dist_use_interface {127,0,0,1}
`, s.Port, nodeAddr, s.listen())
}

// remoteVMArgs is rel/remote.vm.args.eex: bin/APP remote and rpc.
func remoteVMArgs(s *setup) string {
	return fmt.Sprintf(`## Written by `+"`distgate init elixir`"+`. bin/%[2]s remote and rpc (and stop,
## pid): no epmd, the same port as the node, no listener of their own.
-start_epmd false
-erl_epmd_port %[1]d
-dist_listen false
`, s.Port, s.name)
}
