package tlshello

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// otp25Hello is the first flight of an OTP 25.2.3 client started with
// -proto_dist inet_tls and verify_none, dialling a@gate.lab (gate.lab mapped
// to 127.0.0.1 with ERL_INETRC), captured off the socket: one record, TLS
// 1.2 only (no supported_versions), SNI the host part (§12.3).
var otp25Hello = mustHex("1603030102010000fe03036b0ed53a922375eb4d4d650ec4de4a0bd06327fe36d547790cea119ffbfee0e600005800ffc02cc030c0adc0afc024c028cca9cca8c02bc02fc0acc0aec02ec032c026c02ac02dc031c023c027c025c029009f00a3006b006a009e00a2ccaa00670040c00ac014c005c00fc009c013c004c00e00390038003300320100007d0000000d000b000008676174652e6c6162000d0024002202020201020303010303040108040809040305010805080a050306010806080b0603000a003a0038000e000d0019001c000b000c001b00180009000a001a00160017000800060007001400150004000500120013000100020003000f00100011000b00020100")

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// goHello returns the first flight of Go's own TLS client for serverName
// ("" sends no SNI), read off a pipe with Need.
func goHello(t testing.TB, serverName string, maxVersion uint16) []byte {
	t.Helper()
	srv, cli := net.Pipe()
	defer srv.Close()
	go func() {
		c := tls.Client(cli, &tls.Config{ServerName: serverName, InsecureSkipVerify: true, MaxVersion: maxVersion})
		_ = c.Handshake() // fails when the pipe closes
		_ = cli.Close()
	}()
	_ = srv.SetDeadline(time.Now().Add(5 * time.Second))
	var b []byte
	var s Scanner
	for {
		n, err := s.Need(b)
		if err != nil {
			t.Fatalf("Go's ClientHello: %v", err)
		}
		if n == 0 {
			return b
		}
		more := make([]byte, n)
		if _, err := io.ReadFull(srv, more); err != nil {
			t.Fatalf("read Go's ClientHello: %v", err)
		}
		b = append(b, more...)
	}
}

