package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/distgate/distgate/wire"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client = dialFrom(t, "127.0.0.1", ln.Addr().String())
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server = s.(*net.TCPConn)
	t.Cleanup(func() { _ = server.Close() })
	return client, server
}

// TestReadFrameExact: readFrame leaves every byte after the message (or,
// for a bad length, after the prefix) in the socket.
func TestReadFrameExact(t *testing.T) {
	t.Parallel()
	tail := []byte("TAIL")
	for _, tc := range []struct {
		name    string
		first   []byte
		want    []byte // the frame returned, nil for an error
		wantErr error
	}{
		{name: "N message", first: hello(t, "a@127.0.0.1"), want: hello(t, "a@127.0.0.1")},
		{name: "scanner", first: wire.ScannerProbe, want: wire.ScannerProbe},
		{name: "length over the cap", first: []byte{0xff, 0xff}, wantErr: wire.ErrTooLong},
		{name: "TLS record", first: []byte{0x16, 0x03}, wantErr: wire.ErrTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, s := tcpPair(t)
			write(t, c, append(bytes.Clone(tc.first), tail...))
			buf := getFrameBuf()
			defer putFrameBuf(buf)
			got, err := readFrame(s, wire.HeaderTCP, buf, time.Now().Add(testWait))
			if !errors.Is(err, tc.wantErr) || !bytes.Equal(got, tc.want) {
				t.Fatalf("readFrame = % x, %v; want % x, %v", got, err, tc.want, tc.wantErr)
			}
			_ = s.SetReadDeadline(time.Now().Add(testWait))
			rest := make([]byte, len(tail))
			if _, err := io.ReadFull(s, rest); err != nil || !bytes.Equal(rest, tail) {
				t.Fatalf("bytes left after readFrame = %q, %v; want %q", rest, err, tail)
			}
		})
	}
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		c, s := tcpPair(t)
		write(t, c, []byte{0x00})
		buf := getFrameBuf()
		defer putFrameBuf(buf)
		if _, err := readFrame(s, wire.HeaderTCP, buf, time.Now().Add(50*time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("readFrame on a stalled client = %v, want a deadline error", err)
		}
	})
	t.Run("deadline cleared", func(t *testing.T) {
		t.Parallel()
		c, s := tcpPair(t)
		write(t, c, hello(t, "a@h"))
		buf := getFrameBuf()
		defer putFrameBuf(buf)
		if _, err := readFrame(s, wire.HeaderTCP, buf, time.Now().Add(100*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(300 * time.Millisecond) // past the handshake deadline
			_, _ = c.Write(tail)
		}()
		rest := make([]byte, len(tail))
		if _, err := io.ReadFull(s, rest); err != nil {
			t.Fatalf("read after the handshake deadline passed: %v (readFrame left the deadline set)", err)
		}
	})
}

// TestReadFrameTLS: inside TLS the first message has a 4-byte length
// (§12.1); readFrame returns it behind a 2-byte one, as the node reads it,
// refuses a length over the cap from the header alone, and leaves what
// follows in the stream.
func TestReadFrameTLS(t *testing.T) {
	t.Parallel()
	m := hello(t, "a@127.0.0.1")
	tail := []byte("TAIL")
	for _, tc := range []struct {
		name    string
		first   []byte
		want    []byte
		wantErr error
	}{
		{name: "N message", first: append([]byte{0, 0}, m...), want: m},
		{name: "length over 16 bits", first: []byte{0, 1, 0, 0x1a}, wantErr: wire.ErrTooLong},
		{name: "length over the cap", first: []byte{0, 0, 4, 1}, wantErr: wire.ErrTooLong},
		{name: "a 2-byte frame read as 4", first: m, wantErr: wire.ErrTooLong},
		{name: "too short", first: []byte{0, 0, 0, 3, 'N', 0, 0}, wantErr: wire.ErrShort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, s := tcpPair(t)
			write(t, c, append(bytes.Clone(tc.first), tail...))
			buf := getFrameBuf()
			defer putFrameBuf(buf)
			got, err := readFrame(s, wire.HeaderTLS, buf, time.Now().Add(testWait))
			if !errors.Is(err, tc.wantErr) || !bytes.Equal(got, tc.want) {
				t.Fatalf("readFrame = % x, %v; want % x, %v", got, err, tc.want, tc.wantErr)
			}
			if err != nil {
				return
			}
			_ = s.SetReadDeadline(time.Now().Add(testWait))
			rest := make([]byte, len(tail))
			if _, err := io.ReadFull(s, rest); err != nil || !bytes.Equal(rest, tail) {
				t.Fatalf("bytes left after readFrame = %q, %v; want %q", rest, err, tail)
			}
		})
	}
}
