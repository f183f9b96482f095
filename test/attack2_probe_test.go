package test

import (
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A hostile epmd's reply reaches the terminal escaped: `probe`'s text
// output carries no control byte from the network, as -json already does.
func TestProbeEscapesControlBytes(t *testing.T) {
	t.Parallel()
	const evil = "\x1b[2J\x1b]0;pwned\x07EVIL\x9b1m\xff"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				req := make([]byte, 3)
				if _, err := io.ReadFull(c, req); err != nil {
					return
				}
				// A NAMES reply: epmd's port, then one line per node.
				reply := binary.BigEndian.AppendUint32(nil, 4369)
				reply = append(reply, "name "+evil+" at port 1\n"...)
				_, _ = c.Write(reply)
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	out, code := probeRun(t, "-epmd-port", strconv.Itoa(port), "-timeout", "2s", "127.0.0.1")
	if code != 1 {
		t.Errorf("exit %d, want 1 (epmd answering is exposed)", code)
	}
	if i := strings.IndexFunc(out, func(r rune) bool { return r < 0x20 && r != '\n' || r == 0x7f || r >= 0x80 && r < 0xa0 || r == 0xfffd }); i >= 0 {
		t.Errorf("the text output carries a control byte at %d: %q", i, out)
	}
	if !strings.Contains(out, `\x1b[2J\x1b]0;pwned\x07EVIL\x9b1m\xff`) {
		t.Errorf("the node name is not shown escaped:\n%s", out)
	}
	// -json keeps the bytes, escaped by JSON.
	js, _ := probeRun(t, "-json", "-epmd-port", strconv.Itoa(port), "-timeout", "2s", "127.0.0.1")
	if strings.ContainsAny(js, "\x1b\x07") {
		t.Errorf("-json carries a raw control byte: %q", js)
	}
}
