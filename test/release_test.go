package test

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

// The release under test is a bare `mix new demo` app with the templates in
// testdata/release/rel (testenv.Release builds it, once for every test
// binary): epmdless, node demo@127.0.0.1 bound to 127.0.0.2, the port taken
// from DIST_PORT when the release runs.
const relName = "demo"

// The names bin/demo rpc and bin/demo remote give their helper nodes.
var (
	rpcHelper = regexp.MustCompile(`^rpc-[0-9a-f]{4}-` + relName + `@127\.0\.0\.1$`)
	remHelper = regexp.MustCompile(`^rem-[0-9a-f]{4}-` + relName + `@127\.0\.0\.1$`)
)

// An Elixir release's `bin/demo rpc` goes through distgate from an allowed
// source when the gate allows the rpc-XXXX-demo helper names, and is refused
// by a gate that allows other names only. `bin/demo remote` and
// `bin/demo stop` go through too.
func TestElixirRelease(t *testing.T) {
	t.Parallel()
	rel := testenv.StartRelease(t, relName, filepath.Join("testdata", "release", "rel"))
	p := rel.Port

	relCmd := func(args ...string) (string, error) {
		return rel.Run(nil, args...)
	}

	// A gate whose names admit only other-* helpers.
	deny := testenv.StartGate(t, testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"}, "other-*")))
	if out, err := relCmd("rpc", "IO.puts(node())"); err == nil {
		t.Errorf("rpc through a gate that allows only other-*: succeeded:\n%s", out)
	}
	d := deny.Wait(testenv.Msg("denied"), testenv.Reason("name_not_allowed"))
	if !rpcHelper.MatchString(d.Str("node")) {
		t.Errorf("denied line names %q, want rpc-XXXX-%s@127.0.0.1", d.Str("node"), relName)
	}
	if code := deny.Shutdown(); code != 0 {
		t.Fatalf("distgate exit code %d after SIGTERM", code)
	}

	// The gate a release would use: its own rpc and remote helpers.
	// On loopback the release node's own outgoing connections (it reaches
	// back for a remote shell's helper node as it goes) come from 127.0.0.1
	// to 127.0.0.1:P too, so they meet this gate and are denied; they must
	// not use up the source's token bucket before `stop`'s rpc.
	f := testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"}, "rpc-*-"+relName+"@*", "rem-*-"+relName+"@*"))
	f.Gate[0].Rate, f.Gate[0].Burst = testenv.Ptr(100.0), testenv.Ptr(100)
	g := testenv.StartGate(t, f)
	out, err := relCmd("rpc", "IO.puts(node())")
	if err != nil || strings.TrimSpace(out) != relName+"@127.0.0.1" {
		t.Errorf("bin/%s rpc: %v, output %q; want %s@127.0.0.1", relName, err, out, relName)
	}
	a := g.Wait(testenv.Msg("admitted"))
	if !rpcHelper.MatchString(a.Str("node")) || a.Str("hidden") != "true" {
		t.Errorf("admitted line: %v", a)
	}

	// bin/demo remote needs a terminal: on a pipe IEx runs a limited shell
	// and ignores --remsh. script(1) gives it a pty. With TERM=dumb, IEx
	// falls back to the limited shell too.
	remote := testenv.Start(t, testenv.Cmd{Name: "remote shell", Args: []string{"script", "-qfec", "'" + rel.Bin + "' remote", "/dev/null"},
		Dir: rel.Dir, Env: append(slices.Clone(rel.Env), "TERM=xterm"), Stdin: true, StopSignal: syscall.SIGKILL, Grace: time.Second})
	// The echo of the typed line is not the printed one: it has the quotes.
	_, _ = io.WriteString(remote.Stdin, `IO.puts("via remote " <> to_string(node()))`+"\n")
	remote.AwaitText("via remote "+relName+"@127.0.0.1", testenv.WaitTimeout)
	_, _ = io.WriteString(remote.Stdin, "\x07") // ^G: the user switch menu; q quits the remote shell only
	remote.AwaitText("User switch command", testenv.WaitTimeout)
	_, _ = io.WriteString(remote.Stdin, "q\n")
	if err := remote.WaitExit(testenv.WaitTimeout); err != nil {
		t.Fatalf("the remote shell did not quit: %v", err)
	}
	remHelperLine := func(l testenv.Line) bool { return remHelper.MatchString(l.Str("node")) }
	a = g.Wait(testenv.Msg("admitted"), remHelperLine)
	if a.Str("hidden") != "true" {
		t.Errorf("admitted line: %v", a)
	}
	g.Wait(testenv.Msg("closed"), remHelperLine)

	if out, err := relCmd("stop"); err != nil {
		t.Fatalf("bin/%s stop: %v\n%s", relName, err, out)
	}
	if err := rel.Node.WaitExit(testenv.WaitTimeout); err != nil {
		t.Fatalf("the release did not stop after bin/%s stop: %v", relName, err)
	}
	if c := g.Count(testenv.Msg("admitted")); c != 3 {
		t.Errorf("%d admitted lines, want 3 (rpc, remote and stop)", c)
	}
}

// `bin/demo rpc` with a wrong RELEASE_COOKIE is outcome auth_failed: judged
// by the node (which logs it) through a gate without cookie_file, and cut
// at a gate with cookie_file before the node sees the reply; the right
// cookie goes through that gate.
func TestElixirReleaseWrongCookie(t *testing.T) {
	t.Parallel()
	rel := testenv.StartRelease(t, relName, filepath.Join("testdata", "release", "rel"))
	p := rel.Port
	rpc := func(cookie string) (string, error) {
		return rel.Run([]string{"RELEASE_COOKIE=" + cookie}, "rpc", "IO.puts(node())")
	}
	helper := func(l testenv.Line) bool { return rpcHelper.MatchString(l.Str("node")) }
	f := testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"}, "rpc-*-"+relName+"@*"))

	g := testenv.StartGate(t, f)
	if out, err := rpc("not-the-cookie"); err == nil {
		t.Errorf("rpc with a wrong cookie succeeded:\n%s", out)
	}
	if h := g.Wait(testenv.Msg("handshake"), helper); h.Str("outcome") != "auth_failed" {
		t.Errorf("without cookie_file: handshake line %v, want outcome auth_failed", h)
	}
	rel.Node.AwaitText("Invalid challenge reply", testenv.WaitTimeout)
	if code := g.Shutdown(); code != 0 {
		t.Fatalf("distgate exit code %d", code)
	}

	cookie := filepath.Join(t.TempDir(), "cookie")
	if err := os.WriteFile(cookie, []byte("distgate-e2e-cookie\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.Gate[0].CookieFile = cookie
	g = testenv.StartGate(t, f)
	seen := len(rel.Node.Out.All())
	if out, err := rpc("not-the-cookie"); err == nil {
		t.Errorf("rpc with a wrong cookie succeeded:\n%s", out)
	}
	if h := g.Wait(testenv.Msg("handshake"), helper); h.Str("outcome") != "auth_failed" || !strings.Contains(h.Str("error"), "digest") {
		t.Errorf("with cookie_file: handshake line %v, want outcome auth_failed and a digest error", h)
	}
	if out, err := rpc("distgate-e2e-cookie"); err != nil || strings.TrimSpace(out) != relName+"@127.0.0.1" {
		t.Errorf("rpc with the right cookie: %v, output %q", err, out)
	}
	g.Wait(testenv.Msg("handshake"), helper, testenv.Field("outcome", "ok"))
	for _, l := range rel.Node.Out.All()[seen:] {
		if strings.Contains(l, "Invalid challenge reply") {
			t.Errorf("the node saw the reply that the gate cut: %q", l)
		}
	}
}
