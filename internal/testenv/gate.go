package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/config"
)

// RaceEnabled reports whether this binary was built with -race; the
// distgate it builds then has the detector too.
func RaceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// moduleRoot returns the directory of the go.mod that the current
// directory belongs to.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the distgate module (go env GOMOD says %q)", mod)
	}
	return filepath.Dir(mod), nil
}

// Build builds ./cmd/distgate of this module into dir with the extra go
// build flags, and with -race when this binary has the detector, so that
// races in the proxy under real traffic fail the test that hit them.
func Build(dir string, flags ...string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "distgate")
	args := []string{"build", "-o", bin}
	if RaceEnabled() {
		args = append(args, "-race")
	}
	args = append(append(args, flags...), "./cmd/distgate")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// shared holds what lives for the whole test binary: the distgate build.
// Main removes it.
var shared struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// Distgate returns the distgate binary under test, built once per test
// binary. With extra go build flags it builds another one, into the
// test's temporary directory.
func Distgate(t testing.TB, flags ...string) string {
	t.Helper()
	if len(flags) > 0 {
		bin, err := Build(t.TempDir(), flags...)
		if err != nil {
			t.Fatal(err)
		}
		return bin
	}
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "distgate-test-"); shared.err == nil {
			shared.bin, shared.err = Build(shared.dir)
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.bin
}

// Main runs a test binary's tests and then removes what Distgate built and
// stops any process a test left behind. A TestMain calls
// os.Exit(testenv.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	StopAll()
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	return code
}

// RunDistgate runs the binary under test to its end (at most 30 s) in a
// temporary directory, with env after CleanEnv's, and returns its stdout,
// its stderr and its exit code. It fails the test if the binary cannot run
// or does not finish.
func RunDistgate(t testing.TB, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	c := Cmd{Name: "distgate " + strings.Join(args, " "), Args: append([]string{Distgate(t)}, args...),
		Dir: t.TempDir(), Env: CleanEnv(env...)}
	stdout, stderr, err := c.Output(30 * time.Second)
	if code = ExitCode(err); code < 0 {
		t.Fatalf("%s: %v\n%s", c.Name, err, stderr)
	}
	return stdout, stderr, code
}

// Encode writes f to path atomically, as distgate reads it.
func Encode(path string, f *config.File) error {
	b, err := f.Encode()
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return WriteFile(path, b)
}

// GateCmd describes a distgate to start with `distgate run -config FILE`.
type GateCmd struct {
	Bin  string // the binary; for a test "" means Distgate(t)
	Dir  string // the config file goes here; for a test "" means a temporary directory
	File *config.File
	Env  []string // more environment, after CleanEnv's
	Log  string   // also copy the output to this file
	// Adjust, if set, gets the command last before it starts: to wrap it
	// in prlimit, run it as another user, ...
	Adjust func(*exec.Cmd)
}

// Gate is a running distgate.
type Gate struct {
	*Proc
	Path string // its config file, rewritten by Reload
}

// Start writes the config file, starts distgate on it and returns once it
// has logged "listening" for every gate (at log level info or lower); the
// caller stops it.
func (c GateCmd) Start() (*Gate, error) {
	path := filepath.Join(c.Dir, "distgate.toml")
	if err := Encode(path, c.File); err != nil {
		return nil, err
	}
	p, err := Cmd{Name: "distgate", Args: []string{c.Bin, "run", "-config", path}, Dir: c.Dir,
		Env: CleanEnv(c.Env...), Log: c.Log, Adjust: c.Adjust, Grace: 15 * time.Second}.Start()
	if err != nil {
		return nil, err
	}
	g := &Gate{Proc: p, Path: path}
	if _, err := g.WaitLines(len(c.File.Gate), WaitTimeout, Msg("listening")); err != nil {
		g.Kill()
		return nil, err
	}
	return g, nil
}

// StartGate starts distgate for a test with the configuration f and
// returns once every gate in it listens. Cleanup stops it (Shutdown).
func StartGate(t testing.TB, f *config.File) *Gate {
	t.Helper()
	return StartGateCmd(t, GateCmd{File: f})
}

// StartGateCmd is StartGate with a say in how distgate is started.
func StartGateCmd(t testing.TB, c GateCmd) *Gate {
	t.Helper()
	if c.Bin == "" {
		c.Bin = Distgate(t)
	}
	if c.Dir == "" {
		c.Dir = t.TempDir()
	}
	g, err := c.Start()
	if err != nil {
		t.Fatal(err)
	}
	g.own(t)
	t.Cleanup(func() { g.Shutdown() }) // before own's: the race check
	return g
}