// refragment cuts the handshake message of a one-record hello into records
// of at most size bytes each.
func refragment(t testing.TB, one []byte, size int) []byte {
	t.Helper()
	msg := one[RecordHeader:]
	if int(binary.BigEndian.Uint16(one[3:5])) != len(msg) {
		t.Fatal("refragment wants a hello in one record")
	}
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// record wraps a handshake message in one record.
func record(msg []byte) []byte {
	return append([]byte{recordHandshake, 3, 1, byte(len(msg) >> 8), byte(len(msg))}, msg...)
}

// clientHello builds a minimal ClientHello handshake message with the given
// extensions block (nil: none at all).
func clientHello(exts []byte) []byte {
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // session id
	body = append(body, 0, 2, 0xc0, 0x2f)    // one suite
	body = append(body, 1, 0)                // null compression
	if exts != nil {
		body = append(body, byte(len(exts)>>8), byte(len(exts)))
		body = append(body, exts...)
	}
	return append([]byte{typeClientHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

// withBody wraps a ClientHello body in its handshake header.
func withBody(body []byte) []byte {
	return append([]byte{typeClientHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

func helloBody(sid int, suites []byte, comp []byte) []byte {
	body := append([]byte{3, 3}, make([]byte, 32)...)
	body = append(body, byte(sid))
	body = append(body, make([]byte, sid)...)
	body = append(body, byte(len(suites)>>8), byte(len(suites)))
	body = append(body, suites...)
	body = append(body, byte(len(comp)))
	return append(body, comp...)
}

func oddSuites() []byte     { return withBody(helloBody(0, []byte{0xc0, 0x2f, 0x00}, []byte{0})) }
func noCompression() []byte { return withBody(helloBody(0, []byte{0xc0, 0x2f}, nil)) }
func longSessionID() []byte { return withBody(helloBody(33, []byte{0xc0, 0x2f}, []byte{0})) }

// ext is one extension.
func ext(typ uint16, data []byte) []byte {
	return append([]byte{byte(typ >> 8), byte(typ), byte(len(data) >> 8), byte(len(data))}, data...)
}

// sni is a server_name extension's data naming host (type 0).
func sni(names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = append(list, hostName, byte(len(n)>>8), byte(len(n)))
		list = append(list, n...)
	}
	return append([]byte{byte(len(list) >> 8), byte(len(list))}, list...)
}

func TestParse(t *testing.T) {
	goTLS12 := goHello(t, "gate.lab", tls.VersionTLS12)
	goTLS13 := goHello(t, "app.example.com", 0)
	goNoSNI := goHello(t, "", 0)
	big := clientHello(ext(0xfe00, make([]byte, MaxSize)))

	tests := []struct {
		name     string
		in       []byte
		err      error
		sni      string
		versions []uint16 // nil: none sent
	}{
		{"otp25", otp25Hello, nil, "gate.lab", nil},
		{"otp25 in 7-byte records", refragment(t, otp25Hello, 7), nil, "gate.lab", nil},
		{"otp25 with the header split", refragment(t, otp25Hello, 1), nil, "gate.lab", nil},
		{"go tls1.2", goTLS12, nil, "gate.lab", []uint16{tls.VersionTLS12}},
		{"go tls1.3", goTLS13, nil, "app.example.com", []uint16{tls.VersionTLS13, tls.VersionTLS12}},
		{"go without sni", goNoSNI, nil, "", []uint16{tls.VersionTLS13, tls.VersionTLS12}},
		{"go in 100-byte records", refragment(t, goTLS13, 100), nil, "app.example.com", []uint16{tls.VersionTLS13, tls.VersionTLS12}},
		{"no extensions", record(clientHello(nil)), nil, "", nil},
		{"ip literal sni", record(clientHello(ext(extServerName, sni("127.0.0.1")))), nil, "127.0.0.1", nil},
		{"other name type skipped", record(clientHello(ext(extServerName, []byte{0, 16, 1, 0, 1, 'x', 0, 0, 9, 'h', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e'}))), nil, "h.example", nil},
		{"sni list length wrong", record(clientHello(ext(extServerName, append(sni("h.example"), 1, 0, 1, 'x')))), ErrMalformed, "", nil},

		{"plain distribution", []byte("\x00\x1aN\x00\x00\x00\x0d\x07\xdf\x7f\xbc\x00\x00\x00\x00\x00\x0bb@127.0.0.1"), ErrNotTLS, "", nil},
		{"scanner probe", []byte("\x00\x15n\x00\x07\x00\x03\x49\x9cAAAAAA@AAAAAAA"), ErrNotTLS, "", nil},
		{"http", []byte("GET / HTTP/1.1\r\n\r\n"), ErrNotTLS, "", nil},
		{"sslv2 hello", []byte{0x80, 0x2e, 0x01, 0x03, 0x01}, ErrNotTLS, "", nil},
		{"alert record", []byte{0x15, 3, 3, 0, 2, 2, 40}, ErrNotTLS, "", nil},
		{"record version 2.0", []byte{0x16, 2, 0, 0, 4, 1, 0, 0, 0}, ErrNotTLS, "", nil},
		{"empty record", []byte{0x16, 3, 1, 0, 0}, ErrNotTLS, "", nil},
		{"record over 2^14", []byte{0x16, 3, 1, 0x40, 0x01}, ErrNotTLS, "", nil},
		{"server hello", record([]byte{2, 0, 0, 0}), ErrNotHello, "", nil},
		{"hello over the cap", record(big[:maxRecord]), ErrTooLong, "", nil},
		{"records over the cap", refragment(t, record(big), maxRecord), ErrTooLong, "", nil},
		{"trailing bytes in the record", record(append(clientHello(nil), 0)), ErrMalformed, "", nil},
		{"extensions length short", record(append(clientHello(ext(extServerName, sni("a.b"))), 0)), ErrMalformed, "", nil},
		{"duplicate extension", record(clientHello(append(ext(5, nil), ext(5, nil)...))), ErrMalformed, "", nil},
		{"two host names", record(clientHello(ext(extServerName, sni("a.example", "b.example")))), ErrMalformed, "", nil},
		{"empty host name", record(clientHello(ext(extServerName, sni("")))), ErrMalformed, "", nil},
		{"empty name list", record(clientHello(ext(extServerName, []byte{0, 0}))), ErrMalformed, "", nil},
		{"control byte in sni", record(clientHello(ext(extServerName, sni("a\nb.example")))), ErrMalformed, "", nil},
		{"space in sni", record(clientHello(ext(extServerName, sni("a b.example")))), ErrMalformed, "", nil},
		{"trailing dot", record(clientHello(ext(extServerName, sni("gate.lab.")))), ErrMalformed, "", nil},
		{"odd cipher suites", record(oddSuites()), ErrMalformed, "", nil},
		{"no compression method", record(noCompression()), ErrMalformed, "", nil},
		{"session id over 32", record(longSessionID()), ErrMalformed, "", nil},
		{"bad supported_versions", record(clientHello(ext(extSupportedVersions, []byte{3, 3, 4, 3}))), ErrMalformed, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, nerr := Need(tc.in)
			h, err := Parse(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Parse: %v, want %v (Need: %d, %v)", err, tc.err, n, nerr)
			}
			if tc.err != nil {
				return
			}
			if n != 0 || nerr != nil {
				t.Errorf("Need on a whole hello: %d, %v", n, nerr)
			}
			if h.ServerName != tc.sni || !slices.Equal(h.Versions, tc.versions) || h.Len != len(tc.in) {
				t.Errorf("hello: sni %q versions %x len %d; want %q %x %d", h.ServerName, h.Versions, h.Len, tc.sni, tc.versions, len(tc.in))
			}
			// Read exactly as told, it never reads past the hello.
			checkExactReads(t, tc.in)
		})
	}
}

// checkExactReads feeds b to a Scanner the way a gate reads a socket
// holding b and more: exactly what Need asks for, each time. It must end
// exactly at the end of b, having asked for nothing more.
func checkExactReads(t *testing.T, b []byte) {
	t.Helper()
	var s Scanner
	got := 0
	for {
		n, err := s.Need(b[:got])
		if err != nil {
			t.Fatalf("Need after %d bytes: %v", got, err)
		}
		if n == 0 {
			break
		}
		if got+n > len(b) {
			t.Fatalf("Need after %d bytes asks for %d, past the hello's %d", got, n, len(b))
		}
		got += n
	}
	if got != len(b) {
		t.Fatalf("complete after %d of %d bytes", got, len(b))
	}
}

// Every cut of a real hello is incomplete, not an error, and asks for no
// byte past the hello.
func TestNeedPrefixes(t *testing.T) {
	for _, b := range [][]byte{otp25Hello, refragment(t, otp25Hello, 3)} {
		for i := range len(b) {
			n, err := Need(b[:i])
			if err != nil || n == 0 || i+n > len(b) {
				t.Fatalf("Need(%d of %d bytes) = %d, %v", i, len(b), n, err)
			}
			if _, err := Parse(b[:i]); err == nil {
				t.Fatalf("Parse accepted %d of %d bytes", i, len(b))
			}
		}
	}
	// An error shows as early as the bytes allow.
	for _, c := range []struct {
		in  []byte
		err error
	}{
		{[]byte{0x00}, ErrNotTLS},
		{[]byte{0x16, 0x00}, ErrNotTLS},
		{[]byte{0x16, 3, 9}, ErrNotTLS},
		{[]byte{0x16, 3, 1, 0, 0}, ErrNotTLS},
		{[]byte{0x16, 3, 1, 0, 1, 2}, ErrNotHello},
	} {
		if _, err := Need(c.in); !errors.Is(err, c.err) {
			t.Errorf("Need(% x) = %v, want %v", c.in, err, c.err)
		}
	}
}

// Parse does not alias its input.
func TestParseCopies(t *testing.T) {
	b := bytes.Clone(otp25Hello)
	h, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	if h.ServerName != "gate.lab" {
		t.Errorf("server name changed with the input: %q", h.ServerName)
	}
}

// The cap counts every byte of the records, headers included.
func TestCap(t *testing.T) {
	base := len(clientHello(ext(0xfe00, nil)))
	for _, c := range []struct {
		total int
		err   error
	}{{MaxSize, nil}, {MaxSize + 1, ErrTooLong}} {
		// Two records of at most 8 KiB: the records add 10 bytes.
		msg := clientHello(ext(0xfe00, make([]byte, c.total-10-base)))
		b := refragment(t, record(msg), 8192)
		if len(b) != c.total {
			t.Fatalf("built %d bytes, want %d", len(b), c.total)
		}
		if _, err := Parse(b); !errors.Is(err, c.err) {
			t.Errorf("%d bytes: %v, want %v", c.total, err, c.err)
		}
	}
}
