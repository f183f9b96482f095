package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// run tells the service manager READY=1 once every gate listens, and
// STOPPING=1 when it shuts down (systemd's Type=notify).
func TestRunNotifiesReady(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	environ := []string{"DISTGATE_LISTEN=127.0.0.1:0", "NOTIFY_SOCKET=" + sock}
	out, stop := goRun(t, "", environ)

	recv := func() string {
		_ = ln.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 256)
		n, err := ln.Read(b)
		if err != nil {
			t.Fatalf("notify socket: %v\n%s", err, out.String())
		}
		return string(b[:n])
	}
	if m := recv(); m != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", m)
	}
	if !strings.Contains(out.String(), `"message":"listening"`) {
		t.Errorf("READY=1 before listening:\n%s", out.String())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if m := recv(); m != "STOPPING=1" {
		t.Errorf("notification %q at shutdown, want STOPPING=1", m)
	}
}
