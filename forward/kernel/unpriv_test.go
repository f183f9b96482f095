package kernel

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/distgate/distgate/forward"
)

// childEnv makes the test binary run unprivilegedChild instead of tests.
const childEnv = "DISTGATE_KERNEL_TEST_CHILD"

// unprivilegedChild runs New as whatever user it was started as and
// prints the error: exit 0 when it is ErrPermission, 1 otherwise.
func unprivilegedChild() int {
	k, err := New(&forward.Goroutines{}, Options{SelfTestTimeout: -1})
	if err == nil {
		_ = k.Close()
		fmt.Println("New succeeded")
		return 1
	}
	fmt.Println(err)
	if errors.Is(err, ErrPermission) && errors.Is(err, syscall.EPERM) {
		return 0
	}
	return 1
}

// Without CAP_BPF and CAP_NET_ADMIN, New fails with ErrPermission and
// says what is missing (not cilium's MEMLOCK hint).
func TestUnprivilegedIsPermissionError(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a child as uid 65534")
	}
	// The test binary's directory is private to root: copy the binary
	// where uid 65534 can run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kernel-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "kernel.test")
	if err := copyFile(self, bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	msg := strings.TrimSpace(string(out))
	t.Logf("as uid 65534: %s", msg)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	for _, want := range []string{"CAP_BPF", "CAP_NET_ADMIN", "operation not permitted"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if strings.Contains(msg, "consider rlimit") {
		t.Errorf("error %q carries the misleading MEMLOCK hint", msg)
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
