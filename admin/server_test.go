package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/distgate/distgate/policy"
)

// childDialEnv makes the test binary, re-executed as another user, dial the
// socket it names instead of running tests (TestOtherUIDCannotConnect).
const childDialEnv = "DISTGATE_ADMIN_TEST_DIAL"

func TestMain(m *testing.M) {
	if path := os.Getenv(childDialEnv); path != "" {
		os.Exit(childDial(path))
	}
	goleak.VerifyTestMain(m)
}

// childDial reports on stdout whether it could connect, and what the
// server said if it could. Exit 3: EACCES; 4: another dial error.
func childDial(path string) int {
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Printf("dial: %v\n", err)
		if errors.Is(err, syscall.EACCES) {
			return 3
		}
		return 4
	}
	_ = c.Close()
	_, err = Client{Socket: path, Timeout: 5 * time.Second}.Status(context.Background())
	fmt.Printf("connected; status: %v\n", err)
	return 0
}

// fakeBackend is the daemon's side, built on the real policy.Bans tables.
type fakeBackend struct {
	mu     sync.Mutex
	gates  []string
	bans   map[string]*policy.Bans
	status Status
	panics bool
}

var now0 = time.Date(2026, 11, 27, 23, 30, 0, 0, time.UTC)

func newFakeBackend() *fakeBackend {
	b := &fakeBackend{gates: []string{"myapp", "other"}, bans: map[string]*policy.Bans{}}
	for _, g := range b.gates {
		b.bans[g] = policy.NewBans(policy.BanRules{
			After: 5, Window: 10 * time.Minute, Duration: 15 * time.Minute, MaxDuration: 24 * time.Hour,
			Never: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		}, 0)
	}
	b.status = sampleStatus()
	return b
}

func sampleStatus() Status {
	return Status{
		Version: "v1.2.3", PID: 4242, Config: "/etc/distgate/distgate.toml",
		Started: now0.Add(-3 * time.Hour), Time: now0,
		Gates: []GateStatus{{
			Name: "myapp", Listen: "0.0.0.0:9100", Upstream: "127.0.0.1:9101", Forward: "user", TLS: "terminate",
			Connections: []Conn{
				{Remote: netip.MustParseAddrPort("203.0.113.7:41160"), Node: "rem-1234-myapp@host", Outcome: "ok", Since: now0.Add(-192 * time.Second), BytesIn: 1234, BytesOut: 56789, Path: "tls", Identity: "ops", SNI: ""},
				{Remote: netip.MustParseAddrPort("[2001:db8::7]:5000"), Node: "rpc-9-myapp@host\x1b[31m", Outcome: "", Since: now0.Add(-time.Second), Path: ""},
			},
			Bans:           []Ban{{Source: netip.MustParsePrefix("198.51.100.9/32"), Until: now0.Add(14 * time.Minute), Failures: 5, Level: 1}},
			LimiterSources: 12,
			BanTable:       BanTable{Active: 1, Failures: 3, Records: 4, Max: 65536},
		}, {
			Name: "other", Listen: "127.0.0.1:9200", Upstream: "127.0.0.1:9201", Forward: "kernel", TLS: "off",
		}},
	}
}

func (b *fakeBackend) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.panics {
		panic("backend bug")
	}
	return b.status
}

func (b *fakeBackend) each(gate string, f func(string, *policy.Bans) BanResult) []BanResult {
	if gate != "" {
		t, ok := b.bans[gate]
		if !ok {
			return []BanResult{{Gate: gate, Result: ResultUnknownGate}}
		}
		return []BanResult{f(gate, t)}
	}
	var out []BanResult
	for _, g := range b.gates {
		out = append(out, f(g, b.bans[g]))
	}
	return out
}

func (b *fakeBackend) Ban(gate string, addr netip.Addr, d time.Duration) ([]BanResult, error) {
	return b.each(gate, func(g string, t *policy.Bans) BanResult {
		ban, err := t.Ban(addr, d, time.Now())
		if errors.Is(err, policy.ErrNeverBan) {
			return BanResult{Gate: g, Result: ResultNever}
		}
		if err != nil {
			return BanResult{Gate: g, Result: ResultRefused, Message: err.Error()}
		}
		pb := BanOf(ban)
		return BanResult{Gate: g, Result: ResultBanned, Ban: &pb}
	}), nil
}

func (b *fakeBackend) Unban(gate string, addr netip.Addr) ([]BanResult, error) {
	return b.each(gate, func(g string, t *policy.Bans) BanResult {
		ban, ok := t.Unban(addr, time.Now())
		if !ok {
			return BanResult{Gate: g, Result: ResultNotBanned}
		}
		pb := BanOf(ban)
		return BanResult{Gate: g, Result: ResultUnbanned, Ban: &pb}
	}), nil
}

