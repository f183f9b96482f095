package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

// TestInitElixirRelease: what `distgate init elixir` writes is enough. A
// bare `mix new` app with init's rel/ files, released as they are, runs
// behind a gate started from init's distgate.toml, and `bin/APP rpc` from
// the allowed source reaches the node through it. Addresses and port are
// substituted as in the README's test (readmeSub), in init's output.
func TestInitElixirRelease(t *testing.T) {
	t.Parallel()
	const app, node = "shop", "shop@shop.example"
	out := t.TempDir()
	stdout, stderr, code := testenv.RunDistgate(t, nil, "init", "elixir", "-node", node,
		"-public", "203.0.113.5", "-allow", "198.51.100.7/32", "-out", out)
	if code != 0 {
		t.Fatalf("init: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"wrote " + filepath.Join(out, "rel", "vm.args.eex"), "MIX_ENV=prod mix release", "daemon", "distgate run -config"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("init's output lacks %q:\n%s", want, stdout)
		}
	}

	// mix new, init's rel/ files, MIX_ENV=prod mix release (once per run).
	root := testenv.Release(t, app, filepath.Join(out, "rel"))

	port := testenv.AppPort(t)
	sub := readmeSub{port}
	home := t.TempDir()
	hosts := writeInetrc(t, home, sub.apply("203.0.113.5 shop.example"))
	env := releaseRun(t, root, home, hosts, sub)
	conf, err := os.ReadFile(filepath.Join(out, "distgate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	g := testenv.StartGate(t, decodeGate(t, home, sub.apply(string(conf))))

	bin := filepath.Join(root, "bin", app)
	n := testenv.Start(t, testenv.Cmd{Name: "release", Args: []string{bin, "start"}, Dir: home, Env: env, Grace: 15 * time.Second})
	if err := testenv.WaitPort(testenv.Addr(testenv.NodeIP, port), testenv.WaitTimeout, n); err != nil {
		t.Fatal(err)
	}

	// From the allowed source (198.51.100.7, substituted).
	mine := append(env[:len(env):len(env)], yourMachine)
	got, err := testenv.Cmd{Args: []string{bin, "rpc", "IO.puts(node())"}, Dir: home, Env: mine}.Run(testenv.ClientTimeout)
	if err != nil || strings.TrimSpace(got) != node {
		t.Fatalf("bin/%s rpc: %v, output %q; want %s", app, err, got, node)
	}
	a := g.Wait(testenv.Msg("admitted"))
	if !regexp.MustCompile(`^rpc-[0-9a-f]{4}-`+regexp.QuoteMeta(node)+`$`).MatchString(a.Str("node")) || !testenv.From("127.0.0.3")(a) {
		t.Errorf("admitted line: %v", a)
	}
	// From elsewhere: refused before the node hears of it.
	if got, err := (testenv.Cmd{Args: []string{bin, "rpc", "IO.puts(node())"}, Dir: home, Env: env}).Run(testenv.ClientTimeout); err == nil {
		t.Errorf("bin/%s rpc from 127.0.0.1 went through:\n%s", app, got)
	}
	g.Wait(testenv.Msg("denied"), testenv.Reason("source_not_allowed"))

	if got, err := (testenv.Cmd{Args: []string{bin, "stop"}, Dir: home, Env: mine}).Run(testenv.ClientTimeout); err != nil {
		t.Fatalf("bin/%s stop: %v\n%s", app, err, got)
	}
	if err := n.WaitExit(testenv.WaitTimeout); err != nil {
		t.Fatalf("the release did not stop: %v", err)
	}
}
