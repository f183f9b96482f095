package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/testenv"
)

// goRun runs the configuration (the file at path, or the embedded default,
// under environ) as `distgate run` does, until stop, which returns run's
// error; out collects the log.
func goRun(t *testing.T, path string, environ []string) (out *testenv.Lines, stop func() error) {
	t.Helper()
	l, err := config.Load(path, environ)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out = testenv.NewLines()
	done := make(chan error, 1)
	go func() { done <- run(ctx, l, path, environ, make(chan os.Signal), out) }()
	stop = sync.OnceValue(func() error { cancel(); return <-done })
	t.Cleanup(func() { _ = stop() })
	return out, stop
}

// logged returns the listen field of the first log line with message msg.
func logged(out, msg string) string {
	for _, line := range strings.Split(out, "\n") {
		var e struct{ Message, Listen string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Message == msg {
			return e.Listen
		}
	}
	return ""
}

// DISTGATE_PPROF is read from the environment run is given, and the pprof
// listener ends with run.
func TestRunPprof(t *testing.T) {
	environ := []string{"DISTGATE_LISTEN=127.0.0.1:0", "DISTGATE_PPROF=127.0.0.1:0"}
	out, stop := goRun(t, "", environ)

	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no pprof listening line:\n%s", out.String())
		}
		addr = logged(out.String(), "pprof listening")
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("pprof: %s", resp.Status)
	}

	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		_ = c.Close()
		t.Errorf("pprof still listens on %s after run returned", addr)
	}
}

// Other commands leave DISTGATE_PPROF alone: check prints the config and
// starts no listener.
func TestCheckIgnoresPprof(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"check"}, []string{"DISTGATE_PPROF=" + addr}, &stdout, &stderr); code != exitOK {
		t.Fatalf("check: exit %d\n%s", code, stderr.String())
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		_ = c.Close()
		t.Errorf("check started something on %s", addr)
	}
}

// probe's usage errors exit 2 and say what is wrong, before anything is sent.
func TestProbeUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "no TARGET given"},
		{[]string{"-timeout", "0s", "127.0.0.1:1"}, "-timeout 0s: must be more than 0"},
		{[]string{"-epmd-port", "70000", "127.0.0.1:1"}, "-epmd-port 70000: not a port"},
		{[]string{"127.0.0.1:1", "-epmd-port", "0", "127.0.0.1"}, `target "127.0.0.1" has no port and -epmd-port is 0`},
		{[]string{"127.0.0.1:65536"}, `port "65536" is not 1–65535`},
		{[]string{"-nosuchflag"}, "flag provided but not defined"},
	} {
		var stdout, stderr bytes.Buffer
		code := realMain(append([]string{"probe"}, tt.args...), nil, &stdout, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), tt.want) || stdout.Len() != 0 {
			t.Errorf("probe %q: exit %d, stderr %q, stdout %q; want 2 and %q", tt.args, code, stderr.String(), stdout.String(), tt.want)
		}
	}
}

// `check` prints the cookie file's path, never the cookie, on stdout or
// stderr, whether the file is accepted or refused.
func TestCheckHidesCookie(t *testing.T) {
	const cookie = "CHECKNEVERPRINTSTHIS"
	dir := t.TempDir()
	cookiePath := filepath.Join(dir, "cookie")
	if err := os.WriteFile(cookiePath, []byte(cookie+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o600, 0o644} {
		if err := os.Chmod(cookiePath, mode); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		code := realMain([]string{"check"}, []string{"DISTGATE_COOKIE_FILE=" + cookiePath}, &stdout, &stderr)
		want := exitOK
		if mode != 0o600 {
			want = exitUsage
		}
		if code != want {
			t.Errorf("mode %04o: exit %d, want %d; stderr:\n%s", mode, code, want, stderr.String())
		}
		if strings.Contains(stdout.String()+stderr.String(), cookie) {
			t.Errorf("mode %04o: check printed the cookie:\n%s\n%s", mode, stdout.String(), stderr.String())
		}
		if mode == 0o600 && !strings.Contains(stdout.String(), `cookie_file = "`+cookiePath+`"`) {
			t.Errorf("check does not print the cookie file's path:\n%s", stdout.String())
		}
	}
}

// probe exits 3 when a host given without a port could not be probed (no
// epmd answered), and says HOST:PORT is the fix; the same host with its
// port given is probed (exit 0 when nothing answers).
func TestProbeNothingProbed(t *testing.T) {
	free := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close() // nothing listens there afterwards: "closed"
		return ln.Addr().(*net.TCPAddr).Port
	}
	noEpmd, noNode := free(), free()
	epmdFlag := []string{"-epmd-port", strconv.Itoa(noEpmd)}

	var stdout, stderr bytes.Buffer
	code := realMain(append([]string{"probe"}, append(epmdFlag, "127.0.0.1")...), nil, &stdout, &stderr)
	if code != 3 || !strings.Contains(stderr.String(), "nothing could be probed on 127.0.0.1") ||
		!strings.Contains(stderr.String(), "HOST:PORT") {
		t.Errorf("exit %d, stderr %q, stdout %q; want 3 and a message naming HOST:PORT", code, stderr.String(), stdout.String())
	}

	stdout.Reset()
	stderr.Reset()
	code = realMain(append([]string{"probe"}, append(epmdFlag, "127.0.0.1", "127.0.0.1:"+strconv.Itoa(noNode))...), nil, &stdout, &stderr)
	if code != exitOK || stderr.Len() != 0 {
		t.Errorf("with a port: exit %d, stderr %q; want 0", code, stderr.String())
	}
}