// Lines returns the JSON lines logged so far (anything else is skipped).
func (g *Gate) Lines() []Line {
	l, _ := ParseLog(g.Out.All())
	return l
}

// Count returns how many lines logged so far match every predicate.
func (g *Gate) Count(ms ...Match) int { return len(Filter(g.Lines(), ms...)) }

// WaitLines waits, at most timeout, until at least n lines match every
// predicate, and returns them.
func (g *Gate) WaitLines(n int, timeout time.Duration, ms ...Match) ([]Line, error) {
	what := fmt.Sprintf("%d distgate log line(s) matching the predicates", n)
	return WaitLines(g.Out, g.Done(), what, timeout, func(raw []string) ([]Line, bool) {
		l, _ := ParseLog(raw)
		got := Filter(l, ms...)
		return got, len(got) >= n
	})
}

// WaitN waits until at least n lines match every predicate and returns
// them; it fails the test after WaitTimeout.
func (g *Gate) WaitN(n int, ms ...Match) []Line {
	g.helper()
	ls, err := g.WaitLines(n, WaitTimeout, ms...)
	g.must(err)
	return ls
}

// Wait waits for one line matching every predicate and returns the first.
func (g *Gate) Wait(ms ...Match) Line { g.helper(); return g.WaitN(1, ms...)[0] }

// WaitRaw waits until n output lines contain s. Unlike WaitN it does not
// parse JSON and looks at each line once, which matters when a busy test
// waits many times on a long log.
func (g *Gate) WaitRaw(n int, s string) {
	g.helper()
	seen, k := 0, 0
	_, err := WaitLines(g.Out, g.Done(), fmt.Sprintf("%d distgate lines holding %q", n, s), WaitTimeout, func(ls []string) (int, bool) {
		for ; seen < len(ls); seen++ {
			if strings.Contains(ls[seen], s) {
				k++
			}
		}
		return k, k >= n
	})
	g.must(err)
}

// Send sends sig to distgate and fails the test if it cannot.
func (g *Gate) Send(sig syscall.Signal) {
	g.helper()
	g.must(g.Signal(sig))
}

// Reload rewrites the config file (atomically) and sends SIGHUP.
func (g *Gate) Reload(f *config.File) {
	g.helper()
	g.must(Encode(g.Path, f))
	g.Send(syscall.SIGHUP)
}

// Shutdown sends SIGTERM and waits for the exit; it returns the exit code.
// A distgate that outlives the drain by far is killed and fails the test,
// and so do the race detector's reports (when the tests run with -race).
func (g *Gate) Shutdown() int {
	g.helper()
	if !g.Exited() {
		_ = g.Signal(syscall.SIGTERM)
		if err := g.WaitExit(15 * time.Second); err != nil {
			g.Kill()
			g.tb.Errorf("distgate did not stop within 15s of SIGTERM")
		}
	}
	if strings.Contains(g.Out.String(), "WARNING: DATA RACE") {
		g.tb.Errorf("the race detector reported a data race in distgate")
	}
	return g.ExitCode()
}

// AwaitExit waits (bounded) for distgate to exit on its own and returns the
// exit code; -1 means a signal ended it.
func (g *Gate) AwaitExit() int {
	g.helper()
	g.must(g.WaitExit(WaitTimeout))
	return g.Shutdown()
}

// AllJSON fails the test unless every line distgate wrote is one JSON
// object.
func (g *Gate) AllJSON() {
	g.helper()
	for i, l := range g.Out.All() {
		if _, bad := ParseLog([]string{l}); bad != 0 {
			g.tb.Errorf("distgate's output line %d is not one JSON object: %q", i+1, l)
		}
	}
}

// FDs returns distgate's open descriptors now.
func (g *Gate) FDs() int {
	g.helper()
	n, err := FDs(g.Pid())
	g.must(err)
	return n
}

// Sockets returns how many of distgate's descriptors are sockets: the
// listeners and the connections. (Its other descriptors include the pipes
// Go pools for splice, which the garbage collector frees when it likes.)
func (g *Gate) Sockets() int {
	g.helper()
	n, err := Sockets(g.Pid())
	g.must(err)
	return n
}

// WaitSockets waits until distgate holds at most want sockets (at most
// WaitTimeout) and returns the last count.
func (g *Gate) WaitSockets(want int) int {
	g.helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		n := g.Sockets()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond) // polling /proc: nothing to wait on
	}
}
