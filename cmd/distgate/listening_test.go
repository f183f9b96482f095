package main

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// The listening line shows the address as configured: Go reports a
// wildcard IPv4 listener as "[::]:PORT", which reads as IPv6 only.
func TestListeningAsConfigured(t *testing.T) {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := "0.0.0.0:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	_ = ln.Close()
	environ := []string{"DISTGATE_LISTEN=" + listen}
	out, stop := goRun(t, "", environ)

	var got string
	for deadline := time.Now().Add(10 * time.Second); got == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no listening line:\n%s", out.String())
		}
		got = logged(out.String(), "listening")
	}
	if got != listen {
		t.Errorf("listening on %q, want %q as configured", got, listen)
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
}
