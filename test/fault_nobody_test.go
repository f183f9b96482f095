package test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/distgate/distgate/internal/testenv"
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
	copyFile(t, testenv.Distgate(t), bin, 0o755)
	asNobody := func(c *exec.Cmd) {
		if asRoot {
			c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		}
	}

	p := testenv.AppPort(t)
	testenv.StartNode(t, testenv.App(p))
	conf := testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"}))
	g := testenv.StartGateCmd(t, testenv.GateCmd{Bin: bin, Dir: dir, File: conf, Adjust: asNobody})
	status := func(key string) string {
		t.Helper()
		v, err := testenv.Status(g.Pid(), key)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	uid := status("Uid")
	t.Logf("distgate runs with Uid %s, Gid %s, Groups %q, CapEff %s", uid, status("Gid"), status("Groups"), status("CapEff"))
	if f := strings.Fields(uid); len(f) == 0 || f[0] == "0" {
		t.Fatalf("distgate runs as root (Uid %s)", uid)
	}
	if asRoot && (status("Groups") != "" || status("CapEff") != "0000000000000000") {
		t.Errorf("distgate kept groups or capabilities: Groups %q, CapEff %s", status("Groups"), status("CapEff"))
	}
	if r := testenv.Ping(t, testenv.Client("low@127.0.0.1", p)); r != "pong" {
		t.Fatalf("ping through an unprivileged distgate = %s, want pong", r)
	}
	g.Wait(testenv.Msg("admitted"), testenv.NodeIs("low@127.0.0.1"))
	g.Reload(conf)
	g.Wait(testenv.Msg("reloaded"))

	// Port 1023 (below net.ipv4.ip_unprivileged_port_start, 1024 by
	// default) is refused at start.
	if !asRoot {
		return // the low-port check needs a privilege to drop
	}
	low := testenv.AppGate("e2e", p, conf.Gate[0].Allow...)
	low.Gate[0].Listen = "127.0.0.1:1023"
	lowPath := filepath.Join(dir, "low.toml")
	if err := testenv.Encode(lowPath, low); err != nil {
		t.Fatal(err)
	}
	out, err := testenv.Cmd{Args: []string{bin, "run", "-config", lowPath}, Adjust: asNobody}.Run(testenv.WaitTimeout)
	if code := testenv.ExitCode(err); code != 1 || !strings.Contains(out, "permission denied") {
		t.Errorf("listen on port 1023 as nobody: exit %d (%v), output %q; want exit 1 and permission denied", code, err, out)
	}
}

// forward = "kernel" without the privileges it needs: distgate run as
// nobody says why in one warn line, listens on path user, and traffic
// flows. With exactly CAP_BPF and CAP_NET_ADMIN handed to nobody as
// ambient capabilities (what deploy/systemd's kernel-forward.conf grants
// the service's dynamic user), the kernel path runs.
func TestKernelPathUnprivileged(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run distgate as uid 65534 with and without capabilities; NOT tested")
	}
	if why := kernelMissing(); why != "" {
		t.Skip(why)
	}
	dir, err := os.MkdirTemp("", "distgate-nobody-kernel-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "distgate")
	copyFile(t, testenv.Distgate(t), bin, 0o755)

	for _, tc := range []struct {
		name string
		caps []uintptr
		path string
	}{
		{"no capabilities", nil, pathUser},
		{"CAP_BPF and CAP_NET_ADMIN", []uintptr{capBPF, capNetAdmin}, pathKernel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			asNobody := func(c *exec.Cmd) {
				c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}, AmbientCaps: tc.caps}
			}
			p := testenv.AppPort(t)
			testenv.StartNode(t, testenv.App(p))
			conf := onPath(testenv.AppGate("e2e", p, testenv.Allow([]string{"127.0.0.1/32"})), pathKernel)
			g := testenv.StartGateCmd(t, testenv.GateCmd{Bin: bin, Dir: sub, File: conf, Adjust: asNobody})
			caps, err := testenv.Status(g.Pid(), "CapEff")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("distgate runs as uid %d with CapEff %s", nobody, caps)

			warn := testenv.Filter(g.Lines(), testenv.Msg("kernel forwarding unavailable; forwarding in user space"))
			if l := g.Wait(testenv.Msg("listening")); l.Str("path") != tc.path {
				t.Errorf("listening line %v, want path %s", l, tc.path)
			}
			if tc.path == pathUser {
				if len(warn) != 1 || warn[0].Str("level") != "warn" || warn[0].Str("path") != pathUser ||
					!strings.Contains(warn[0].Str("error"), "CAP_BPF and CAP_NET_ADMIN") {
					t.Errorf("warn lines %v, want one saying the kernel path needs CAP_BPF and CAP_NET_ADMIN", warn)
				}
			} else if len(warn) != 0 {
				t.Errorf("warned %v with the capabilities the kernel path needs", warn)
			}
			if r := testenv.Ping(t, testenv.Client("cap@127.0.0.1", p)); r != "pong" {
				t.Fatalf("ping through distgate = %s, want pong", r)
			}
			closedPath(t, g.Wait(testenv.Msg("closed"), testenv.NodeIs("cap@127.0.0.1")), tc.path, false)
		})
	}
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
