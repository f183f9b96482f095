package test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

// runGuarded runs distgate with args, its group killed when it outlives
// limit or its RSS passes maxRSS: a configuration read that hangs or grows
// without bound must fail the test, not the machine. It returns stdout,
// stderr, the exit code and, if it had to be killed, why.
func runGuarded(t *testing.T, limit time.Duration, maxRSS int64, args ...string) (string, string, int, string) {
	t.Helper()
	c := testenv.Cmd{Name: "distgate " + strings.Join(args, " "), Args: append([]string{testenv.Distgate(t)}, args...),
		Dir: t.TempDir(), MaxRSS: maxRSS}
	stdout, stderr, err := c.Output(limit)
	code, killed := testenv.ExitCode(err), ""
	if code < 0 {
		killed = err.Error()
	}
	return stdout, stderr, code, killed
}

// A configuration path that is not a regular file (a FIFO, a device, a
// symlink to one, a directory) or is over 1 MiB is refused at once, naming
// the path and why.
func TestCheckConfigNotRegular(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.toml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	// A valid configuration behind a comment that takes it over the cap.
	big := filepath.Join(dir, "big.toml")
	if err := testenv.WriteFile(big, []byte("# "+strings.Repeat("x", 2<<20)+"\n"+cliGateA+cliAllow)); err != nil {
		t.Fatal(err)
	}
	for path, why := range map[string]string{
		fifo:        "a FIFO",
		"/dev/zero": "a character device",
		zero:        "a character device",
		dir:         "a directory",
		big:         "over the 1 MiB cap",
	} {
		start := time.Now()
		stdout, stderr, code, killed := runGuarded(t, 10*time.Second, 256<<20, "check", "-config", path)
		if killed != "" {
			t.Errorf("check -config %s: killed, %s", path, killed)
			continue
		}
		if code != 2 || !strings.Contains(stderr, path) || !strings.Contains(stderr, why) || stdout != "" {
			t.Errorf("check -config %s: exit %d, want 2 naming the path and %q; stderr:\n%s", path, code, why, stderr)
		}
		t.Logf("check -config %s: exit %d after %v", path, code, time.Since(start).Round(time.Millisecond))
	}
}

// A reload whose file became a FIFO or a symlink to /dev/zero is refused,
// naming the path and why, and the process still reloads and stops on
// signals afterwards.
func TestRunReloadNotRegular(t *testing.T) {
	t.Parallel()
	f := testenv.AppGate("e2e", testenv.AppPort(t), testenv.Allow([]string{"127.0.0.1"}))
	g := testenv.StartGate(t, f)

	// Swap the file for a FIFO (atomically, as an editor or a
	// configuration tool would) and reload.
	fifo := g.Path + ".fifo"
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fifo, g.Path); err != nil {
		t.Fatal(err)
	}
	g.Send(syscall.SIGHUP)
	l := g.Wait(testenv.MsgPrefix("reload refused"))
	if e := l.Str("error"); !strings.Contains(e, g.Path) || !strings.Contains(e, "a FIFO") {
		t.Errorf("reload refused with %q, want the path and \"a FIFO\"", e)
	}

	// A symlink to /dev/zero: refused without reading it.
	_ = os.Remove(g.Path)
	if err := os.Symlink("/dev/zero", g.Path); err != nil {
		t.Fatal(err)
	}
	g.Send(syscall.SIGHUP)
	g.WaitN(2, testenv.MsgPrefix("reload refused"))
	if rss, _, err := testenv.Memory(g.Pid()); err == nil && rss > 256<<20 {
		t.Errorf("RSS %s after reading the configuration", mib(rss))
	}

	// A good file again: the reload applies.
	_ = os.Remove(g.Path)
	g.Reload(f)
	g.Wait(testenv.Msg("reloaded"))

	// And SIGTERM still stops it.
	start := time.Now()
	if code := g.Shutdown(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}
