package early

import (
	"syscall"
	"testing"
	"time"
)

func TestIsRun(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{nil, true},
		{[]string{"run"}, true},
		{[]string{"run", "-config", "x"}, true},
		{[]string{"-config", "x"}, true},
		{[]string{"--config", "x"}, true},
		{[]string{"-config=x"}, true},
		{[]string{"--config=x"}, true},
		{[]string{"check"}, false},
		{[]string{"probe", "h"}, false},
		{[]string{"-h"}, false},
		{[]string{"config"}, false},
		{[]string{"---config"}, false},
		{[]string{"-configx"}, false},
		{[]string{"-test.v"}, false},
	} {
		if got := IsRun(tt.args); got != tt.want {
			t.Errorf("IsRun(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
	if Run != nil {
		t.Error("a test binary's arguments were taken for run")
	}
}

// A SIGHUP is received on Hup, SIGHUPs before a read fold into one, and a
// SIGTERM that came before Context was called still ends the context.
func TestCatch(t *testing.T) {
	s := Catch()
	defer s.Stop()
	for range 3 {
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-s.Hup():
	case <-time.After(5 * time.Second):
		t.Fatal("no SIGHUP")
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); len(s.term) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) { // polling the channel's buffer: nothing to wait on
			t.Fatal("no SIGTERM")
		}
	}
	ctx, cancel := s.Context()
	defer cancel()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM did not end the context")
	}
}
