package test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/stress/attack"
)

// The release under test is a bare `mix new demo` app with the templates in
// testdata/release/rel: epmdless, node demo@127.0.0.1 bound to 127.0.0.2, the
// port taken from DIST_PORT when the release runs. It has no dependencies,
// so neither hex nor rebar is needed.
const relName = "demo"

// The names bin/demo rpc and bin/demo remote give their helper nodes.
var (
	rpcHelper = regexp.MustCompile(`^rpc-[0-9a-f]{4}-` + relName + `@127\.0\.0\.1$`)
	remHelper = regexp.MustCompile(`^rem-[0-9a-f]{4}-` + relName + `@127\.0\.0\.1$`)
)

var release struct {
	once sync.Once
	root string // the built release: root/bin/demo
	err  error
}

// buildRelease builds the release once per test binary run, under tmpRoot.
func buildRelease(t *testing.T) string {
	t.Helper()
	release.once.Do(func() { release.root, release.err = doBuildRelease() })
	if release.err != nil {
		t.Fatal(release.err)
	}
	return release.root
}

func doBuildRelease() (string, error) {
	mix, err := exec.LookPath("mix")
	if err != nil {
		return "", fmt.Errorf("the Elixir release test needs Elixir 1.14 or later: `mix` is not on PATH (Debian/Ubuntu: apt-get install elixir)")
	}
	dir := filepath.Join(tmpRoot, "elixir")
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return "", err
	}
	env := cleanEnv("HOME="+home, "MIX_HOME="+filepath.Join(home, ".mix"), "HEX_OFFLINE=1",
		"MIX_ENV=prod", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "ERL_CRASH_DUMP="+filepath.Join(dir, "erl_crash.dump"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := func(wd string, args ...string) error {
		cmd := exec.CommandContext(ctx, mix, args...)
		cmd.Dir, cmd.Env = wd, env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("mix %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run(dir, "new", relName); err != nil {
		return "", err
	}
	proj := filepath.Join(dir, relName)
	tmpls, err := filepath.Glob(filepath.Join("testdata", "release", "rel", "*.eex"))
	if err != nil || len(tmpls) != 3 {
		return "", fmt.Errorf("testdata/release/rel: want 3 templates, found %v (%v)", tmpls, err)
	}
	if err := os.MkdirAll(filepath.Join(proj, "rel"), 0o755); err != nil {
		return "", err
	}
	for _, f := range tmpls {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(proj, "rel", filepath.Base(f)), b, 0o644); err != nil {
			return "", err
		}
	}
	if err := run(proj, "release"); err != nil {
		return "", err
	}
	return filepath.Join(proj, "_build", "prod", "rel", relName), nil
}

// An Elixir release's `bin/demo rpc` goes through distgate from an allowed
// source when the gate allows the rpc-XXXX-demo helper names, and is refused
// by a gate that allows other names only. `bin/demo remote` and
// `bin/demo stop` go through too.
func TestElixirRelease(t *testing.T) {
	t.Parallel()
	root := buildRelease(t)
	bin := filepath.Join(root, "bin", relName)
	p := freePort(t)
	dir := t.TempDir()
	env := cleanEnv("HOME="+dir, "DIST_PORT="+strconv.Itoa(p), "RELEASE_TMP="+filepath.Join(dir, "tmp"),
		"LANG=C.UTF-8", "LC_ALL=C.UTF-8", "ERL_CRASH_DUMP="+filepath.Join(dir, "erl_crash.dump"))

	// The release's scripts exec down to the BEAM, so this PID is the node.
	nodeOut := attack.NewLines()
	start := exec.Command(bin, "start")
	start.Dir, start.Env = dir, env
	start.Stdout, start.Stderr = nodeOut, nodeOut
	if err := start.Start(); err != nil {
		t.Fatalf("bin/%s start: %v", relName, err)
	}
	nodeDone := make(chan struct{})
	go func() { _ = start.Wait(); close(nodeDone) }()
	t.Cleanup(func() {
		stopProcess(start, nodeDone, syscall.SIGTERM, 15*time.Second)
		if t.Failed() {
			t.Logf("release output:\n%s", nodeOut)
		}
	})
	_ = dialRetry(t, "", addr("127.0.0.2", p)).Close()

	relCmd := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir, cmd.Env = dir, env
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	// A gate whose names admit only other-* helpers.
	deny := startGate(t, gateTOML(p, "", allow([]string{"127.0.0.1/32"}, "other-*")))
	if out, err := relCmd("rpc", "IO.puts(node())"); err == nil {
		t.Errorf("rpc through a gate that allows only other-*: succeeded:\n%s", out)
	}
	d := deny.wait(msg("denied"), reason("name_not_allowed"))
	if !rpcHelper.MatchString(d.str("node")) {
		t.Errorf("denied line names %q, want rpc-XXXX-%s@127.0.0.1", d.str("node"), relName)
	}
	if code := deny.stop(); code != 0 {
		t.Fatalf("distgate exit code %d after SIGTERM", code)
	}

	// The gate a release would use: its own rpc and remote helpers.
	// On loopback the release node's own outgoing connections (it reaches
	// back for a remote shell's helper node as it goes) come from 127.0.0.1
	// to 127.0.0.1:P too, so they meet this gate and are denied; they must
	// not use up the source's token bucket before `stop`'s rpc.
	g := startGate(t, gateTOML(p, "rate = 100.0\nburst = 100\n", allow([]string{"127.0.0.1/32"}, "rpc-*-"+relName+"@*", "rem-*-"+relName+"@*")))
	out, err := relCmd("rpc", "IO.puts(node())")
	if err != nil || strings.TrimSpace(out) != relName+"@127.0.0.1" {
		t.Errorf("bin/%s rpc: %v, output %q; want %s@127.0.0.1", relName, err, out, relName)
	}
	a := g.wait(msg("admitted"))
	if !rpcHelper.MatchString(a.str("node")) || a.str("hidden") != "true" {
		t.Errorf("admitted line: %v", a)
	}

	// bin/demo remote needs a terminal: on a pipe IEx runs a limited shell
	// and ignores --remsh. script(1) gives it a pty.
	remote := exec.Command("script", "-qfec", "'"+bin+"' remote", "/dev/null")
	remote.Dir, remote.Env = dir, append(env, "TERM=xterm") // with TERM=dumb, IEx falls back to the limited shell too
	remoteOut := attack.NewLines()
	remote.Stdout, remote.Stderr = remoteOut, remoteOut
	stdin, err := remote.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Start(); err != nil {
		t.Fatalf("script -c 'bin/%s remote': %v", relName, err)
	}
	remoteDone := make(chan struct{})
	go func() { _ = remote.Wait(); close(remoteDone) }()
	t.Cleanup(func() {
		stopProcess(remote, remoteDone, syscall.SIGKILL, 0)
		if t.Failed() {
			t.Logf("remote shell output:\n%s", remoteOut)
		}
	})
	seen := func(s string) func([]string) (int, bool) {
		return func(ls []string) (int, bool) {
			for _, l := range ls {
				if strings.Contains(l, s) {
					return 0, true
				}
			}
			return 0, false
		}
	}
	// The echo of the typed line is not the printed one: it has the quotes.
	_, _ = io.WriteString(stdin, `IO.puts("via remote " <> to_string(node()))`+"\n")
	waitLines(t, remoteOut, remoteDone, "the remote shell to print the node's name", seen("via remote "+relName+"@127.0.0.1"))
	_, _ = io.WriteString(stdin, "\x07") // ^G: the user switch menu; q quits the remote shell only
	waitLines(t, remoteOut, remoteDone, "the user switch menu", seen("User switch command"))
	_, _ = io.WriteString(stdin, "q\n")
	select {
	case <-remoteDone:
	case <-time.After(waitTimeout):
		t.Fatalf("the remote shell did not quit within %v", waitTimeout)
	}
	a = g.wait(msg("admitted"), func(l logLine) bool { return remHelper.MatchString(l.str("node")) })
	if a.str("hidden") != "true" {
		t.Errorf("admitted line: %v", a)
	}
	g.wait(msg("closed"), func(l logLine) bool { return remHelper.MatchString(l.str("node")) })

	if out, err := relCmd("stop"); err != nil {
		t.Fatalf("bin/%s stop: %v\n%s", relName, err, out)
	}
	select {
	case <-nodeDone:
	case <-time.After(waitTimeout):
		t.Fatalf("the release did not stop within %v of bin/%s stop", waitTimeout, relName)
	}
	if c := g.count(msg("admitted")); c != 3 {
		t.Errorf("%d admitted lines, want 3 (rpc, remote and stop)", c)
	}
}
