// Package safefile reads the small files distgate depends on (the
// configuration, cookies, TLS certificates and keys, the state file) without
// letting a wrong path hang or exhaust the process: a FIFO, a device or a
// directory is refused before a byte is read, and no file is read past a cap.
package safefile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"

	"golang.org/x/sys/unix"
)

// DefaultMax is the cap Read applies when given max <= 0: far above any
// configuration, cookie or certificate chain distgate reads.
const DefaultMax = 1 << 20

// Errors a caller can test with errors.Is. The error returned carries the
// path and the detail; these are only its kind.
var (
	// ErrNotRegular: the path is a FIFO, a device, a socket or a directory.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge: the file is over the cap.
	ErrTooLarge = errors.New("file too large")
	// ErrNotPrivate: ReadPrivate found access for group or others.
	ErrNotPrivate = errors.New("file readable by others")
)

// Error is what Read returns when a file exists but is refused. Its message
// names the path and what is wrong; callers add the configuration key in
// front (fmt.Errorf("cookie_file: %w", err)).
type Error struct {
	Path   string
	Detail string // e.g. "is a FIFO", "is 2000000 bytes, over the 1 MiB cap"
	Kind   error  // ErrNotRegular, ErrTooLarge or ErrNotPrivate
}

func (e *Error) Error() string { return fmt.Sprintf("%q %s", e.Path, e.Detail) }

// Unwrap makes errors.Is(err, ErrTooLarge) and the like work.
func (e *Error) Unwrap() error { return e.Kind }

// Read returns the contents of the regular file at path, following
// symlinks. It refuses anything else, and a file larger than max bytes
// (DefaultMax if max <= 0), and never reads more than max+1 bytes even if
// the file grows while it reads. A file that cannot be opened gives the
// *fs.PathError from the system (errors.Is(err, fs.ErrNotExist) works).
func Read(path string, max int64) ([]byte, error) {
	return read(path, max, false)
}

// ReadPrivate is Read for secrets (cookies, TLS keys): like ssh with a
// private key, it also refuses a file whose mode gives group or others any
// access, so a secret that anyone on the machine could read is noticed
// before it is used.
func ReadPrivate(path string, max int64) ([]byte, error) {
	return read(path, max, true)
}

func read(path string, max int64, private bool) ([]byte, error) {
	if max <= 0 {
		max = DefaultMax
	}
	// Look before opening: opening some devices has side effects (a tape
	// rewinds, a watchdog arms), so a path that is plainly not a regular file
	// is refused without an open.
	var st unix.Stat_t
	if err := ignoringEINTR(func() error { return unix.Stat(path, &st) }); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if err := check(path, &st, max, private, -1); err != nil {
		return nil, err
	}
	// O_NONBLOCK: if the path was swapped for a FIFO since the stat, the open
	// still returns at once instead of waiting for a writer (a SIGHUP must
	// never wedge the daemon). O_NOCTTY: a terminal never becomes ours.
	var fd int
	err := ignoringEINTR(func() error {
		var err error
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	// What counts is the descriptor we read from, not what the name pointed
	// at a moment ago.
	if err := ignoringEINTR(func() error { return unix.Fstat(fd, &st) }); err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := check(path, &st, max, private, fd); err != nil {
		return nil, err
	}
	// The size is only a hint for the first buffer (a /proc file says 0, and
	// any file may grow after the fstat): the cap is enforced on the bytes
	// actually read, and the buffer never grows past max+1.
	buf := make([]byte, min(st.Size, max)+1)
	n := 0
	for {
		if n == len(buf) {
			if int64(n) > max {
				return nil, &Error{Path: path, Detail: fmt.Sprintf("grew past the %s cap while it was read", Size(max)), Kind: ErrTooLarge}
			}
			buf = append(buf, make([]byte, min(int64(n), max+1-int64(n)))...)
		}
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
}

// check refuses a file that is not regular, is over max, or (private) gives
// group or others access. With fd (the open file; -1 before the open), a
// POSIX access ACL decides what the group bits mean (privateACL).
func check(path string, st *unix.Stat_t, max int64, private bool, fd int) error {
	if t := uint32(st.Mode) & unix.S_IFMT; t != unix.S_IFREG {
		return &Error{Path: path, Detail: "is " + typeName(t) + ", not a regular file", Kind: ErrNotRegular}
	}
	if st.Size > max {
		return &Error{Path: path, Detail: fmt.Sprintf("is %d bytes, over the %s cap", st.Size, Size(max)), Kind: ErrTooLarge}
	}
	perm := st.Mode & 0o777
	if !private || perm&0o077 == 0 {
		return nil
	}
	if perm&0o007 == 0 {
		// Only group bits: with an access ACL they are its mask, not the
		// group's access. Decided on the open file.
		if fd < 0 {
			return nil
		}
		if ok, hasACL := privateACL(fd); hasACL {
			if ok {
				return nil
			}
			return &Error{Path: path, Detail: fmt.Sprintf("is mode %04o with an access ACL that lets other users or groups read it; it must be readable by its owner (and the user distgate runs as) only", perm), Kind: ErrNotPrivate}
		}
	}
	return &Error{Path: path, Detail: fmt.Sprintf("is mode %04o; it must be readable by its owner only (chmod 600)", perm), Kind: ErrNotPrivate}
}

// POSIX ACL entry tags, as Linux stores them in system.posix_acl_access.
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

// privateACL reads the open file's access ACL. It reports hasACL false when
// there is none; else ok when nobody but the owner and the user distgate
// runs as may read the file. That is how systemd hands a service the file
// of LoadCredential=: mode 0400 owned by root, plus an ACL entry that lets
// the service's (possibly dynamic) user read it, which makes the mode show
// the ACL's mask as group bits (0440).
func privateACL(fd int) (ok, hasACL bool) {
	buf := make([]byte, 4+8*64) // version, then 64 entries at most
	n, err := unix.Fgetxattr(fd, "system.posix_acl_access", buf)
	if err != nil || n < 4 || (n-4)%8 != 0 || binary.LittleEndian.Uint32(buf) != 2 {
		// No ACL (ENODATA, ENOTSUP), or one larger or stranger than any a
		// secret needs: the mode alone decides, which refuses.
		return false, err == nil
	}
	type entry struct {
		tag, perm uint16
		id        uint32
	}
	entries := make([]entry, 0, (n-4)/8)
	mask := uint16(7)
	for b := buf[4:n]; len(b) > 0; b = b[8:] {
		e := entry{binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]), binary.LittleEndian.Uint32(b[4:])}
		if e.tag == aclMask {
			mask = e.perm
		}
		entries = append(entries, e)
	}
	me := uint32(unix.Geteuid())
	for _, e := range entries {
		switch e.tag {
		case aclUser:
			if e.id != me && e.perm&mask != 0 {
				return false, true
			}
		case aclGroupObj, aclGroup:
			if e.perm&mask != 0 {
				return false, true
			}
		case aclOther:
			if e.perm != 0 {
				return false, true
			}
		case aclUserObj, aclMask:
		default:
			return false, true
		}
	}
	return true, true
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("of file type %#o", t)
}

// Size prints a byte count the way the caps are spoken of: "1 MiB",
// "64 KiB", else "1000 bytes".
func Size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// ignoringEINTR retries f while it is interrupted by a signal (the Go
// runtime sends SIGURG for preemption).
func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}
