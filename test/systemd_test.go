package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

// TestSystemdUnit checks deploy/systemd/distgate.service offline with
// systemd-analyze: `verify` must print nothing (it reports unknown keys and
// bad values only as warnings), and `security --offline` must rate the
// sandbox at most 2.0 ("OK"). systemd need not be running; the systemd
// package must be installed (Debian: apt-get install systemd).
func TestSystemdUnit(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd); the unit file was NOT checked")
	}
	unit, err := os.ReadFile("../deploy/systemd/distgate.service")
	if err != nil {
		t.Fatal(err)
	}
	text := string(unit)

	// The settings the deployment relies on.
	for _, line := range []string{
		"ExecStart=/usr/local/bin/distgate run -config /etc/distgate/distgate.toml",
		"ExecReload=/bin/kill -HUP $MAINPID",
		"KillSignal=SIGTERM",
		"DynamicUser=yes",
		"NoNewPrivileges=yes",
		"ProtectSystem=strict",
		"PrivateTmp=yes",
		"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
		"CapabilityBoundingSet=\n",
		"StateDirectory=distgate\n",
		"RuntimeDirectory=distgate\n",
		"#LoadCredential=cookie:/etc/distgate/cookie\n",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(line))
		}
	}
	// TimeoutStopSec must leave room for the default drain_timeout (10s).
	m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\S+)$`).FindStringSubmatch(text)
	if m == nil {
		t.Error("no TimeoutStopSec")
	} else if d, err := time.ParseDuration(m[1]); err != nil || d <= 10*time.Second {
		t.Errorf("TimeoutStopSec=%s: must be above drain_timeout (10s by default)", m[1])
	}

	// verify checks that ExecStart's binary exists: point it at a fresh build.
	bin := testenv.Distgate(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "distgate.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "/usr/local/bin/distgate", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The cookie credential, uncommented as the comment says, verifies too.
	withCookie := filepath.Join(dir, "cookie", "distgate.service")
	cred := strings.NewReplacer("#LoadCredential=", "LoadCredential=", "#Environment=DISTGATE_COOKIE_FILE=", "Environment=DISTGATE_COOKIE_FILE=").
		Replace(strings.ReplaceAll(text, "/usr/local/bin/distgate", bin))
	if !strings.Contains(cred, "\nLoadCredential=") || !strings.Contains(cred, "\nEnvironment=DISTGATE_COOKIE_FILE=%d/cookie") {
		t.Error("the unit lacks the commented LoadCredential= and Environment=DISTGATE_COOKIE_FILE= lines")
	}
	if err := os.MkdirAll(filepath.Dir(withCookie), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(withCookie, []byte(cred), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", withCookie).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify, with the cookie credential: %v\n%s", err, out)
	}

	out, err = exec.Command(sa, "security", "--offline=true", "--no-pager", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security --offline: %v\n%s", err, out)
	}
	m = regexp.MustCompile(`Overall exposure level for distgate\.service: ([0-9.]+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	if v, _ := strconv.ParseFloat(m[1], 64); v > 2.0 {
		t.Errorf("exposure level %s, want at most 2.0:\n%s", m[1], out)
	}
	t.Logf("systemd-analyze security: exposure %s", m[1])
	if strings.Contains(string(out), "bpf is allowed") {
		t.Errorf("the unit without the kernel-forward drop-in allows bpf(2):\n%s", out)
	}
}

// TestSystemdKernelDropIn checks deploy/systemd/distgate.service.d/
// kernel-forward.conf, the drop-in that turns the kernel forwarding path
// on: the unit with it verifies, it grants exactly CAP_BPF and
// CAP_NET_ADMIN, gives bpf(2) back and leaves the private user namespace
// (systemd-analyze security says so), and it selects the path. Whether
// those privileges are enough is TestKernelPathCapabilities.
func TestSystemdKernelDropIn(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd); the drop-in was NOT checked")
	}
	unit, err := os.ReadFile("../deploy/systemd/distgate.service")
	if err != nil {
		t.Fatal(err)
	}
	dropIn, err := os.ReadFile("../deploy/systemd/distgate.service.d/kernel-forward.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"\nEnvironment=DISTGATE_FORWARD=kernel\n",
		"\nCapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN\n",
		"\nAmbientCapabilities=CAP_BPF CAP_NET_ADMIN\n",
		"\nSystemCallFilter=bpf\n",
		"\nPrivateUsers=no\n",
	} {
		if !strings.Contains(string(dropIn), line) {
			t.Errorf("the drop-in lacks %q", strings.TrimSpace(line))
		}
	}
	// systemd reads a unit's drop-ins from NAME.service.d beside it.
	dir := t.TempDir()
	path := filepath.Join(dir, "distgate.service")
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/distgate", testenv.Distgate(t))
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path+".d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path+".d", "kernel-forward.conf"), dropIn, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", path).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify, with the drop-in: %v\n%s", err, out)
	}
	out, err := exec.Command(sa, "security", "--offline=true", "--no-pager", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security --offline: %v\n%s", err, out)
	}
	// What the drop-in opens, each a ✗ line of its own.
	for _, want := range []string{`SystemCallFilter=~@privileged .*bpf is allowed`, `CapabilityBoundingSet=~CAP_BPF `,
		`CapabilityBoundingSet=~CAP_NET_ADMIN `, `PrivateUsers= `} {
		if !regexp.MustCompile(`(?m)^✗ ` + want).MatchString(string(out)) {
			t.Errorf("systemd-analyze security does not report %q with the drop-in:\n%s", want, out)
		}
	}
	if regexp.MustCompile(`(?m)^✗ CapabilityBoundingSet=~CAP_SYS_ADMIN`).MatchString(string(out)) {
		t.Errorf("the drop-in grants CAP_SYS_ADMIN:\n%s", out)
	}
	m := regexp.MustCompile(`Overall exposure level for distgate\.service: ([0-9.]+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	t.Logf("systemd-analyze security with the kernel-forward drop-in: exposure %s", m[1])
}
