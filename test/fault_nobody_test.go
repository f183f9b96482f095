package test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nobody is the unprivileged user distgate runs as in TestUnprivileged when
// the tests run as root.
const nobody = 65534

// distgate needs no privilege on a port above 1023: run it as nobody
// (uid/gid 65534, no supplementary groups) and admit a real client; reload
// works too (the file stays readable to it). A port below 1024 is refused
// with a clear error and exit code 1.
func TestUnprivileged(t *testing.T) {
	t.Parallel()
	asRoot := os.Geteuid() == 0
	// The test's temporary directories are private to the user running the
	// tests; nobody gets a world-readable one with its own copy of the binary.
	dir, err := os.MkdirTemp("", "distgate-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "distgate")
	copyFile(t, distgateBin, bin, 0o755)
	adjust := func(c *exec.Cmd) {
		c.Path, c.Args[0] = bin, bin
		if asRoot {
			c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		}
	}

	p := freePort(t)
	startNode(t, p)
	conf := gateTOML(p, "", allow([]string{"127.0.0.1/32"}))
	g := startGateCmd(t, conf, dir, adjust)
	uid := procField(t, g.pid(), "Uid")
	t.Logf("distgate runs with Uid %s, Gid %s, Groups %q, CapEff %s", uid, procField(t, g.pid(), "Gid"),
		procField(t, g.pid(), "Groups"), procField(t, g.pid(), "CapEff"))
	if f := strings.Fields(uid); len(f) == 0 || f[0] == "0" {
		t.Fatalf("distgate runs as root (Uid %s)", uid)
	}
	if asRoot && (procField(t, g.pid(), "Groups") != "" || procField(t, g.pid(), "CapEff") != "0000000000000000") {
		t.Errorf("distgate kept groups or capabilities: Groups %q, CapEff %s", procField(t, g.pid(), "Groups"), procField(t, g.pid(), "CapEff"))
	}
	if r := (client{name: "low@127.0.0.1", port: p}).ping(t); r != "pong" {
		t.Fatalf("ping through an unprivileged distgate = %s, want pong", r)
	}
	g.wait(msg("admitted"), nodeIs("low@127.0.0.1"))
	g.reconfigure(conf)
	g.wait(msg("reloaded"))

	// Port 1023 (below net.ipv4.ip_unprivileged_port_start, 1024 by
	// default) is refused at start.
	if !asRoot {
		return // the low-port check needs a privilege to drop
	}
	low := strings.Replace(conf, fmt.Sprintf("127.0.0.1:%d", p), "127.0.0.1:1023", 1)
	lowPath := filepath.Join(dir, "low.toml")
	writeFile(t, lowPath, low)
	cmd := exec.Command(bin, "run", "-config", lowPath)
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), "permission denied") {
		t.Errorf("listen on port 1023 as nobody: exit %d (%v), output %q; want exit 1 and permission denied", code, err, out)
	}
}

// procField returns the value of one line of /proc/PID/status.
func procField(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return ""
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
