package test

// The README's quickstart and its Elixir and Erlang examples, run from
// README.md as written (README: "How this README is tested"). The blocks
// are the fenced code blocks preceded by a line `<!-- test: NAME -->`; they
// are read when the test runs, never copied here. One substitution makes
// them run on this one machine (readmeSub): the documentation addresses
// become loopback ones, the port a free one, and the /etc/hosts lines an
// Erlang hosts file (ERL_INETRC).

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/testenv"
)

// readme holds README.md's marked blocks by name.
type readme map[string]string

var (
	readmeMarker = regexp.MustCompile(`^\s*<!-- test: ([A-Za-z0-9_.-]+) -->\s*$`)
	readmeFence  = regexp.MustCompile("^( *)(```+|~~~+)")
)

// readReadme parses ../README.md. A marker must be followed at once by a
// fence; the block's lines lose the fence's indentation (a block inside a
// list item is indented).
func readReadme(t *testing.T) readme {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	r := readme{}
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		m := readmeMarker.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		name := m[1]
		if i+1 >= len(lines) {
			t.Fatalf("README.md:%d: marker %q with no block after it", i+1, name)
		}
		f := readmeFence.FindStringSubmatch(lines[i+1])
		if f == nil {
			t.Fatalf("README.md:%d: marker %q is not followed by a fenced block", i+1, name)
		}
		indent, fence := len(f[1]), f[2]
		var body []string
		j := i + 2
		for ; j < len(lines); j++ {
			if strings.HasPrefix(strings.TrimSpace(lines[j]), fence) {
				break
			}
			l := lines[j]
			for k := 0; k < indent && strings.HasPrefix(l, " "); k++ {
				l = l[1:]
			}
			body = append(body, l)
		}
		if j == len(lines) {
			t.Fatalf("README.md:%d: the block %q is not closed", i+2, name)
		}
		if _, dup := r[name]; dup {
			t.Fatalf("README.md:%d: a second block named %q", i+1, name)
		}
		r[name] = strings.Join(body, "\n") + "\n"
		i = j
	}
	return r
}

func (r readme) block(t *testing.T, name string) string {
	t.Helper()
	b, ok := r[name]
	if !ok {
		t.Fatalf("README.md has no block marked <!-- test: %s -->", name)
	}
	return b
}

// commands splits a shell block into commands: backslash continuations
// joined, blank lines and comment lines dropped.
func commands(block string) []string {
	var out []string
	var cur string
	for _, l := range strings.Split(block, "\n") {
		if t := strings.TrimSpace(l); cur == "" && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\")
			continue
		}
		cur += l
		out = append(out, strings.Join(strings.Fields(cur), " "))
		cur = ""
	}
	return out
}

// readmeSub is the one substitution from the README's setup to this
// machine's: the public address 203.0.113.5 becomes 127.0.0.1 (distgate's
// address, and the source of a connection from this machine to it), your
// machine's 198.51.100.7 becomes 127.0.0.3 (its clients' connections are
// bound there: yourMachine), the node's loopback 127.0.0.1 (or
// {127,0,0,1}) becomes 127.0.0.2, and port 9100 becomes port.
type readmeSub struct{ port int }

// yourMachine is the environment that makes an Erlang client's connections
// come from your machine's address, as substituted.
const yourMachine = "ERL_FLAGS=-kernel inet_dist_connect_options [{ip,{127,0,0,3}}]"

var readmeSubRe = regexp.MustCompile(`\{127,0,0,1\}|\b(?:203\.0\.113\.5|198\.51\.100\.7|127\.0\.0\.1|9100)\b`)

func (s readmeSub) apply(text string) string {
	return readmeSubRe.ReplaceAllStringFunc(text, func(m string) string {
		switch m {
		case "203.0.113.5":
			return "127.0.0.1"
		case "198.51.100.7":
			return "127.0.0.3"
		case "127.0.0.1":
			return "127.0.0.2"
		case "{127,0,0,1}":
			return "{127,0,0,2}"
		default: // 9100
			return strconv.Itoa(s.port)
		}
	})
}

