package admin

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// listenBacklog is the connections the kernel queues while all
// maxConcurrent handlers are busy.
const listenBacklog = 128

// maxSocketPath is what fits in sun_path with its terminating NUL.
const maxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

// listen binds a socket at path, sets the file's mode to 0600, and only
// then listens (see Listen for why this order leaves no window).
func listen(path string) (*Server, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = unix.Close(fd)
		}
	}()
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, errors.New("bind: something created the path just now (another distgate starting?)")
		}
		return nil, fmt.Errorf("bind: %w", err)
	}
	dev, ino, err := restrict(path)
	if err != nil {
		_ = os.Remove(path)
		return nil, err
	}
	if err := unix.Listen(fd, listenBacklog); err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("listen: %w", err)
	}
	f := os.NewFile(uintptr(fd), path)
	ok = true // f owns fd now
	ln, err := net.FileListener(f)
	_ = f.Close() // FileListener works on a duplicate
	if err != nil {
		_ = os.Remove(path)
		return nil, err
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // Close removes the file, and only if it is still ours
	return &Server{path: path, ln: ul, dev: dev, ino: ino}, nil
}

// restrict sets the socket file at path to mode 0600. It works on the file
// it opened without following symlinks, so a path swapped for a symlink
// between bind and chmod cannot make it change the mode of another file;
// and it returns the file's identity for Close.
func restrict(path string) (dev, ino uint64, err error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("open the socket file: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, 0, fmt.Errorf("stat the socket file: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return 0, 0, errors.New("the path stopped being a socket while distgate created it")
	}
	// fchmodat2 (Linux 6.6+) changes the file an O_PATH descriptor holds;
	// before it, the same is done through the descriptor's /proc link.
	if err := unix.Fchmodat(fd, "", 0o600, unix.AT_EMPTY_PATH); err != nil {
		if err := unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), 0o600); err != nil {
			return 0, 0, fmt.Errorf("chmod 0600: %w", err)
		}
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, 0, fmt.Errorf("stat the socket file: %w", err)
	}
	if m := st.Mode & 0o7777; m != 0o600 {
		return 0, 0, fmt.Errorf("the socket file is mode %04o after chmod 0600", m)
	}
	return uint64(st.Dev), uint64(st.Ino), nil
}

// checkPeer admits a peer running as root or as the daemon's own user. The
// file mode already keeps others out; this holds even if someone loosens
// it.
func checkPeer(c *net.UnixConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	me := uint32(os.Geteuid())
	if cred.Uid == 0 || cred.Uid == me {
		return nil
	}
	if me == 0 {
		return fmt.Errorf("uid %d may not use the admin socket (only root may)", cred.Uid)
	}
	return fmt.Errorf("uid %d may not use the admin socket (only root and uid %d, which distgate runs as)", cred.Uid, me)
}
