package test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/stress/attack"
)

// runGuarded runs distgate with args and kills it (by PID) when it outlives
// limit or its RSS passes maxRSS: a configuration read that hangs or grows
// without bound must fail the test, not the machine. It returns stdout,
// stderr, the exit code and, if it had to be killed, why.
func runGuarded(t *testing.T, limit time.Duration, maxRSS int64, args ...string) (string, string, int, string) {
	t.Helper()
	cmd := exec.Command(distgateBin, args...)
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	killed := ""
	deadline := time.After(limit)
	tick := time.NewTicker(20 * time.Millisecond) // polling /proc for the RSS
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-deadline:
			killed = "still running after " + limit.String()
		case <-tick.C:
			if rss, _, err := attack.Memory(cmd.Process.Pid); err == nil && rss > maxRSS {
				killed = "RSS " + mib(rss)
			}
		}
		if killed != "" {
			_ = cmd.Process.Kill()
			<-done
			break
		}
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode(), killed
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
	big := filepath.Join(dir, "big.toml")
	writeFile(t, big, "# "+strings.Repeat("x", 2<<20)+"\n"+cliGateA+cliAllow)
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
	port := freePort(t)
	config := gateTOML(port, "", allow([]string{"127.0.0.1"}))
	g := startGate(t, config)

	// Swap the file for a FIFO (atomically, as an editor or a
	// configuration tool would) and reload.
	fifo := g.path + ".fifo"
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fifo, g.path); err != nil {
		t.Fatal(err)
	}
	g.signal(syscall.SIGHUP)
	l := g.wait(msgPrefix("reload refused"))
	if e := l.str("error"); !strings.Contains(e, g.path) || !strings.Contains(e, "a FIFO") {
		t.Errorf("reload refused with %q, want the path and \"a FIFO\"", e)
	}

	// A symlink to /dev/zero: refused without reading it.
	_ = os.Remove(g.path)
	if err := os.Symlink("/dev/zero", g.path); err != nil {
		t.Fatal(err)
	}
	g.signal(syscall.SIGHUP)
	g.waitN(2, msgPrefix("reload refused"))
	if rss, _, err := attack.Memory(g.pid()); err == nil && rss > 256<<20 {
		t.Errorf("RSS %s after reading the configuration", mib(rss))
	}

	// A good file again: the reload applies.
	_ = os.Remove(g.path)
	g.reconfigure(config)
	g.wait(msg("reloaded"))

	// And SIGTERM still stops it.
	start := time.Now()
	if code := g.stop(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}