// serve starts a server on a socket in a fresh directory; it stops at the
// end of the test, and the test checks the socket file is gone then.
func serve(t *testing.T, b Backend) (*Server, string, *errorLog) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	el := &errorLog{}
	s.OnError = el.add
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, b) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after cancel")
		}
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket file still there after Serve: %v", err)
		}
	})
	return s, path, el
}

type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) add(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *errorLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

func TestListenMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	// Whatever the umask: 0 would give a bound socket 0777.
	old := syscall.Umask(0)
	s, err := Listen(path)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Close left the socket file: %v", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	// A daemon that was killed leaves its socket file behind.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("no stale socket to test with: %v", err)
	}
	s, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after replacing: %v, %v", fi, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, newFakeBackend()) }()
	if _, err := (Client{Socket: path}).Status(context.Background()); err != nil {
		t.Fatalf("status on the new socket: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestListenRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "regular")
	if err := os.WriteFile(reg, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "dir")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(reg, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{
		reg: "a regular file", sub: "a directory", link: "a symbolic link", fifo: "a FIFO",
	} {
		s, err := Listen(path)
		if err == nil {
			s.Close()
			t.Errorf("Listen(%s) succeeded over %s", path, kind)
			continue
		}
		want := fmt.Sprintf("admin socket %q exists and is %s, not a socket", path, kind)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q, want it to say %q", err, want)
		}
	}
	if b, err := os.ReadFile(reg); err != nil || string(b) != "keep me" {
		t.Fatalf("the regular file was touched: %q, %v", b, err)
	}
}

func TestListenRefusesLiveSocket(t *testing.T) {
	_, path, el := serve(t, newFakeBackend())
	s2, err := Listen(path)
	if err == nil {
		s2.Close()
		t.Fatal("a second Listen on a live socket succeeded")
	}
	if !strings.Contains(err.Error(), "another distgate is listening there") || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q", err)
	}
	// The first server still answers, and the look did not upset it.
	if _, err := (Client{Socket: path}).Status(context.Background()); err != nil {
		t.Fatalf("first server after the second Listen: %v", err)
	}
	if errs := el.all(); len(errs) > 0 {
		t.Fatalf("the liveness check was reported as an error: %v", errs)
	}
}

func TestListenRefusesWorldWritableDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "admin.sock")
	if s, err := Listen(path); err == nil {
		s.Close()
		t.Fatal("Listen in a world-writable, non-sticky directory succeeded")
	} else if !strings.Contains(err.Error(), "writable by anyone (mode 0777) and not sticky") {
		t.Fatalf("error %q", err)
	}
	// Sticky, like /tmp: others cannot remove or rename our socket.
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	s, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen in a sticky directory: %v", err)
	}
	s.Close()
}

func TestListenPathErrors(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("x", 120))
	if _, err := Listen(long); err == nil || !strings.Contains(err.Error(), "a Unix socket path may have at most 107") {
		t.Errorf("long path: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "no", "admin.sock")
	if _, err := Listen(missing); err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("missing directory: %v", err)
	}
	if _, err := Listen(""); err == nil {
		t.Error("empty path accepted")
	}
}

// TestCloseLeavesAReplacedFile: Close removes the socket only if the path
// still holds the socket Listen made.
func TestCloseLeavesAReplacedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("someone else's"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("Close removed a file that was not its socket: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestStatusRoundTrip(t *testing.T) {
	_, path, _ := serve(t, newFakeBackend())
	got, err := (Client{Socket: path}).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := sampleStatus()
	want.Gates[1].Connections, want.Gates[1].Bans = []Conn{}, []Ban{}
	wj, _ := json.Marshal(want)
	gj, _ := json.Marshal(got)
	if !bytes.Equal(wj, gj) {
		t.Fatalf("status:\n got %s\nwant %s", gj, wj)
	}
}

// raw sends b on a fresh connection, half-closes, and returns what the
// server answered.
func raw(t *testing.T, path string, b []byte) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.UnixConn).CloseWrite()
	out, err := io.ReadAll(c)
	// A server that answers before reading all of an oversized request
	// closes with unread data, and Linux then ends the stream with
	// ECONNRESET instead of EOF, after the answer.
	if err != nil && !(errors.Is(err, syscall.ECONNRESET) && len(out) > 0) {
		t.Fatal(err)
	}
	return string(out)
}

