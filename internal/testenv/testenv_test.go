package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// Ports come from below the ephemeral range, are free on every address
// asked for, and are not handed out twice.
func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	hi := ephemeralLow()
	for range 50 {
		p := Port(t, "127.0.0.1", "127.0.0.2", "::1")
		if p >= hi || p < 1024 {
			t.Errorf("port %d is not below the ephemeral range (from %d)", p, hi)
		}
		if seen[p] {
			t.Errorf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	// A port taken on one of the addresses is never returned.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	if portFree(taken, []string{"127.0.0.1", "127.0.0.2"}) {
		t.Errorf("port %d is bound on 127.0.0.2 but reported free", taken)
	}
}

// Stop kills what the process forked too, once the grace is over, and the
// output is captured line by line.
func TestProcStopsItsGroup(t *testing.T) {
	// The shell ignores SIGTERM and waits on a child.
	p := Start(t, Cmd{Args: []string{"sh", "-c", `trap "" TERM; echo up; sleep 60 & wait`}})
	p.Await("up", func(ls []string) bool { return Has(ls, "up") })
	var child int
	deadline := time.Now().Add(WaitTimeout)
	for child == 0 && time.Now().Before(deadline) {
		if c := Children(p.Pid()); len(c) > 0 {
			child = c[0]
		}
		time.Sleep(10 * time.Millisecond) // polling /proc for the fork
	}
	if child == 0 {
		t.Fatal("the shell's child never appeared")
	}
	start := time.Now()
	p.Stop(syscall.SIGTERM, 300*time.Millisecond)
	if !p.Exited() || time.Since(start) < 300*time.Millisecond {
		t.Errorf("exited %v after %v; want it killed once the grace was over", p.Exited(), time.Since(start))
	}
	// The child is killed with the group (it may linger as a zombie of
	// init for a moment).
	for time.Now().Before(deadline) {
		st, err := Status(child, "State")
		if err != nil || strings.HasPrefix(st, "Z") {
			return
		}
		time.Sleep(10 * time.Millisecond) // polling /proc for the kill
	}
	t.Errorf("the shell's child %d outlived its group's kill", child)
}

// A wait on a process that exits fails at once and shows its output.
func TestWaitForExited(t *testing.T) {
	p, err := Cmd{Args: []string{"sh", "-c", "echo partial; exit 3"}}.Start()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = p.WaitFor("never", WaitTimeout, func(ls []string) bool { return Has(ls, "never") })
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "partial") {
		t.Errorf("WaitFor: %v; want it to say the process exited, with its output", err)
	}
	if time.Since(start) > WaitTimeout/2 {
		t.Errorf("WaitFor took %v on an exited process", time.Since(start))
	}
	if p.ExitCode() != 3 {
		t.Errorf("exit code %d, want 3", p.ExitCode())
	}
	out, err := Cmd{Args: []string{"sh", "-c", "echo out; echo err >&2; exit 4"}}.Run(WaitTimeout)
	if ExitCode(err) != 4 || !strings.Contains(out, "out") || !strings.Contains(out, "err") {
		t.Errorf("Run: %q, %v", out, err)
	}
	if _, err := (Cmd{Args: []string{"sleep", "10"}}).Run(100 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Errorf("Run past its timeout: %v", err)
	}
}

// A process past MaxRSS is killed and the error says why; one within it
// runs to its end.
func TestRunMaxRSS(t *testing.T) {
	// tail keeps all of a line that never ends: /dev/zero has no newline.
	start := time.Now()
	_, _, err := Cmd{Args: []string{"tail", "/dev/zero"}, MaxRSS: 32 << 20}.Output(WaitTimeout)
	if ExitCode(err) != -1 || err == nil || !strings.Contains(err.Error(), "over the cap of 32768 KiB") {
		t.Errorf("tail /dev/zero under a 32 MiB cap: %v; want it killed for its memory", err)
	} else {
		t.Log(err)
	}
	if d := time.Since(start); d > WaitTimeout/2 {
		t.Errorf("killed after %v", d)
	}
	out, _, err := Cmd{Args: []string{"sh", "-c", "echo small"}, MaxRSS: 32 << 20}.Output(WaitTimeout)
	if err != nil || out != "small\n" {
		t.Errorf("a small process under the cap: %q, %v", out, err)
	}
}

// StderrPipe hands stderr to the caller while stdout is still captured, and
// closing the read end is a broken pipe for the process.
func TestStderrPipe(t *testing.T) {
	p := Start(t, Cmd{Stdin: true, StderrPipe: true, Args: []string{"sh", "-c",
		`trap "" PIPE; echo out; echo err >&2; read x; echo again >&2 || echo "write failed"`}})
	b := make([]byte, 4)
	_ = p.Stderr.SetReadDeadline(time.Now().Add(WaitTimeout))
	if _, err := io.ReadFull(p.Stderr, b); err != nil || string(b) != "err\n" {
		t.Fatalf("read stderr: %q, %v", b, err)
	}
	_ = p.Stderr.Close()
	_, _ = io.WriteString(p.Stdin, "go\n")
	p.Await("the failed write", func(ls []string) bool { return Has(ls, "write failed") })
	if ls := p.Out.All(); !Has(ls, "out") || Has(ls, "err") {
		t.Errorf("stdout captured as %q; want out, without stderr's line", ls)
	}
}

