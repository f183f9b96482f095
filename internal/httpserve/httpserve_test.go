package httpserve

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
	"github.com/rs/zerolog"
)

// Past max connections, the next one is closed at once; a slot given back
// takes a new one again.
func TestCapListener(t *testing.T) {
	logs := testenv.NewLines()
	srv := New(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		zerolog.New(logs), "test server")
	s, err := Serve("127.0.0.1:0", srv, 2, zerolog.New(logs), "test server")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	get := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		b := make([]byte, 512)
		n, err := c.Read(b)
		if err == nil && !strings.HasPrefix(string(b[:n]), "HTTP/1.1 200") {
			t.Errorf("answer %q", b[:n])
		}
		return err
	}
	var held []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = get(c)
		switch {
		case i < 2 && err != nil:
			t.Fatalf("connection %d: %v", i, err)
		case i == 2 && err == nil:
			t.Fatal("the third connection was served past max 2")
		}
		held = append(held, c)
	}
	_ = held[0].Close()
	// The slot comes back when the server sees the close.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		err = get(c)
		_ = c.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot of a closed connection never came back")
		}
		time.Sleep(10 * time.Millisecond) // polling: the server notices the close when it reads
	}
	if !strings.Contains(logs.String(), `"message":"connections over max_conns closed"`) {
		t.Errorf("no line about the connection closed for the cap:\n%s", logs.String())
	}
}

// What net/http logs comes out as JSON lines, at most 10 at once.
func TestHTTPErrorLog(t *testing.T) {
	logs := testenv.NewLines()
	l := ErrorLog(zerolog.New(logs), "metrics server")
	for range 50 {
		l.Printf("http: Accept error: %v; retrying in %v", "accept4: too many open files", 5*time.Millisecond)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 10 {
		t.Errorf("%d lines for 50 errors at once, want 10", len(lines))
	}
	var v struct{ Level, Error, Message string }
	if err := json.Unmarshal([]byte(lines[0]), &v); err != nil {
		t.Fatalf("not JSON: %q", lines[0])
	}
	if v.Level != "warn" || v.Message != "metrics server" || !strings.Contains(v.Error, "too many open files") {
		t.Errorf("line %+v", v)
	}
}