func TestBadRequests(t *testing.T) {
	b := newFakeBackend()
	_, path, el := serve(t, b)
	for _, tc := range []struct{ name, req, want string }{
		{"not json", "hello\n", `bad request: invalid character 'h'`},
		{"unknown op", `{"op":"shutdown"}`, `unknown request \"shutdown\" (this distgate knows status, ban and unban)`},
		{"unknown field", `{"op":"status","verbose":true}`, `unknown field \"verbose\"`},
		{"incomplete", `{"op":"sta`, `bad request: incomplete, or over 4096 bytes`},
		{"oversized", `{"op":"status","gate":"` + strings.Repeat("a", 10000) + `"}`, `bad request: incomplete, or over 4096 bytes`},
		{"bad address", `{"op":"ban","address":"1.2.3.300"}`, `\"1.2.3.300\" is not an IP address`},
		{"no address", `{"op":"unban"}`, `no address given`},
		{"network", `{"op":"ban","address":"10.0.0.0/8"}`, `is a network, not an address`},
		{"bad duration", `{"op":"ban","address":"10.0.0.1","for":"soon"}`, `ban duration \"soon\" is not a positive duration`},
		{"negative duration", `{"op":"ban","address":"10.0.0.1","for":"-1h"}`, `is not a positive duration`},
	} {
		got := raw(t, path, []byte(tc.req))
		if !strings.Contains(got, tc.want) || !strings.HasPrefix(got, `{"error":`) {
			t.Errorf("%s: answer %q, want an error containing %q", tc.name, got, tc.want)
		}
	}
	if n := len(el.all()); n < 4 {
		t.Errorf("%d malformed requests reported, want at least 4", n)
	}

	// A connection that sends nothing and leaves gets nothing and is not an
	// error.
	before := len(el.all())
	if got := raw(t, path, nil); got != "" {
		t.Errorf("empty request answered %q", got)
	}
	// A backend that panics answers an error, and the server goes on.
	b.mu.Lock()
	b.panics = true
	b.mu.Unlock()
	if got := raw(t, path, []byte(`{"op":"status"}`)); !strings.Contains(got, "internal error") {
		t.Errorf("panicking backend: %q", got)
	}
	b.mu.Lock()
	b.panics = false
	b.mu.Unlock()
	if _, err := (Client{Socket: path}).Status(context.Background()); err != nil {
		t.Fatalf("after a panic: %v", err)
	}
	if errs := el.all()[before:]; len(errs) != 1 || !strings.Contains(errs[0].Error(), "panicked: backend bug") {
		t.Errorf("reported %v, want the panic only", errs)
	}
}

// TestSilentClientCutOff: a client that connects and says nothing is told
// so and cut off after the request deadline rather than holding a slot.
func TestSilentClientCutOff(t *testing.T) {
	_, path, _ := serve(t, newFakeBackend())
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(requestTimeout + 5*time.Second))
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"error":"bad request: no complete request within 2s"}` + "\n"; string(out) != want {
		t.Fatalf("answer %q, want %q", out, want)
	}
	if d := time.Since(start); d < requestTimeout-100*time.Millisecond || d > requestTimeout+3*time.Second {
		t.Fatalf("cut off after %v, want about %v", d, requestTimeout)
	}
}

// TestConcurrentRequests: more clients than the server serves at once, and
// than the listen backlog holds, all get their answer.
func TestConcurrentRequests(t *testing.T) {
	_, path, _ := serve(t, newFakeBackend())
	var wg sync.WaitGroup
	const clients = 300
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i + 1)})
			if _, err := (Client{Socket: path}).Ban(context.Background(), "myapp", a, time.Minute); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestOtherUIDCannotConnect: a process of another user gets EACCES from
// connect(2) on the 0600 socket; and if the mode were loosened, the server
// would still refuse it by its peer credentials. Needs root (to run the
// child as nobody).
func TestOtherUIDCannotConnect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot run a process as uid 65534 to try the socket")
	}
	dir := t.TempDir()
	// The child must reach the socket through the directories and execute
	// a copy of this binary: open them up, so that only the socket's own
	// mode stands in its way.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "admin.test")
	copyFile(t, self, bin)

	path := filepath.Join(dir, "admin.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	el := &errorLog{}
	s.OnError = el.add
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, newFakeBackend()) }()
	defer func() {
		cancel()
		<-done
	}()

	child := func() (int, string) {
		cmd := exec.Command(bin)
		cmd.Env = []string{childDialEnv + "=" + path}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("run the child: %v (%s)", err, out)
		}
		return cmd.ProcessState.ExitCode(), string(out)
	}
	code, out := child()
	if code != 3 || !strings.Contains(out, "permission denied") {
		t.Fatalf("uid 65534 on the 0600 socket: exit %d, %q; want EACCES (exit 3)", code, out)
	}
	t.Logf("uid 65534, socket 0600: %s", strings.TrimSpace(out))

	// The control: with the mode loosened, the same child gets through
	// connect(2), which shows the refusal above came from the mode; the
	// server then refuses it by uid.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	code, out = child()
	if code != 0 || !strings.Contains(out, "uid 65534 may not use the admin socket") {
		t.Fatalf("uid 65534 on a 0666 socket: exit %d, %q; want a connection refused by peer credentials", code, out)
	}
	t.Logf("uid 65534, socket 0666: %s", strings.TrimSpace(out))
	if errs := el.all(); len(errs) == 0 || !strings.Contains(errs[0].Error(), "uid 65534") {
		t.Errorf("the refused peer was not reported: %v", errs)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
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
