package testenv

import (
	"io"
	"testing"
)

// A program started on a pseudo-terminal sees a terminal on stdin and
// stdout, reads what is typed, and its output comes back; a hang-up ends it.
func TestStartPTY(t *testing.T) {
	p := StartPTY(t, Cmd{Name: "sh", Args: []string{"/bin/sh", "-c",
		`if [ -t 0 ] && [ -t 1 ]; then echo "a terminal"; fi; read x; echo "read [$x]"; read y`}})
	p.AwaitText("a terminal", WaitTimeout)
	if _, err := io.WriteString(p.Stdin, "typed\n"); err != nil {
		t.Fatal(err)
	}
	p.AwaitText("read [typed]", WaitTimeout)
	_ = p.Stdin.Close() // the hang-up: sh gets SIGHUP, or EOF on the read
	if err := p.WaitExit(WaitTimeout); err != nil {
		t.Fatal(err)
	}
}
