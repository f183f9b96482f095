package safefile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// readPromptly runs f and fails the test if it has not returned within a
// few seconds: the defects this package fixes were reads that never ended.
func readPromptly(t *testing.T, f func() ([]byte, error)) ([]byte, error) {
	t.Helper()
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := f()
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("read did not return within 5s")
		return nil, nil
	}
}

func wantRefused(t *testing.T, err error, kind error, detail string) {
	t.Helper()
	if err == nil {
		t.Fatalf("read succeeded, want an error containing %q", detail)
	}
	if !errors.Is(err, kind) {
		t.Errorf("error %q is not %v", err, kind)
	}
	if !strings.Contains(err.Error(), detail) {
		t.Errorf("error %q does not say %q", err, detail)
	}
}

func TestReadRegular(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	want := []byte("cookie\n")
	if err := os.WriteFile(p, want, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Read(p, 0)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Read = %q, %v; want %q", got, err, want)
	}
	// Empty files are files.
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = Read(p, 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("Read(empty) = %q, %v", got, err)
	}
}

func TestReadFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := readPromptly(t, func() ([]byte, error) { return Read(p, 0) })
	wantRefused(t, err, ErrNotRegular, "is a FIFO")
	if !strings.Contains(err.Error(), p) {
		t.Errorf("error %q does not name the path", err)
	}
}

// TestReadSymlinkToFIFO: the name a config gives can point anywhere; what
// counts is the target.
func TestReadSymlinkToFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "distgate.toml")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	_, err := readPromptly(t, func() ([]byte, error) { return Read(link, 0) })
	wantRefused(t, err, ErrNotRegular, "is a FIFO")
}

// TestCheckFIFOOpen covers the second look, on the opened descriptor: the
// path may become a FIFO between the stat and the open, and the open must
// still not block.
func TestCheckFIFOOpen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := readPromptly(t, func() ([]byte, error) {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != nil {
			return nil, err
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, err
		}
		return nil, check(p, &st, DefaultMax, false, fd)
	})
	wantRefused(t, err, ErrNotRegular, "is a FIFO")
}

func TestReadDevZeroSymlink(t *testing.T) {
	link := filepath.Join(t.TempDir(), "cookie")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	_, err := readPromptly(t, func() ([]byte, error) { return Read(link, 0) })
	wantRefused(t, err, ErrNotRegular, "is a character device")
	_, err = readPromptly(t, func() ([]byte, error) { return Read("/dev/zero", 0) })
	wantRefused(t, err, ErrNotRegular, `"/dev/zero" is a character device`)
}

func TestReadDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := Read(dir, 0)
	wantRefused(t, err, ErrNotRegular, "is a directory")
}

func TestReadMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope")
	_, err := Read(p, 0)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), p) {
		t.Errorf("error %q does not name the path", err)
	}
	// A dangling symlink is missing too.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(link, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("dangling symlink: err = %v, want fs.ErrNotExist", err)
	}
}