// writeInetrc turns /etc/hosts lines into an Erlang hosts file in dir, for
// ERL_INETRC, and returns its path. The file is consulted before the
// system's resolver.
func writeInetrc(t *testing.T, dir, hosts string) string {
	t.Helper()
	var b strings.Builder
	for _, l := range strings.Split(hosts, "\n") {
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil || !a.Is4() || len(f) < 2 {
			t.Fatalf("hosts line %q: want an IPv4 address and names", l)
		}
		ip := a.As4()
		fmt.Fprintf(&b, "{host, {%d,%d,%d,%d}, [", ip[0], ip[1], ip[2], ip[3])
		for i, n := range f[1:] {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", n)
		}
		b.WriteString("]}.\n")
	}
	if b.Len() == 0 {
		t.Fatalf("no hosts line in %q", hosts)
	}
	b.WriteString("{lookup, [file, native]}.\n")
	p := filepath.Join(dir, "inetrc")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// decodeGate reads a distgate.toml (checking it as `distgate check` does)
// into the config.File the harness starts distgate from.
func decodeGate(t *testing.T, dir, text string) *config.File {
	t.Helper()
	p := filepath.Join(dir, "distgate.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(p, nil); err != nil {
		t.Fatalf("the README's distgate.toml does not load: %v\n%s", err, text)
	}
	var f config.File
	if _, err := toml.Decode(text, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sh runs a command line as a user would type it.
func sh(name, dir string, env []string, line string) testenv.Cmd {
	return testenv.Cmd{Name: name, Args: []string{"/bin/sh", "-c", line}, Dir: dir, Env: env, Grace: 5 * time.Second}
}

// execLine is a block that is one command, for sh to replace itself with,
// so that the process a test holds is the program.
func execLine(t *testing.T, block string) string {
	t.Helper()
	cs := commands(block)
	if len(cs) != 1 {
		t.Fatalf("want one command, got %d in:\n%s", len(cs), block)
	}
	return "exec " + cs[0]
}

// erlShell drives a remote shell on node, on a terminal: once the shell's
// first prompt names node (what is typed before may go to the local shell
// that comes up first), it evaluates expr, which must print want, then
// leaves with Ctrl-G and q, which quits the shell and not the node.
func erlShell(t *testing.T, p *testenv.Proc, node, expr, want string) {
	t.Helper()
	prompt := "(" + node + ")1> " // erl's (n)1>, IEx's iex(n)1>: no newline after it
	if _, err := testenv.WaitLines(p.Out, p.Done(), strconv.Quote(prompt), testenv.WaitTimeout, func([]string) (struct{}, bool) {
		return struct{}{}, strings.Contains(p.Out.String(), prompt)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(p.Stdin, expr+"\n"); err != nil {
		t.Fatal(err)
	}
	p.AwaitText(want, testenv.WaitTimeout)
	_, _ = io.WriteString(p.Stdin, "\x07")
	p.AwaitText("User switch command", testenv.WaitTimeout)
	_, _ = io.WriteString(p.Stdin, "q\n")
	if err := p.WaitExit(testenv.WaitTimeout); err != nil {
		t.Fatalf("the remote shell did not quit: %v\n%s", err, p.Out)
	}
}

// readmeDistgate puts the binary under test where the README's commands
// expect it: ./distgate in dir.
func readmeDistgate(t *testing.T, dir string) {
	t.Helper()
	if err := os.Symlink(testenv.Distgate(t), filepath.Join(dir, "distgate")); err != nil {
		t.Fatal(err)
	}
}

// TestReadmeQuickstart walks the quickstart: the README's commands write
// distgate.toml and start the node, distgate and the remote shell as
// written; the shell gets a prompt on the node through distgate; probe
// finds the port silent, and the node hears nothing of it.
func TestReadmeQuickstart(t *testing.T) {
	t.Parallel()
	r := readReadme(t)
	port := testenv.AppPort(t)
	sub := readmeSub{port}
	dir := t.TempDir() // the checkout, and HOME with the cookie erl writes
	readmeDistgate(t, dir)
	env := testenv.ErlEnv(dir, "ERL_INETRC="+writeInetrc(t, dir, sub.apply(r.block(t, "quickstart-hosts"))),
		"TERM=xterm", "LANG=C.UTF-8", "LC_ALL=C.UTF-8")

	// 3. distgate.toml, written by the README's own command.
	conf := sub.apply(r.block(t, "quickstart-config"))
	if out, err := sh("config", dir, env, conf).Run(30 * time.Second); err != nil {
		t.Fatalf("%s: %v\n%s", conf, err, out)
	}
	decodeGate(t, t.TempDir(), readFile(t, filepath.Join(dir, "distgate.toml")))

	// 4. The node.
	node := testenv.Start(t, sh("node", dir, env, execLine(t, sub.apply(r.block(t, "quickstart-node")))))
	if err := testenv.WaitPort(testenv.Addr(testenv.NodeIP, port), testenv.WaitTimeout, node); err != nil {
		t.Fatal(err)
	}

	// 5. distgate, on the file init wrote.
	g := &testenv.Gate{Proc: testenv.Start(t, sh("distgate", dir, env, execLine(t, r.block(t, "quickstart-run")))),
		Path: filepath.Join(dir, "distgate.toml")}
	g.Wait(testenv.Msg("listening"))

	// 6. The remote shell.
	shell := testenv.StartPTY(t, sh("remote shell", dir, env, execLine(t, sub.apply(r.block(t, "quickstart-client")))))
	erlShell(t, shell, "app@myhost.example", `io:format("via remsh ~s~n", [node()]).`, "via remsh app@myhost.example")
	a := g.Wait(testenv.Msg("admitted"))
	if a.Str("node") != "ops@myhost.example" || a.Str("remote") == "" {
		t.Errorf("admitted line: %v", a)
	}

	// 7. probe: silent; distgate denied both of its messages.
	probe := commands(sub.apply(r.block(t, "quickstart-probe")))
	out, err := sh("probe", dir, env, probe[0]).Run(30 * time.Second)
	t.Logf("%s:\n%s", probe[0], out)
	want := fmt.Sprintf("127.0.0.1:%d  silent", port)
	// A stray epmd on this shared machine's 4369 would make it exit 1 for
	// epmd alone; the port's own verdict is what the README promises.
	epmdUp := strings.Contains(out, "epmd  exposed")
	if !strings.Contains(out, want) || (err != nil && !(epmdUp && testenv.ExitCode(err) == 1)) {
		t.Errorf("%s: %v; want %q and exit 0", probe[0], err, want)
	}
	g.WaitN(2, testenv.Msg("denied"), testenv.Reason("missing_flags"))
	for _, s := range []string{"AAAAAA", "distgate-probe", "Connection attempt"} {
		if strings.Contains(node.Out.String(), s) {
			t.Errorf("the node saw %q:\n%s", s, node.Out)
		}
	}

	// Ctrl-C: distgate drains and exits 0.
	if err := g.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := g.AwaitExit(); code != 0 {
		t.Errorf("distgate exit code %d after Ctrl-C", code)
	}
}

// TestReadmeErlang runs the plain Erlang example: its gate admits the
// shell by source and name, and refuses another name and another source.
func TestReadmeErlang(t *testing.T) {
	t.Parallel()
	r := readReadme(t)
	port := testenv.AppPort(t)
	sub := readmeSub{port}
	dir := t.TempDir()
	hosts := writeInetrc(t, dir, sub.apply(r.block(t, "elixir-hosts")))
	env := testenv.ErlEnv(dir, "ERL_INETRC="+hosts, "TERM=xterm", "LANG=C.UTF-8", "LC_ALL=C.UTF-8")

	g := testenv.StartGate(t, decodeGate(t, dir, sub.apply(r.block(t, "erlang-distgate.toml"))))
	node := testenv.Start(t, sh("node", dir, env, execLine(t, sub.apply(r.block(t, "erlang-node")))))
	if err := testenv.WaitPort(testenv.Addr(testenv.NodeIP, port), testenv.WaitTimeout, node); err != nil {
		t.Fatal(err)
	}
	shell := testenv.StartPTY(t, sh("remote shell", dir, append(env, yourMachine), execLine(t, sub.apply(r.block(t, "erlang-client")))))
	erlShell(t, shell, "app@myhost.example", `io:format("via remsh ~s~n", [node()]).`, "via remsh app@myhost.example")
	if a := g.Wait(testenv.Msg("admitted")); a.Str("node") != "ops@laptop.example" || !testenv.From("127.0.0.3")(a) {
		t.Errorf("admitted line: %v", a)
	}

	// The same cookie (the one erl wrote in HOME), the same way to the
	// node; another name, then another source.
	cookie, err := os.ReadFile(filepath.Join(dir, ".erlang.cookie"))
	if err != nil {
		t.Fatal(err)
	}
	client := func(name, src string) testenv.Erl {
		return testenv.Erl{Name: name, Cookie: string(cookie), Port: port, Hidden: true, Target: "app@myhost.example",
			Addr: src, Env: []string{"ERL_INETRC=" + hosts}}
	}
	if out := testenv.Ping(t, client("intruder@laptop.example", "127.0.0.3")); out != "pang" {
		t.Errorf("another name: %s, want pang", out)
	}
	g.Wait(testenv.Msg("denied"), testenv.Reason("name_not_allowed"), testenv.NodeIs("intruder@laptop.example"))
	if out := testenv.Ping(t, client("ops@laptop.example", "127.0.0.4")); out != "pang" {
		t.Errorf("another source: %s, want pang", out)
	}
	g.Wait(testenv.Msg("denied"), testenv.Reason("source_not_allowed"), testenv.From("127.0.0.4"))
	if out := testenv.Ping(t, client("ops@laptop.example", "127.0.0.3")); out != "pong" {
		t.Errorf("the allowed name from the allowed source: %s, want pong", out)
	}
}

// releaseRun is a release's environment for a test: HOME, the hosts file,
// RELEASE_TMP in dir (the build is shared), and the release's vm.args and
// remote.vm.args with the substitution applied, in dir too.
func releaseRun(t *testing.T, root, dir, inetrc string, sub readmeSub) []string {
	t.Helper()
	var extra []string
	for _, f := range []struct{ file, env string }{{"vm.args", "RELEASE_VM_ARGS"}, {"remote.vm.args", "RELEASE_REMOTE_VM_ARGS"}} {
		built, err := filepath.Glob(filepath.Join(root, "releases", "*", f.file))
		if err != nil || len(built) != 1 {
			t.Fatalf("%s in %s: %v %v", f.file, root, built, err)
		}
		b, err := os.ReadFile(built[0])
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, f.file)
		if err := os.WriteFile(p, []byte(sub.apply(string(b))), 0o644); err != nil {
			t.Fatal(err)
		}
		extra = append(extra, f.env+"="+p)
	}
	tmp := filepath.Join(dir, "tmp")
	t.Cleanup(func() { killByEnv(t, "RELEASE_TMP="+tmp) })
	return testenv.ErlEnv(dir, append(extra, "ERL_INETRC="+inetrc, "RELEASE_TMP="+tmp,
		"TERM=xterm", "LANG=C.UTF-8", "LC_ALL=C.UTF-8")...)
}

// killByEnv kills what a release started in the background (bin/APP
// daemon: run_erl and the node) and left running: the processes whose
// environment holds marker, which names this test's own directory.
func killByEnv(t *testing.T, marker string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append(append([]byte{0}, b...), 0), []byte("\x00"+marker+"\x00")) {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")) // not cmdline: it holds the cookie
		t.Logf("killing %d (%s), left running by the release", pid, bytes.TrimSpace(comm))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// waitGone waits until the process pid has exited: a process the test did
// not start, so there is nothing to wait on but /proc. A release's orderly
// stop on a loaded machine takes a while: the bound is a client's.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(testenv.ClientTimeout)
	for {
		st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		// Gone, or a zombie its parent (run_erl) has yet to reap.
		if err != nil || bytes.Contains(st, []byte(") Z ")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs after %v", pid, testenv.ClientTimeout)
		}
		time.Sleep(50 * time.Millisecond) // polling /proc: nothing to wait on
	}
}

// TestReadmeElixir builds a release from the README's rel/ files, starts
// it as the README's server commands do, and runs the README's client
// commands through a gate started from its distgate.toml: rpc prints the
// node's name, remote opens a shell on it (on a terminal), pid and stop
// work. A client from another source is refused. The README's files are
// also what `distgate init elixir` writes for the same flags.
func TestReadmeElixir(t *testing.T) {
	t.Parallel()
	r := readReadme(t)

	// The rel/ files, as written; the build is shared between runs.
	relDir := t.TempDir()
	for _, f := range []string{"env.sh.eex", "vm.args.eex", "remote.vm.args.eex"} {
		if err := os.WriteFile(filepath.Join(relDir, f), []byte(r.block(t, "elixir-"+f)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	clientCmds := commands(r.block(t, "elixir-client"))
	m := regexp.MustCompile(`^bin/([A-Za-z0-9_]+) `).FindStringSubmatch(clientCmds[0])
	if m == nil {
		t.Fatalf("elixir-client: %q does not start with bin/APP", clientCmds[0])
	}
	app := m[1]
	nodeName := regexp.MustCompile(`(?m)^export RELEASE_NODE=(\S+)$`).FindStringSubmatch(r.block(t, "elixir-env.sh.eex"))
	if nodeName == nil {
		t.Fatal("elixir-env.sh.eex sets no RELEASE_NODE")
	}
	root := testenv.Release(t, app, relDir)
	project := filepath.Join(root, "..", "..", "..", "..") // _build/prod/rel/APP

	port := testenv.AppPort(t)
	sub := readmeSub{port}
	home := t.TempDir()
	env := releaseRun(t, root, home, writeInetrc(t, home, sub.apply(r.block(t, "elixir-hosts"))), sub)

	// The cookie file env.sh reads.
	for _, c := range commands(r.block(t, "elixir-cookie")) {
		if out, err := sh("cookie", home, env, c).Run(30 * time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", c, err, out)
		}
	}
	if st, err := os.Stat(filepath.Join(home, "."+app+".cookie")); err != nil || st.Mode().Perm() != 0o600 || st.Size() < 20 {
		t.Fatalf("the cookie file: %v %v", st, err)
	}

	g := testenv.StartGate(t, decodeGate(t, home, sub.apply(r.block(t, "elixir-distgate.toml"))))

	// The server: the build is the harness's; the rest as written.
	server := commands(r.block(t, "elixir-server"))
	if len(server) == 0 || server[0] != "MIX_ENV=prod mix release" {
		t.Fatalf("elixir-server: want MIX_ENV=prod mix release first, got %q", server)
	}
	for _, c := range server[1:] {
		if out, err := sh("server", project, env, sub.apply(c)).Run(testenv.ClientTimeout); err != nil {
			t.Fatalf("%s: %v\n%s", c, err, out)
		}
	}
	// The daemon boots in the background; as long as a client may take.
	if err := testenv.WaitPort(testenv.Addr(testenv.NodeIP, port), testenv.ClientTimeout, nil); err != nil {
		t.Fatal(err)
	}

	// A client from elsewhere (the server itself, through its public
	// address) is refused by source.
	if out, err := sh("rpc from elsewhere", root, env, sub.apply(clientCmds[0])).Run(testenv.ClientTimeout); err == nil {
		t.Errorf("%s from 127.0.0.1 succeeded:\n%s", clientCmds[0], out)
	}
	g.Wait(testenv.Msg("denied"), testenv.Reason("source_not_allowed"), testenv.From("127.0.0.1"))

	// Your machine.
	mine := append(env[:len(env):len(env)], yourMachine)

	helper := regexp.MustCompile(`^(rpc|rem)-[0-9a-f]{4}-` + regexp.QuoteMeta(nodeName[1]) + `$`)
	stopped, nodePid := false, 0
	for _, c := range clientCmds {
		c = sub.apply(c)
		switch {
		case strings.HasSuffix(c, " remote"):
			shell := testenv.StartPTY(t, sh("remote", root, mine, "exec "+c))
			erlShell(t, shell, nodeName[1], `IO.puts("via remote " <> to_string(node()))`, "via remote "+nodeName[1])
		default:
			out, err := sh(c, root, mine, c).Run(testenv.ClientTimeout)
			if err != nil {
				t.Fatalf("%s: %v\n%s", c, err, out)
			}
			switch {
			case strings.Contains(c, " rpc ") && strings.Contains(c, "node()"):
				if strings.TrimSpace(out) != nodeName[1] {
					t.Errorf("%s printed %q, want %s", c, out, nodeName[1])
				}
			case strings.HasSuffix(c, " pid"):
				if nodePid, err = strconv.Atoi(strings.TrimSpace(out)); err != nil {
					t.Errorf("%s printed %q, want a process id", c, out)
				}
			case strings.HasSuffix(c, " stop"):
				if nodePid == 0 {
					t.Fatalf("%s before the README's pid command", c)
				}
				waitGone(t, nodePid)
				stopped = true
			}
		}
	}
	if !stopped {
		t.Error("the README's client commands do not stop the node")
	}
	admitted := g.Lines()
	n := 0
	for _, a := range testenv.Filter(admitted, testenv.Msg("admitted")) {
		if !helper.MatchString(a.Str("node")) || !testenv.From("127.0.0.3")(a) {
			t.Errorf("admitted %q from %s, not a helper of %s from your machine", a.Str("node"), a.Str("remote"), nodeName[1])
		}
		n++
	}
	if n != len(clientCmds) {
		t.Errorf("%d admitted, want %d (one per client command)", n, len(clientCmds))
	}
	if c := g.Count(testenv.Reason("rate_limited")); c != 0 {
		t.Errorf("%d rate_limited with the default rate limit", c)
	}

	// distgate init elixir, with the flags the README gives, writes these
	// same files (comments aside).
	t.Run("init writes the same", func(t *testing.T) {
		out := t.TempDir()
		_, stderr, code := testenv.RunDistgate(t, nil, "init", "elixir", "-node", nodeName[1], "-public", "203.0.113.5",
			"-allow", "198.51.100.7/32", "-out", out)
		if code != 0 {
			t.Fatalf("init: exit %d\n%s", code, stderr)
		}
		for _, f := range []string{"env.sh.eex", "vm.args.eex", "remote.vm.args.eex"} {
			b, err := os.ReadFile(filepath.Join(out, "rel", f))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := commands(string(b)), commands(r.block(t, "elixir-"+f)); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("rel/%s: init writes\n%s\nthe README shows\n%s", f, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		}
		b, err := os.ReadFile(filepath.Join(out, "distgate.toml"))
		if err != nil {
			t.Fatal(err)
		}
		got, want := decodeGate(t, t.TempDir(), string(b)), decodeGate(t, t.TempDir(), r.block(t, "elixir-distgate.toml"))
		gb, _ := got.Encode()
		wb, _ := want.Encode()
		if !bytes.Equal(gb, wb) {
			t.Errorf("distgate.toml: init writes\n%s\nthe README shows\n%s", gb, wb)
		}
	})
}
