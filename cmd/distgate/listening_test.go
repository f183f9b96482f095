package main

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/testenv"
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
	l, err := config.Load("", environ)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := testenv.NewLines()
	done := make(chan error, 1)
	go func() { done <- run(ctx, l, "", environ, make(chan os.Signal), out) }()

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
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