func TestReadCap(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(p, make([]byte, DefaultMax+1), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Read(p, 0)
	wantRefused(t, err, ErrTooLarge, `is 1048577 bytes, over the 1 MiB cap`)

	// Exactly at the cap is fine.
	if err := os.WriteFile(p, make([]byte, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := Read(p, 100); err != nil || len(b) != 100 {
		t.Fatalf("Read at the cap = %d bytes, %v", len(b), err)
	}
	_, err = Read(p, 99)
	wantRefused(t, err, ErrTooLarge, "is 100 bytes, over the 99 bytes cap")
}

// TestReadProcFile: a regular file whose size says 0 but which has content
// (as /proc files do) is read whole, and still capped.
func TestReadProcFile(t *testing.T) {
	b, err := Read("/proc/self/status", 0)
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if !bytes.Contains(b, []byte("Pid:")) {
		t.Fatalf("read %q, want the status", b)
	}
	_, err = Read("/proc/self/status", 16)
	wantRefused(t, err, ErrTooLarge, "grew past the 16 bytes cap")
}

func TestReadPrivate(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o640, false},
		{0o604, false},
		{0o644, false},
		{0o610, false},
	} {
		p := filepath.Join(dir, "cookie")
		if err := os.WriteFile(p, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		b, err := ReadPrivate(p, 0)
		if tc.ok {
			if err != nil || string(b) != "secret" {
				t.Errorf("mode %04o: ReadPrivate = %q, %v", tc.mode, b, err)
			}
		} else {
			wantRefused(t, err, ErrNotPrivate, "it must be readable by its owner only (chmod 600)")
			if err != nil && !strings.Contains(err.Error(), `"`+p+`" is mode `+octal(tc.mode)) {
				t.Errorf("mode %04o: error %q does not name the path and mode", tc.mode, err)
			}
		}
		// Read itself does not care about the mode.
		if _, err := Read(p, 0); err != nil {
			t.Errorf("mode %04o: Read = %v", tc.mode, err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadPrivateSymlink: the mode checked is the target's (a symlink's own
// mode is always 0777).
func TestReadPrivateSymlink(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cookie")
	if err := os.WriteFile(p, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadPrivate(link, 0); err != nil || string(b) != "secret" {
		t.Fatalf("ReadPrivate(link) = %q, %v", b, err)
	}
}

func octal(m os.FileMode) string {
	const digits = "01234567"
	m = m.Perm()
	return string([]byte{'0', digits[m>>6&7], digits[m>>3&7], digits[m&7]})
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{
		1 << 20: "1 MiB", 16 << 20: "16 MiB", 64 << 10: "64 KiB", 1000: "1000 bytes", 1<<20 + 1: "1048577 bytes",
	} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

// acl encodes a POSIX access ACL as Linux stores it: version 2, then
// (tag, perm, id) entries.
func acl(entries ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

// TestReadPrivateACL: a file of mode 0400 whose access ACL also lets the
// user distgate runs as read it (what systemd's LoadCredential= does for a
// service's user) shows mode 0440 and is private; an ACL that lets anyone
// else read it is not.
func TestReadPrivateACL(t *testing.T) {
	const none = 0xffffffff // the id of entries without one
	me := uint32(os.Geteuid())
	for _, tc := range []struct {
		name string
		acl  []byte
		ok   bool
	}{
		{"the service's user", acl([3]uint32{aclUserObj, 4, none}, [3]uint32{aclUser, 4, me}, [3]uint32{aclGroupObj, 0, none}, [3]uint32{aclMask, 4, none}, [3]uint32{aclOther, 0, none}), true},
		{"another user", acl([3]uint32{aclUserObj, 4, none}, [3]uint32{aclUser, 4, me + 1}, [3]uint32{aclGroupObj, 0, none}, [3]uint32{aclMask, 4, none}, [3]uint32{aclOther, 0, none}), false},
		{"another user, masked", acl([3]uint32{aclUserObj, 4, none}, [3]uint32{aclUser, 4, me + 1}, [3]uint32{aclUser, 4, me}, [3]uint32{aclGroupObj, 0, none}, [3]uint32{aclMask, 0, none}, [3]uint32{aclOther, 0, none}), true},
		{"the owning group", acl([3]uint32{aclUserObj, 4, none}, [3]uint32{aclUser, 4, me}, [3]uint32{aclGroupObj, 4, none}, [3]uint32{aclMask, 4, none}, [3]uint32{aclOther, 0, none}), false},
		{"a named group", acl([3]uint32{aclUserObj, 4, none}, [3]uint32{aclGroupObj, 0, none}, [3]uint32{aclGroup, 4, 12345}, [3]uint32{aclMask, 4, none}, [3]uint32{aclOther, 0, none}), false},
	} {
		p := filepath.Join(t.TempDir(), "cookie")
		if err := os.WriteFile(p, []byte("secret"), 0o400); err != nil {
			t.Fatal(err)
		}
		if err := unix.Setxattr(p, "system.posix_acl_access", tc.acl, 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
				t.Skipf("no POSIX ACLs on %s: %v", filepath.Dir(p), err)
			}
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ReadPrivate(p, 0)
		if tc.ok && (err != nil || string(b) != "secret") {
			t.Errorf("%s (mode %04o): ReadPrivate = %q, %v; want the secret", tc.name, fi.Mode().Perm(), b, err)
		}
		if !tc.ok {
			wantRefused(t, err, ErrNotPrivate, "with an access ACL that lets other users or groups read it")
		}
	}
}
