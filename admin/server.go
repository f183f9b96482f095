package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Server limits. The socket is local and mode 0600, so these bound
// mistakes and stuck clients rather than attacks.
const (
	// maxRequest bounds a request: the largest real one is under 200 bytes.
	maxRequest = 4 << 10
	// requestTimeout is how long a client has to send its request.
	requestTimeout = 2 * time.Second
	// responseTimeout is how long the server tries to write its answer: a
	// status with full ban tables is several megabytes.
	responseTimeout = 10 * time.Second
	// maxConcurrent is how many requests are served at once; further
	// clients wait in the listen backlog.
	maxConcurrent = 8
	// staleDialTimeout bounds the look at an existing socket in Listen.
	staleDialTimeout = time.Second
)

// Server is a listening admin socket. Create it with Listen, run it with
// Serve; Close (or the end of Serve) removes the socket file.
type Server struct {
	// OnError, if set, is told of what goes wrong with a request (a peer
	// of another uid, a malformed request, a failed write) and of accept
	// errors. It is called from the server's goroutines.
	OnError func(error)

	path      string
	ln        *net.UnixListener
	dev, ino  uint64 // the socket file Listen created, to remove only that
	closeOnce sync.Once
	closeErr  error
}

// Listen creates the admin socket at path, mode 0600. A socket already at
// path that nobody listens on (left by a daemon that was killed) is
// replaced; if a daemon listens there, or path is anything but a socket,
// Listen fails and says so. The directory must not be writable by others
// unless it is sticky (as /tmp is): otherwise anyone could swap the socket
// for their own.
//
// The mode is set without a window: the socket is bound, then its file is
// set to 0600, and only then does it listen. Until listen(2) every
// connect(2) is refused whatever the file's mode, so there is no moment at
// which a socket with the umask's wider mode accepts anyone. The umask is
// left alone (it is process-wide and other goroutines create files).
func Listen(path string) (*Server, error) {
	if path == "" {
		return nil, errors.New("admin socket: empty path")
	}
	if n := len(path); n > maxSocketPath {
		return nil, fmt.Errorf("admin socket %q: the path is %d bytes; a Unix socket path may have at most %d", path, n, maxSocketPath)
	}
	if err := checkDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("admin socket %q: %w", path, err)
	}
	if err := clearStale(path); err != nil {
		return nil, err
	}
	s, err := listen(path)
	if err != nil {
		return nil, fmt.Errorf("admin socket %q: %w", path, err)
	}
	return s, nil
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// checkDir refuses a directory in which others may replace entries.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%q is not a directory", dir)
	}
	if m := fi.Mode(); m.Perm()&0o002 != 0 && m&fs.ModeSticky == 0 {
		return fmt.Errorf("its directory %q is writable by anyone (mode %04o) and not sticky, so another user could replace the socket: use a directory only distgate can write, such as /run/distgate", dir, m.Perm())
	}
	return nil
}

// clearStale makes path free: nothing there, or a socket nobody listens on
// (removed). Anything else is an error that names what is there.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin socket %q: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("admin socket %q exists and is %s, not a socket: remove it or set [admin] socket to another path", path, fileKind(fi.Mode()))
	}
	c, err := net.DialTimeout("unix", path, staleDialTimeout)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("admin socket %q: another distgate is listening there (stop it, or give this one another [admin] socket)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("admin socket %q exists and cannot be checked for a listener: %w", path, err)
	}
	// Refused: the socket of a daemon that is gone. Replace it.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("admin socket %q: remove the stale socket: %w", path, err)
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "a regular file"
	case fs.ModeDir:
		return "a directory"
	case fs.ModeSymlink:
		return "a symbolic link"
	case fs.ModeNamedPipe:
		return "a FIFO"
	case fs.ModeDevice:
		return "a block device"
	case fs.ModeDevice | fs.ModeCharDevice:
		return "a character device"
	case fs.ModeSocket:
		return "a socket"
	}
	return "a file of type " + m.Type().String()
}