// SignalIgnored sees a shell's trap "".
func TestSignalIgnored(t *testing.T) {
	p := Start(t, Cmd{Args: []string{"sh", "-c", `trap "" USR1; echo up; sleep 60`}})
	p.Await("up", func(ls []string) bool { return Has(ls, "up") })
	if ign, err := SignalIgnored(p.Pid(), syscall.SIGUSR1); err != nil || !ign {
		t.Errorf("SIGUSR1 ignored: %v, %v; want true", ign, err)
	}
	if ign, err := SignalIgnored(p.Pid(), syscall.SIGUSR2); err != nil || ign {
		t.Errorf("SIGUSR2 ignored: %v, %v; want false", ign, err)
	}
}

func TestLogMatchers(t *testing.T) {
	raw := []string{
		`{"level":"info","gate":"g","remote":"127.0.0.3:4000","reason":"rate_limited","message":"denied"}`,
		`not json`,
		`{"level":"info","node":"a@h","remote":"[::1]:5","bytes_in":12,"message":"closed"}`,
	}
	ls, bad := ParseLog(raw)
	if len(ls) != 2 || bad != 1 {
		t.Fatalf("%d lines, %d bad; want 2 and 1", len(ls), bad)
	}
	if n := len(Filter(ls, Msg("denied"), From("127.0.0.3"), Reason("rate_limited"))); n != 1 {
		t.Errorf("denied from 127.0.0.3: %d", n)
	}
	if n := len(Filter(ls, Msg("closed"), From("::1"), NodeIs("a@h"), Field("bytes_in", "12"))); n != 1 {
		t.Errorf("closed from ::1: %d", n)
	}
	if ls[1].Num("bytes_in") != 12 || ls[0].Str("missing") != "" {
		t.Errorf("fields: %v", ls)
	}
}

func TestErlArgv(t *testing.T) {
	if _, err := ErlPath(); err != nil {
		t.Skip(err)
	}
	node, err := App(9000).Argv()
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(node, " "); !strings.Contains(s, "-erl_epmd_port 9000") ||
		!strings.Contains(s, "inet_dist_use_interface {127,0,0,2}") || strings.Contains(s, "-hidden") {
		t.Errorf("node: %s", s)
	}
	c, err := Client("c@::1", 9000).Bind("::1").Argv()
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(c, " "); !strings.Contains(s, "inet_dist_connect_options [{ip,{0,0,0,0,0,0,0,1}}]") ||
		!strings.Contains(s, "-dist_listen false -hidden") {
		t.Errorf("client: %s", s)
	}
}

// The fake node's handshake and commands, and its records.
func TestFakeNode(t *testing.T) {
	f := StartFakeNode(t, "127.0.0.1:0", false)
	dial := func(name string) *net.TCPConn {
		t.Helper()
		c := Dial(t, "", f.Addr())
		_ = c.SetDeadline(time.Now().Add(WaitTimeout))
		sent, got, err := Handshake(c, name)
		if err != nil {
			t.Fatal(err)
		}
		// hello, 'r' (23); status (5), challenge (21 + name), 'a' (19)
		if sent != len(Hello(name))+23 || got != 5+21+len(FakeName)+19 {
			t.Errorf("handshake: %d bytes sent, %d read", sent, got)
		}
		return c
	}

	c := dial("echo@h")
	payload := bytes.Repeat([]byte("distgate"), 10000)
	if err := Command(c, CmdEcho, 0); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = c.Write(payload); _ = c.CloseWrite() }()
	back, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(back, payload) {
		t.Errorf("echo: %d bytes back (%v), want %d intact", len(back), err, len(payload))
	}
	_ = c.Close()
	rec, ok := f.WaitDone("echo@h", WaitTimeout)
	if !ok || rec.N != int64(len(payload)) || rec.Sum != sha256.Sum256(payload) || rec.Err != nil ||
		!bytes.Equal(rec.Hello, Hello("echo@h")) {
		t.Errorf("echo record %+v", rec)
	}

	c = dial("sink@h")
	if err := Command(c, CmdSink, 3<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(make([]byte, 3<<20)); err != nil {
		t.Fatal(err)
	}
	var ack [8]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil || binary.BigEndian.Uint64(ack[:]) != 3<<20 {
		t.Errorf("sink ack % x (%v)", ack, err)
	}
	_ = c.Close()

	c = dial("source@h")
	if err := Command(c, CmdSource, 3<<20); err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, c); err != nil || n != 3<<20 {
		t.Errorf("source: %d bytes (%v)", n, err)
	}
	_ = c.Close()

	// A connection without a whole first message is counted, not recorded.
	c = Dial(t, "", f.Addr())
	_, _ = c.Write(Hello("x@h")[:5])
	_ = c.Close()
	deadline := time.Now().Add(WaitTimeout)
	for f.NoHello() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling a counter
	}
	if f.NoHello() != 1 || f.Accepts() != 4 {
		t.Errorf("%d connections without a first message, %d in all; want 1 and 4", f.NoHello(), f.Accepts())
	}

	// Hand-over mode gives the connection after 'a', with nothing read past it.
	h := StartFakeNode(t, "127.0.0.1:0", true)
	c = Dial(t, "", h.Addr())
	if _, _, err := Handshake(c, "hand@h"); err != nil {
		t.Fatal(err)
	}
	u, hello := h.Next()
	if !bytes.Equal(hello, Hello("hand@h")) {
		t.Errorf("handed over with % x", hello)
	}
	_, _ = c.Write([]byte("ping"))
	var b [4]byte
	if _, err := io.ReadFull(u, b[:]); err != nil || string(b[:]) != "ping" {
		t.Errorf("handed-over connection read %q (%v)", b, err)
	}
}

