package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Default bounds of the waits. Tests use them as they are; programs pass
// their own.
const (
	// WaitTimeout bounds every wait for a log line, a reply or a port.
	WaitTimeout = 20 * time.Second
	// ClientTimeout bounds a one-shot Erlang client, boot to halt.
	ClientTimeout = 60 * time.Second
)

// Cmd describes a process to start. It runs in a process group of its own,
// so that stopping it also stops what it forked (erl_child_setup, nginx
// workers, the shell under script(1)) and nothing else, and the kernel
// kills it if the program that started it dies first.
type Cmd struct {
	Name string   // for messages; "" means the base name of Args[0]
	Args []string // the program, then its arguments
	Dir  string   // the working directory; "" means the current one
	Env  []string // the whole environment; nil means CleanEnv()
	Log  string   // if set, a file that gets a copy of the output
	// Stdin gives the process a pipe on stdin (Proc.Stdin).
	Stdin bool
	// StderrPipe (Start only) gives the process's stderr to the caller as
	// the read end of a pipe (Proc.Stderr) instead of capturing it in Out:
	// to read it at the caller's pace, or to close it and see how the
	// process copes with a reader that went away.
	StderrPipe bool
	// MaxRSS (Run and Output only), if not zero, caps the process's
	// resident set in bytes: it is polled every 20 ms, and a process past
	// the cap has its group killed, as one past the timeout does, so that
	// a read that grows without bound fails its caller, not the machine.
	MaxRSS int64
	// Adjust, if set, gets the command last before it starts: to wrap it
	// in prlimit, run it as another user, ...
	Adjust func(*exec.Cmd)
	// StopSignal is what a test's cleanup and StopAll send first (zero:
	// SIGTERM); Grace is how long they wait before they kill the group
	// (zero: 10 s).
	StopSignal syscall.Signal
	Grace      time.Duration
}

func (c Cmd) name() string {
	if c.Name != "" {
		return c.Name
	}
	return filepath.Base(c.Args[0])
}

func (c Cmd) command(ctx context.Context) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.Args[0], c.Args[1:]...)
	cmd.Dir, cmd.Env = c.Dir, c.Env
	if cmd.Env == nil {
		cmd.Env = CleanEnv()
	}
	if c.Adjust != nil {
		c.Adjust(cmd)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	return cmd
}

// output points the command's stdout and stderr at w and, with c.Log, at
// the log file too; close closes that file. One writer serves both
// streams, so exec copies them in one goroutine.
func (c Cmd) output(cmd *exec.Cmd, w io.Writer) (close func(), err error) {
	close = func() {}
	if c.Log != "" {
		f, err := os.Create(c.Log)
		if err != nil {
			return nil, err
		}
		w, close = io.MultiWriter(w, f), func() { _ = f.Close() }
	}
	cmd.Stdout, cmd.Stderr = w, w
	return close, nil
}

// Proc is a process started by Start. Its output (stdout and stderr
// together) is captured in Out.
type Proc struct {
	Name  string
	Cmd   *exec.Cmd
	Out   *Lines
	Stdin io.WriteCloser // nil unless Cmd.Stdin was set
	// Stderr is the read end of the process's stderr; nil unless
	// Cmd.StderrPipe was set. The owning test's cleanup closes it.
	Stderr *os.File

	stop  syscall.Signal
	grace time.Duration
	done  chan struct{}
	err   error      // Wait's result, once done is closed
	tb    testing.TB // the test that owns it, if one does
}

var (
	runningMu sync.Mutex
	running   = map[*Proc]struct{}{}
)

