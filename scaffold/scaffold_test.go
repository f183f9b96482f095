package scaffold

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/distgate/distgate/config"
)

func runInit(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = Main(args, &o, &e)
	return code, o.String(), e.String()
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lines returns the lines of s that are not comments or blank.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
	}
	return out
}

// The Elixir setup: a distgate.toml that loads and puts the gate on the
// public address in front of the node on loopback on the same port,
// admitting the release's remote and rpc helpers from the sources given;
// rel/ files that put the node there; what was written and the next three
// commands on stdout.
func TestInitElixir(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runInit(t, "elixir", "-node", "myapp@myhost.example", "-public", "203.0.113.5",
		"-allow", "198.51.100.7/32", "-allow", "2001:db8::/64", "-port", "9200", "-out", dir)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}

	l, err := config.Load(filepath.Join(dir, "distgate.toml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Warnings) != 0 {
		t.Errorf("warnings: %v", l.Warnings)
	}
	g := l.File.Gate
	if len(g) != 1 || g[0].Name != "myapp" || g[0].Listen != "203.0.113.5:9200" || g[0].Upstream != "127.0.0.1:9200" {
		t.Fatalf("gate %+v", g)
	}
	if len(g[0].Allow) != 1 || !slices.Equal(g[0].Allow[0].Sources, []string{"198.51.100.7/32", "2001:db8::/64"}) ||
		!slices.Equal(g[0].Allow[0].Names, []string{"rem-*-myapp@*", "rpc-*-myapp@*"}) {
		t.Errorf("allow %+v", g[0].Allow)
	}
	// Left to their defaults, not spelled out as empty strings.
	conf := read(t, filepath.Join(dir, "distgate.toml"))
	if strings.Contains(conf, `""`) || strings.Contains(conf, "[log]") {
		t.Errorf("empty keys or tables written:\n%s", conf)
	}
	if !strings.Contains(conf, `"203.0.113.5 myhost.example" in /etc/hosts`) {
		t.Errorf("no word on how the name resolves:\n%s", conf)
	}

	env := read(t, filepath.Join(dir, "rel", "env.sh.eex"))
	for _, want := range []string{"export RELEASE_DISTRIBUTION=name", "export RELEASE_NODE=myapp@myhost.example", "RELEASE_COOKIE"} {
		if !slices.Contains(lines(env), want) && !strings.Contains(env, want) {
			t.Errorf("env.sh.eex lacks %q:\n%s", want, env)
		}
	}
	if got, want := lines(read(t, filepath.Join(dir, "rel", "vm.args.eex"))),
		[]string{"-start_epmd false", "-erl_epmd_port 9200", "-kernel inet_dist_use_interface {127,0,0,1}"}; !slices.Equal(got, want) {
		t.Errorf("vm.args.eex: %q, want %q", got, want)
	}
	if got, want := lines(read(t, filepath.Join(dir, "rel", "remote.vm.args.eex"))),
		[]string{"-start_epmd false", "-erl_epmd_port 9200", "-dist_listen false"}; !slices.Equal(got, want) {
		t.Errorf("remote.vm.args.eex: %q, want %q", got, want)
	}
	// EEx would evaluate these; none may appear.
	for _, f := range []string{"env.sh.eex", "vm.args.eex", "remote.vm.args.eex"} {
		if strings.Contains(read(t, filepath.Join(dir, "rel", f)), "<%") {
			t.Errorf("%s holds an EEx tag", f)
		}
	}

	for _, want := range []string{
		"wrote " + filepath.Join(dir, "distgate.toml"), "wrote " + filepath.Join(dir, "rel", "remote.vm.args.eex"),
		"(cd " + dir + " && MIX_ENV=prod mix release)",
		filepath.Join(dir, "_build/prod/rel/myapp/bin/myapp") + " daemon",
		"distgate run -config " + filepath.Join(dir, "distgate.toml"),
		"bin/myapp rpc 'IO.puts(node())'",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if n := strings.Count(stdout, "\n  # "); n != 3 {
		t.Errorf("%d next commands, want 3:\n%s", n, stdout)
	}
}

// The Erlang setup: distgate.toml only, any name, with a comment that says
// how to narrow it; the default port.
func TestInitErlang(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runInit(t, "-out", dir, "erlang", "-node", "app@203.0.113.5", "-public", "203.0.113.5", "-allow", "10.8.0.7")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "distgate.toml" {
		t.Errorf("wrote %v, want distgate.toml only", ents)
	}
	l, err := config.Load(filepath.Join(dir, "distgate.toml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	g := l.File.Gate[0]
	if g.Name != "app" || g.Listen != "203.0.113.5:9100" || g.Upstream != "127.0.0.1:9100" ||
		len(g.Allow) != 1 || g.Allow[0].Names != nil || !slices.Equal(g.Allow[0].Sources, []string{"10.8.0.7"}) {
		t.Errorf("gate %+v", g)
	}
	conf := read(t, filepath.Join(dir, "distgate.toml"))
	if !strings.Contains(conf, `names = ["ops@*"]`) || !strings.Contains(conf, "host part, 203.0.113.5") {
		t.Errorf("no comment on narrowing the names, or on the IP host:\n%s", conf)
	}
	if !strings.Contains(stdout, "-remsh app@203.0.113.5") || !strings.Contains(stdout, "inet_dist_use_interface '{127,0,0,1}'") {
		t.Errorf("stdout:\n%s", stdout)
	}
}

// Usage errors exit 2, say what is wrong, and write nothing.
func TestInitRefuses(t *testing.T) {
	ok := []string{"-node", "myapp@myhost.example", "-public", "203.0.113.5", "-allow", "198.51.100.7"}
	with := func(kv ...string) []string {
		args := append([]string{"elixir"}, ok...)
		for i := 0; i < len(kv); i += 2 {
			if j := slices.Index(args, kv[i]); j >= 0 {
				args[j+1] = kv[i+1]
			} else {
				args = append(args, kv[i], kv[i+1])
			}
		}
		return args
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{with("-node", "myapp@myhost"), `the host part "myhost" has no dot and is not an IP address`},
		{with("-node", "myapp@localhost"), `"Hostname localhost is illegal"`},
		{with("-node", "myapp"), "want NAME@HOST"},
		{with("-node", "a@b@c.d"), "want NAME@HOST"},
		{with("-node", "my.app@myhost.example"), "letters, digits, _ and - only"},
		{with("-node", "myapp@myhost..example"), "empty label"},
		{with("-node", "myapp@::1"), "IPv6"},
		{with("-node", ""), "-node: give the node's name"},
		{with("-public", "0.0.0.0"), "wildcard bind"},
		{with("-public", "127.0.0.1"), "where the node listens"},
		{with("-public", "203.0.113.5:9100"), "not an IP address"},
		{with("-public", "2001:db8::1"), "IPv6"},
		{with("-allow", "10.0.0.300/8"), `-allow "10.0.0.300/8": not a CIDR`},
		{with("-allow", "10.0.0.5/8"), `did you mean "10.0.0.0/8"`},
		{with("-port", "0"), "-port 0: not a port"},
		{with("-port", "70000"), "not a port"},
		{[]string{"-node", "myapp@myhost.example", "-public", "203.0.113.5"}, "say which kind"},
		{[]string{"phoenix", "-node", "myapp@myhost.example", "-public", "203.0.113.5", "-allow", "1.2.3.4"}, `"phoenix": want elixir or erlang`},
		{[]string{"elixir", "-node", "myapp@myhost.example", "-public", "203.0.113.5"}, "-allow: give at least one source"},
		{[]string{"elixir", "erlang"}, `unexpected argument "erlang"`},
		{with("-nosuch", "x"), "flag provided but not defined"},
	} {
		dir := t.TempDir()
		code, stdout, stderr := runInit(t, append(tt.args, "-out", dir)...)
		if code != 2 || !strings.Contains(stderr, tt.want) || stdout != "" {
			t.Errorf("init %q: exit %d, stderr %q, stdout %q; want 2 and %q", tt.args, code, stderr, stdout, tt.want)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("init %q wrote %v", tt.args, ents)
		}
	}
}

// An existing file is kept, and nothing else is written, unless -force.
func TestInitExisting(t *testing.T) {
	dir := t.TempDir()
	mine := "-start_epmd false\n"
	if err := os.MkdirAll(filepath.Join(dir, "rel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rel", "vm.args.eex"), []byte(mine), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"elixir", "-node", "myapp@myhost.example", "-public", "203.0.113.5", "-allow", "198.51.100.7", "-out", dir}
	code, _, stderr := runInit(t, args...)
	if code != 2 || !strings.Contains(stderr, filepath.Join(dir, "rel", "vm.args.eex")+": already exists") || !strings.Contains(stderr, "-force") {
		t.Fatalf("exit %d, stderr %q; want 2 naming the file", code, stderr)
	}
	if read(t, filepath.Join(dir, "rel", "vm.args.eex")) != mine {
		t.Error("the existing file was changed")
	}
	if _, err := os.Stat(filepath.Join(dir, "distgate.toml")); err == nil {
		t.Error("distgate.toml was written although init refused")
	}

	if code, _, stderr := runInit(t, append(args, "-force")...); code != 0 {
		t.Fatalf("-force: exit %d, %s", code, stderr)
	}
	if got := read(t, filepath.Join(dir, "rel", "vm.args.eex")); !strings.Contains(got, "-erl_epmd_port 9100") {
		t.Errorf("-force did not overwrite: %q", got)
	}
}

// What check would warn about, init warns about, and still writes.
func TestInitWarns(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runInit(t, "erlang", "-node", "app@myhost.example", "-public", "203.0.113.5", "-allow", "0.0.0.0/0", "-out", dir)
	if code != 0 || !strings.Contains(stderr, `warning: gate "app": allow[0].sources[0]: "0.0.0.0/0" admits every IPv4 source`) {
		t.Errorf("exit %d, stderr %q; want 0 and a warning", code, stderr)
	}
}

// A directory that cannot be written is a runtime failure (1), not usage.
func TestInitUnwritable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runInit(t, "erlang", "-node", "app@myhost.example", "-public", "203.0.113.5", "-allow", "198.51.100.7",
		"-out", filepath.Join(file, "sub"))
	if code != 1 || stderr == "" {
		t.Errorf("exit %d, stderr %q; want 1", code, stderr)
	}
}

// annotate drops keys left empty and tables that hold nothing else, and
// puts comments above keys and headers at their indentation.
func TestAnnotate(t *testing.T) {
	in := "top = 1\nempty = \"\"\n\n[log]\n  level = \"\"\n\n[[gate]]\n  name = \"g\"\n\n  [[gate.allow]]\n    names = [\"a\"]\n"
	got := annotate(in, map[string][]string{"gate.name": {"the name"}, "gate.allow": {"who"}, "top": {"first"}})
	want := "# first\ntop = 1\n\n[[gate]]\n  # the name\n  name = \"g\"\n\n  # who\n  [[gate.allow]]\n    names = [\"a\"]\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
