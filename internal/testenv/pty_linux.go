package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a new pseudo-terminal pair: posix_openpt, grantpt (a no-op
// with devpts) and unlockpt, by hand. The master is non-blocking so that
// reads go through the runtime's poller and can be given a deadline.
func openPTY() (master, slave *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	master = os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		_ = master.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		_ = master.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	name := "/dev/pts/" + strconv.Itoa(n)
	sfd, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = master.Close()
		return nil, nil, fmt.Errorf("open %s: %w", name, err)
	}
	// A wide terminal, so that a shell does not wrap what a test waits for.
	if err := unix.IoctlSetWinsize(sfd, unix.TIOCSWINSZ, &unix.Winsize{Row: 50, Col: 250}); err != nil {
		_ = unix.Close(sfd)
		_ = master.Close()
		return nil, nil, fmt.Errorf("set the window size of %s: %w", name, err)
	}
	return master, os.NewFile(uintptr(sfd), name), nil
}

// ptyInput is the terminal's master side as a process's stdin: what a user
// types. Closing it hangs the terminal up.
type ptyInput struct{ f *os.File }

func (p ptyInput) Write(b []byte) (int, error) { return p.f.Write(b) }
func (p ptyInput) Close() error                { return p.f.Close() }

// StartPTY starts c with a new pseudo-terminal as its controlling terminal,
// stdin, stdout and stderr, for programs that behave differently on a
// terminal: IEx, for one, ignores --remsh on a pipe and starts a local
// shell. Out gets what the program writes to the terminal (with the
// terminal's \r\n line ends and the echo of what was typed), Stdin types on
// it, and c.Stdin is ignored. The process leads a session of its own (so a
// process group of its own too, which Stop kills as with Start). The caller
// stops it.
func (c Cmd) StartPTY() (*Proc, error) {
	master, slave, err := openPTY()
	if err != nil {
		return nil, err
	}
	p := &Proc{Name: c.name(), Out: NewLines(), stop: c.StopSignal, grace: c.Grace, done: make(chan struct{})}
	if p.stop == 0 {
		p.stop = syscall.SIGTERM
	}
	if p.grace == 0 {
		p.grace = 10 * time.Second
	}
	var out io.Writer = p.Out
	closeLog := func() {}
	if c.Log != "" {
		f, err := os.Create(c.Log)
		if err != nil {
			_ = master.Close()
			_ = slave.Close()
			return nil, err
		}
		out, closeLog = io.MultiWriter(p.Out, f), func() { _ = f.Close() }
	}
	p.Cmd = c.command(context.Background())
	p.Cmd.Stdin, p.Cmd.Stdout, p.Cmd.Stderr = slave, slave, slave
	// A session of its own with the terminal as its controlling terminal,
	// as a login shell has: setsid also makes a new process group, which
	// setpgid cannot do for a session leader, so it replaces Setpgid.
	p.Cmd.SysProcAttr.Setpgid = false
	p.Cmd.SysProcAttr.Setsid = true
	p.Cmd.SysProcAttr.Setctty = true
	p.Cmd.SysProcAttr.Ctty = 0 // the child's stdin
	err = p.Cmd.Start()
	_ = slave.Close() // the child holds it now
	if err != nil {
		_ = master.Close()
		closeLog()
		return nil, fmt.Errorf("start %s (%s) on a terminal: %w", p.Name, c.shown(), err)
	}
	p.Stdin = ptyInput{master}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		// Ends with EIO once no process holds the terminal, or at the
		// deadline set below, or when Stdin is closed.
		_, _ = io.Copy(out, master)
	}()
	runningMu.Lock()
	running[p] = struct{}{}
	runningMu.Unlock()
	go func() {
		p.err = p.Cmd.Wait()
		// Something it started may still hold the terminal: read what is
		// there, for a moment, and then stop reading.
		if err := master.SetReadDeadline(time.Now().Add(time.Second)); err != nil && !errors.Is(err, os.ErrClosed) {
			_ = master.Close()
		}
		<-copied
		_ = master.Close()
		closeLog()
		runningMu.Lock()
		delete(running, p)
		runningMu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// StartPTY is Cmd.StartPTY for a test, which it fails if c cannot start;
// the test's cleanup hangs the terminal up and stops the process.
func StartPTY(t testing.TB, c Cmd) *Proc {
	t.Helper()
	p, err := c.StartPTY()
	if err != nil {
		t.Fatal(err)
	}
	p.own(t)
	return p
}