// Start starts the process. The caller stops it (Stop, or StopAll).
func (c Cmd) Start() (*Proc, error) {
	p := &Proc{Name: c.name(), Out: NewLines(), stop: c.StopSignal, grace: c.Grace, done: make(chan struct{})}
	if p.stop == 0 {
		p.stop = syscall.SIGTERM
	}
	if p.grace == 0 {
		p.grace = 10 * time.Second
	}
	p.Cmd = c.command(context.Background())
	closeLog, err := c.output(p.Cmd, p.Out)
	if err == nil && c.Stdin {
		p.Stdin, err = p.Cmd.StdinPipe()
	}
	// The pipe is made here, not with StderrPipe, because exec closes its
	// own pipes when Wait returns, under a reader that may still be busy.
	var stderrW *os.File
	if err == nil && c.StderrPipe {
		if p.Stderr, stderrW, err = os.Pipe(); err == nil {
			p.Cmd.Stderr = stderrW
		}
	}
	if err == nil {
		err = p.Cmd.Start()
	}
	if stderrW != nil {
		_ = stderrW.Close() // the child holds the only write end now
	}
	if err != nil {
		if closeLog != nil {
			closeLog()
		}
		if p.Stderr != nil {
			_ = p.Stderr.Close()
		}
		return nil, fmt.Errorf("start %s (%s): %w", p.Name, c.shown(), err)
	}
	runningMu.Lock()
	running[p] = struct{}{}
	runningMu.Unlock()
	go func() {
		p.err = p.Cmd.Wait()
		closeLog()
		runningMu.Lock()
		delete(running, p)
		runningMu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Start starts c for a test, which it fails if c cannot start; see own.
func Start(t testing.TB, c Cmd) *Proc {
	t.Helper()
	p, err := c.Start()
	if err != nil {
		t.Fatal(err)
	}
	p.own(t)
	return p
}

// own hands p to a test: the test-only methods fail it, and its cleanup
// closes p's stdin, stops p (its stop signal, then its grace), closes the
// read end of its stderr pipe and logs p's output if the test failed.
func (p *Proc) own(t testing.TB) {
	p.tb = t
	t.Cleanup(func() {
		if p.Stdin != nil {
			_ = p.Stdin.Close()
		}
		p.Stop(p.stop, p.grace)
		if p.Stderr != nil {
			_ = p.Stderr.Close()
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", p.Name, p.Out)
		}
	})
}

// Pid returns the process's id, which is also its process group's.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err returns how the process ended (exec.Cmd.Wait's error); nil while it
// runs.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// ExitCode returns the exit code once the process has exited; -1 while it
// runs or when a signal ended it.
func (p *Proc) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.Cmd.ProcessState.ExitCode()
}

// Signal sends sig to the process (not to its group).
func (p *Proc) Signal(sig syscall.Signal) error {
	if err := p.Cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", p.Name, err)
	}
	return nil
}

// Stop sends sig to the process and waits up to grace for it to exit;
// then it kills its group. Stopping an exited process does nothing.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.Cmd.Process.Signal(sig)
	if p.WaitExit(grace) != nil {
		p.Kill()
	}
}

// Kill kills the process's group with SIGKILL and waits for the process.
// The group is signalled only while its leader lives: a group id is not
// reused before then.
func (p *Proc) Kill() {
	if !p.Exited() {
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
		<-p.done
	}
}

// WaitExit waits up to timeout for the process to exit by itself.
func (p *Proc) WaitExit(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %v", p.Name, timeout)
	}
}

// WaitFor waits until ok accepts the output lines, at most timeout; it
// fails at once if the process exits and its last lines do not do.
func (p *Proc) WaitFor(what string, timeout time.Duration, ok func([]string) bool) error {
	_, err := WaitLines(p.Out, p.done, p.Name+": "+what, timeout, func(ls []string) (struct{}, bool) {
		return struct{}{}, ok(ls)
	})
	return err
}

// WaitLine waits for a line equal to want at or after index from and
// returns the index after it.
func (p *Proc) WaitLine(want string, from int, timeout time.Duration) (int, error) {
	return WaitLines(p.Out, p.done, fmt.Sprintf("%s: the line %q", p.Name, want), timeout, func(ls []string) (int, bool) {
		for i := from; i < len(ls); i++ {
			if ls[i] == want {
				return i + 1, true
			}
		}
		return 0, false
	})
}

// Await is WaitFor with WaitTimeout that fails the test owning p.
func (p *Proc) Await(what string, ok func([]string) bool) {
	p.helper()
	p.must(p.WaitFor(what, WaitTimeout, ok))
}

// AwaitText waits, at most timeout, for an output line that contains s,
// and fails the test owning p if none comes.
func (p *Proc) AwaitText(s string, timeout time.Duration) {
	p.helper()
	p.must(p.WaitFor(strconv.Quote(s), timeout, func(ls []string) bool {
		return slices.ContainsFunc(ls, func(l string) bool { return strings.Contains(l, s) })
	}))
}

func (p *Proc) helper() {
	if p.tb != nil {
		p.tb.Helper()
	}
}