// Serve answers requests with b until ctx is done, then stops accepting,
// waits for the requests in progress (each is bounded by a deadline),
// closes the listener and removes the socket file. It returns nil when it
// stopped because ctx ended or Close was called. Call it once.
func (s *Server) Serve(ctx context.Context, b Backend) error {
	stop := context.AfterFunc(ctx, func() { _ = s.ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		_ = s.Close()
	}()
	sem := make(chan struct{}, maxConcurrent)
	backoff := 5 * time.Millisecond
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := s.ln.AcceptUnix()
		if err != nil {
			<-sem
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors or the like: wait and try again rather
			// than spin (net/http's backoff).
			s.report(fmt.Errorf("admin socket: accept: %w", err))
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		wg.Go(func() {
			defer func() { <-sem }()
			s.handle(c, b)
		})
	}
}

// Close stops the listener and removes the socket file, if the file is
// still the one Listen created (a later daemon may have replaced it). Safe
// to call more than once and while Serve runs.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		err := s.ln.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		if fi, lerr := os.Lstat(s.path); lerr == nil && sameFile(fi, s.dev, s.ino) {
			if rerr := os.Remove(s.path); rerr != nil && err == nil {
				err = rerr
			}
		}
		s.closeErr = err
	})
	return s.closeErr
}

func sameFile(fi fs.FileInfo, dev, ino uint64) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode().Type() == fs.ModeSocket && uint64(st.Dev) == dev && uint64(st.Ino) == ino
}

func (s *Server) report(err error) {
	if s.OnError != nil {
		s.OnError(err)
	}
}

// handle answers one connection: one request, one response.
func (s *Server) handle(c *net.UnixConn, b Backend) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(requestTimeout))
	resp := s.respond(c, b)
	if resp == nil {
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(responseTimeout))
	if err := json.NewEncoder(c).Encode(resp); err != nil {
		s.report(fmt.Errorf("admin socket: write response: %w", err))
	}
}

// respond reads the request and computes the response; nil means say
// nothing (the peer connected and left, as Listen's liveness check does).
func (s *Server) respond(c *net.UnixConn, b Backend) (resp *response) {
	defer func() {
		// The backend is the daemon: a bug in it answers this request with
		// an error instead of taking the daemon down.
		if r := recover(); r != nil {
			s.report(fmt.Errorf("admin socket: request panicked: %v", r))
			resp = &response{Error: "internal error (see the daemon's log)"}
		}
	}()
	if err := checkPeer(c); err != nil {
		s.report(fmt.Errorf("admin socket: %w", err))
		return &response{Error: err.Error()}
	}
	var req request
	dec := json.NewDecoder(io.LimitReader(c, maxRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			err = fmt.Errorf("incomplete, or over %d bytes", maxRequest)
		case errors.Is(err, os.ErrDeadlineExceeded):
			err = fmt.Errorf("no complete request within %v", requestTimeout)
		}
		err = fmt.Errorf("bad request: %w", err)
		s.report(fmt.Errorf("admin socket: %w", err))
		return &response{Error: err.Error()}
	}
	switch req.Op {
	case "status":
		st := b.Status()
		normalise(&st)
		return &response{Status: &st}
	case "ban", "unban":
		addr, err := ParseAddress(req.Address)
		if err != nil {
			return &response{Error: err.Error()}
		}
		var results []BanResult
		if req.Op == "ban" {
			var d time.Duration
			if req.For != "" {
				if d, err = time.ParseDuration(req.For); err != nil || d < 0 {
					return &response{Error: fmt.Sprintf("ban duration %q is not a positive duration", req.For)}
				}
			}
			results, err = b.Ban(req.Gate, addr, d)
		} else {
			results, err = b.Unban(req.Gate, addr)
		}
		if err != nil {
			return &response{Error: err.Error()}
		}
		if len(results) == 0 {
			return &response{Error: "no gate answered"}
		}
		return &response{Results: results}
	}
	return &response{Error: fmt.Sprintf("unknown request %q (this distgate knows status, ban and unban)", req.Op)}
}

// normalise makes the lists that are empty say [] rather than null, so
// that consumers of status -json can rely on the shape.
func normalise(st *Status) {
	if st.Gates == nil {
		st.Gates = []GateStatus{}
	}
	for i := range st.Gates {
		g := &st.Gates[i]
		if g.Connections == nil {
			g.Connections = []Conn{}
		}
		if g.Bans == nil {
			g.Bans = []Ban{}
		}
	}
}

// ParseAddress parses the ADDRESS of ban and unban: one IPv4 or IPv6
// address (an IPv4-mapped IPv6 address is taken as IPv4; a zone is
// dropped). A ban covers the address's source key: the address itself for
// IPv4, its /64 for IPv6.
func ParseAddress(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, errors.New("no address given")
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		if strings.Contains(s, "/") {
			return netip.Addr{}, fmt.Errorf("%q is a network, not an address: give one address (an IPv6 ban covers its /64)", s)
		}
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	a = a.Unmap().WithZone("")
	if a.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("%q is not a source address", s)
	}
	return a, nil
}
