package sdnotify

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// Send delivers the state as one datagram; no socket is no error, and a
// relative path is refused.
func TestSend(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := Send(sock, "READY=1"); err != nil {
		t.Fatal(err)
	}
	_ = ln.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 64)
	n, err := ln.Read(b)
	if err != nil || string(b[:n]) != "READY=1" {
		t.Errorf("got %q, %v; want READY=1", b[:n], err)
	}
	if err := Send("relative/path", "READY=1"); err == nil {
		t.Error("a relative NOTIFY_SOCKET was accepted")
	}
	if err := Send("", "READY=1"); err != nil {
		t.Errorf("no NOTIFY_SOCKET: %v", err)
	}
}
