//go:build !linux

package admin

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
)

// maxSocketPath is the smallest sun_path among the BSDs and macOS, less
// its NUL.
const maxSocketPath = 103

// listen binds and listens at once (net.ListenUnix), then sets the mode:
// the portable way, with a short window in which the socket has the mode
// the umask gives. distgate's supported platform is Linux.
func listen(path string) (*Server, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("chmod 0600: %w", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || fi.Mode().Type() != fs.ModeSocket {
		_ = ln.Close()
		return nil, fmt.Errorf("the path stopped being a socket while distgate created it")
	}
	return &Server{path: path, ln: ln, dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// checkPeer relies on the file mode alone off Linux.
func checkPeer(*net.UnixConn) error { return nil }