// The client half of the handshake completes against a real node with the
// same cookie, which checks its 'r' digest; a watched node, clients and a
// shell work.
func TestErlangNode(t *testing.T) {
	if _, err := ErlPath(); err != nil {
		t.Skip(err)
	}
	t.Parallel()
	// No gate here: the node itself is on the address its name gives.
	p := Port(t, "127.0.0.1")
	const solo = "solo@127.0.0.1"
	n := StartNode(t, Erl{Name: solo, Port: p, Addr: "127.0.0.1"})
	client := func(name string) Erl { e := Client(name, p); e.Target = solo; return e }
	c := Dial(t, "", Addr("127.0.0.1", p))
	_ = c.SetDeadline(time.Now().Add(WaitTimeout))
	if _, _, err := Handshake(c, "raw@127.0.0.1"); err != nil {
		t.Fatalf("handshake with a real node: %v", err)
	}
	_ = c.Close()
	n.AwaitLine("nodeup 'raw@127.0.0.1'")

	if r := Ping(t, client("ping@127.0.0.1")); r != "pong" {
		t.Errorf("ping: %s", r)
	}
	out, err := RunClient(t, client("crash@127.0.0.1"), `erlang:error(boom)`)
	if ExitCode(err) != 3 || !strings.Contains(out, "crash error:boom") {
		t.Errorf("a crashing client: %v\n%s", err, out)
	}
	sh := StartShell(t, client("sh@127.0.0.1"))
	if r := sh.Do("node"); r != "'"+solo+"'" {
		t.Errorf("shell rpc: %s", r)
	}
	if err := sh.Quit(); err != nil {
		t.Errorf("shell quit: %v", err)
	}
}

// A gate starts from a config.File, waits for listening, reloads and stops;
// its log lines are there to match.
func TestGate(t *testing.T) {
	t.Parallel()
	up := StartFakeNode(t, "127.0.0.2:0", false)
	p := Port(t, GateIP)
	f := GateFile("t", Addr(GateIP, p), up.Addr(), Allow([]string{"127.0.0.1/32"}, "ok@*"))
	g := StartGate(t, f)
	c := Dial(t, "", Addr(GateIP, p))
	_ = c.SetDeadline(time.Now().Add(WaitTimeout))
	if _, _, err := Handshake(c, "ok@h"); err != nil {
		t.Fatalf("handshake through the gate: %v", err)
	}
	g.Wait(Msg("admitted"), NodeIs("ok@h"), From("127.0.0.1"))
	_ = c.Close()
	g.Wait(Msg("closed"), NodeIs("ok@h"))

	f.Gate[0].Allow[0].Names = []string{"other@*"}
	g.Reload(f)
	g.Wait(Msg("reloaded"))
	c = Dial(t, "", Addr(GateIP, p))
	if _, _, err := Handshake(c, "ok@h"); err == nil {
		t.Errorf("a name the reloaded gate does not allow got through")
	}
	g.Wait(Msg("denied"), Reason("name_not_allowed"))
	if code := g.Shutdown(); code != 0 {
		t.Errorf("exit code %d", code)
	}
	g.AllJSON()
	if b, err := os.ReadFile(g.Path); err != nil || !strings.Contains(string(b), strconv.Quote("other@*")) {
		t.Errorf("config file %s: %v\n%s", g.Path, err, b)
	}
}

// A command line in a message never carries the cookie.
func TestShownHidesCookie(t *testing.T) {
	c := Cmd{Args: []string{"erl", "-name", "a@b.c", "-setcookie", "s3cret", "-noshell"}}
	if got := c.shown(); strings.Contains(got, "s3cret") || !strings.Contains(got, "-setcookie … -noshell") {
		t.Errorf("shown = %q", got)
	}
}