// must fails the test owning p if err is not nil. A program calling a
// test-only method gets a panic: a bug in the program.
func (p *Proc) must(err error) {
	if err == nil {
		return
	}
	if p.tb == nil {
		panic(fmt.Sprintf("testenv: %v (a test-only method on a process no test owns)", err))
	}
	p.tb.Helper()
	p.tb.Fatal(err)
}

// StopAll stops, at once, every process still running that Start started
// (each with its stop signal and grace). Programs call it on their way out
// and on SIGINT.
func StopAll() {
	runningMu.Lock()
	ps := make([]*Proc, 0, len(running))
	for p := range running {
		ps = append(ps, p)
	}
	runningMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { p.Stop(p.stop, p.grace) })
	}
	wg.Wait()
}

// Run runs c to its end, at most timeout, and returns its output (stdout
// and stderr together). When timeout passes, or the resident set passes
// c.MaxRSS, the process's group is killed and the error says so.
func (c Cmd) Run(timeout time.Duration) (string, error) {
	var out bytes.Buffer
	err := c.run(timeout, &out, nil)
	return out.String(), err
}

// Output is Run with stdout and stderr apart (and without c.Log).
func (c Cmd) Output(timeout time.Duration) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	c.Log = ""
	err = c.run(timeout, &o, &e)
	return o.String(), e.String(), err
}

func (c Cmd) run(timeout time.Duration, stdout, stderr io.Writer) error {
	// Both the timeout and the memory cap end the process through the
	// context, whose cause says which; exec then kills the group only while
	// the process is not yet reaped.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	timer := time.AfterFunc(timeout, func() { cancel(fmt.Errorf("%s did not finish within %v", c.name(), timeout)) })
	defer timer.Stop()
	cmd := c.command(ctx)
	closeLog, err := c.output(cmd, stdout)
	if err != nil {
		return err
	}
	defer closeLog()
	if stderr != nil {
		cmd.Stderr = stderr
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	if c.MaxRSS > 0 {
		done := make(chan struct{})
		defer close(done)
		go c.capRSS(cmd.Process.Pid, done, cancel)
	}
	err = cmd.Wait()
	if cause := context.Cause(ctx); cause != nil {
		err = fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

// capRSS polls pid's resident set until done closes, and cancels with a
// cause that gives the figures once it passes c.MaxRSS.
func (c Cmd) capRSS(pid int, done <-chan struct{}, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(20 * time.Millisecond) // polling /proc: nothing to wait on
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		if rss, _, err := Memory(pid); err == nil && rss > c.MaxRSS {
			cancel(fmt.Errorf("%s's resident set reached %d KiB, over the cap of %d KiB", c.name(), rss>>10, c.MaxRSS>>10))
			return
		}
	}
}

// ExitCode returns the exit code that err, from Run or Output, carries: 0
// for nil, -1 when it is not an exit status (the process did not start, or
// a signal ended it).
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// WaitPort polls until addr accepts a TCP connection, at most timeout. If
// p is not nil and exits first, it fails at once with p's last lines.
func WaitPort(addr string, timeout time.Duration, p *Proc) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		switch {
		case p != nil && p.Exited():
			return fmt.Errorf("%s exited before %s accepted a connection:\n%s", p.Name, addr, p.Out.Tail(20))
		case time.Now().After(deadline) && p != nil:
			return fmt.Errorf("%s: %s did not accept within %v (%v):\n%s", p.Name, addr, timeout, err, p.Out.Tail(20))
		case time.Now().After(deadline):
			return fmt.Errorf("%s did not accept within %v: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a port that is not up yet
	}
}

// WaitFile polls for a file another process creates, at most timeout; it
// fails at once if done closes first.
func WaitFile(path string, done <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			return err
		}
		select {
		case <-done:
			return fmt.Errorf("the process ended before it created %s", path)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling a file another process creates
	}
}

// WriteFile replaces path with content atomically (a temporary file, then
// a rename), so a process reading it on a signal never sees half of it.
func WriteFile(path string, content []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// shown is the command line for messages, with the value after
// -setcookie left out: a cookie never reaches test output.
func (c Cmd) shown() string {
	a := slices.Clone(c.Args)
	for i := range len(a) - 1 {
		if a[i] == "-setcookie" {
			a[i+1] = "…"
		}
	}
	return strings.Join(a, " ")
}
