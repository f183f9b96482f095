package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// Captures from real OTP 25.2.3 / Elixir 1.14 peers and the CouchDB-era scanner
// (erlang-dist-facts.md §2.11, §4, §7).
var (
	captureHidden  = mustHex("001a4e0000000d07df7fbcfa02cbc9000b" + hex.EncodeToString([]byte("b@127.0.0.1")))
	captureRPC     = mustHex("00274e0000000d07df7fbcfaac1ea80018" + hex.EncodeToString([]byte("rpc-a9d5-myapp@127.0.0.1")))
	captureRemote  = mustHex("00274e0000000d07df7fbcfcf85baf0018" + hex.EncodeToString([]byte("rem-a0cf-myapp@127.0.0.1")))
	captureDynamic = mustHex("00184e0000000f07df7fbc000000000009" + hex.EncodeToString([]byte("127.0.0.1")))
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// newFrame builds an 'N' message by hand so malformed cases are explicit.
func newFrame(flags uint64, name string) []byte {
	b, err := Append(nil, Handshake{Tag: TagNew, Flags: flags, Creation: 7, Name: []byte(name)})
	if err != nil {
		panic(err)
	}
	return b
}

func TestParseCaptures(t *testing.T) {
	tests := []struct {
		name     string
		frame    []byte
		tag      byte
		version  uint16
		flags    uint64
		creation uint32
		node     string
		hidden   bool
		nameMe   bool
	}{
		{"otp25 hidden client", captureHidden, 'N', 0, 0xD07DF7FBC, 0xfa02cbc9, "b@127.0.0.1", true, false},
		{"elixir rpc helper", captureRPC, 'N', 0, 0xD07DF7FBC, 0xfaac1ea8, "rpc-a9d5-myapp@127.0.0.1", true, false},
		{"elixir remote shell", captureRemote, 'N', 0, 0xD07DF7FBC, 0xfcf85baf, "rem-a0cf-myapp@127.0.0.1", true, false},
		{"dynamic name", captureDynamic, 'N', 0, 0xF07DF7FBC, 0, "127.0.0.1", true, true},
		{"scanner probe", ScannerProbe, 'n', 7, 0x0003499C, 0, "AAAAAA@AAAAAAA", true, false},
		{"published node", newFrame(0xD07DF7FBD, "a@h"), 'N', 0, 0xD07DF7FBD, 7, "a@h", false, false},
		{"255-byte name", newFrame(DefaultHiddenFlags, strings.Repeat("a", 253)+"@h"), 'N', 0, DefaultHiddenFlags, 7, strings.Repeat("a", 253) + "@h", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Parse(tt.frame)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if h.Tag != tt.tag || h.Version != tt.version || h.Flags != tt.flags || h.Creation != tt.creation {
				t.Errorf("got tag %q version %d flags %#x creation %#x", h.Tag, h.Version, h.Flags, h.Creation)
			}
			if string(h.Name) != tt.node {
				t.Errorf("name %q, want %q", h.Name, tt.node)
			}
			if h.Hidden() != tt.hidden || h.NameMe() != tt.nameMe {
				t.Errorf("hidden %v nameMe %v", h.Hidden(), h.NameMe())
			}
			again, err := Append(nil, h)
			if err != nil || !bytes.Equal(again, tt.frame) {
				t.Errorf("re-encode: %x, %v; want %x", again, err, tt.frame)
			}
		})
	}
}

// TestScannerProbe pins ScannerProbe to the bytes and the decode of
// erlang-dist-facts.md §4, since other packages send it as "the scanner".
func TestScannerProbe(t *testing.T) {
	want := []byte{0x00, 0x15, 'n', 0x00, 0x07, 0x00, 0x03, 0x49, 0x9c,
		'A', 'A', 'A', 'A', 'A', 'A', '@', 'A', 'A', 'A', 'A', 'A', 'A', 'A'}
	if !bytes.Equal(ScannerProbe, want) {
		t.Fatalf("ScannerProbe = %x, want %x", ScannerProbe, want)
	}
	h, err := Parse(ScannerProbe)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if h.Tag != TagOld || h.Version != 7 || h.Flags != 0x0003499C || string(h.Name) != "AAAAAA@AAAAAAA" || h.Extra != nil {
		t.Fatalf("decoded %+v", h)
	}
	if !h.Hidden() || h.NameMe() {
		t.Errorf("hidden %v nameMe %v", h.Hidden(), h.NameMe())
	}
	// §4: the four OTP 25 mandatory flags it lacks, and nothing else.
	missing := Mandatory25 &^ Effective(h.Flags)
	if want := FlagExportPtrTag | FlagBitBinaries | FlagBigCreation | FlagHandshake23; missing != want {
		t.Errorf("missing flags %#x, want %#x", missing, want)
	}
}

func TestParseTrailingBytes(t *testing.T) {
	// Receivers must accept and ignore trailing bytes after an 'N' name.
	f, _ := Append(nil, Handshake{Tag: TagNew, Flags: DefaultHiddenFlags, Name: []byte("a@b"), Extra: []byte{1, 2, 3}})
	h, err := Parse(f)
	if err != nil || string(h.Name) != "a@b" || !bytes.Equal(h.Extra, []byte{1, 2, 3}) {
		t.Fatalf("got %+v, %v", h, err)
	}
}

func TestParseMalformed(t *testing.T) {
	withLen := func(body []byte) []byte { return append([]byte{byte(len(body) >> 8), byte(len(body))}, body...) }
	nameLen := func(f []byte, n uint16) []byte { f = bytes.Clone(f); f[15], f[16] = byte(n>>8), byte(n); return f }
	tests := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"empty", nil, ErrShort},
		{"one byte", []byte{0}, ErrShort},
		{"length only", []byte{0, 26}, ErrLength},
		{"short read of capture", captureHidden[:20], ErrLength},
		{"extra byte after frame", append(bytes.Clone(captureHidden), 0), ErrLength},
		{"over-long length prefix", []byte{0xff, 0xff, 'N'}, ErrTooLong},
		{"length just over the cap", append([]byte{0x04, 0x01}, make([]byte, 1025)...), ErrTooLong},
		{"tiny declared length", []byte{0, 1, 'N'}, ErrShort},
		{"N header cut", withLen([]byte("N\x00\x00\x00\x00\x00\x00\x00")), ErrShort},
		{"name length past end", nameLen(captureHidden, 200), ErrLength},
		{"unknown tag", withLen([]byte("x\x00\x05\x00\x00\x00\x00a@b")), ErrTag},
		{"epmd names request", []byte{0, 1, 'n'}, ErrShort},
		{"TLS record", mustHex("160301020001"), ErrTLS},
		{"TLS tag in body", withLen([]byte("\x16\x03\x01\x00\x00\x00\x00a@b")), ErrTLS},
		{"no @", newFrame(DefaultHiddenFlags, "noat"), ErrName},
		{"two @", newFrame(DefaultHiddenFlags, "a@b@c"), ErrName},
		{"empty name part", newFrame(DefaultHiddenFlags, "@host"), ErrName},
		{"empty host part", newFrame(DefaultHiddenFlags, "name@"), ErrName},
		{"empty name", newFrame(DefaultHiddenFlags, ""), ErrName},
		{"256-byte name", newFrame(DefaultHiddenFlags, strings.Repeat("a", 254)+"@h"), ErrNameLong},
		{"newline in name", newFrame(DefaultHiddenFlags, "a\n@h"), ErrName},
		{"NUL in name", newFrame(DefaultHiddenFlags, "a\x00@h"), ErrName},
		{"space in name", newFrame(DefaultHiddenFlags, "a b@h"), ErrName},
		{"DEL in name", newFrame(DefaultHiddenFlags, "a\x7f@h"), ErrName},
		{"latin-1 byte in name", newFrame(DefaultHiddenFlags, "\xe9@h"), ErrName},
		{"escape sequence in name", newFrame(DefaultHiddenFlags, "\x1b[31m@h"), ErrName},
		{"dynamic name with @", newFrame(DefaultHiddenFlags|FlagNameMe, "a@h"), ErrName},
		{"dynamic name empty", newFrame(DefaultHiddenFlags|FlagNameMe, ""), ErrName},
		{"n without name", withLen([]byte("n\x00\x05\x00\x00\x00\x00")), ErrShort},
		{"n with no @", withLen([]byte("n\x00\x05\x00\x00\x00\x00abc")), ErrName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Parse(tt.frame)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse = %+v, %v; want %v", h, err, tt.want)
			}
		})
	}
}

func TestCheckLength(t *testing.T) {
	for _, tt := range []struct {
		p    [2]byte
		n    int
		want error
	}{
		{[2]byte{0, 0x1a}, 26, nil},
		{[2]byte{0x04, 0x00}, 1024, nil},
		{[2]byte{0x04, 0x01}, 0, ErrTooLong},
		{[2]byte{0x16, 0x03}, 0, ErrTLS},
		{[2]byte{0, 9}, 0, ErrShort},
	} {
		n, err := CheckLength(tt.p)
		if n != tt.n || !errors.Is(err, tt.want) {
			t.Errorf("CheckLength(%x) = %d, %v; want %d, %v", tt.p, n, err, tt.n, tt.want)
		}
	}
}

func TestEffectiveFlags(t *testing.T) {
	if Effective(FlagMandatory25Digest)&Mandatory25 != Mandatory25 {
		t.Error("MANDATORY_25_DIGEST must expand to the OTP 25 set")
	}
	if Effective(0x0003499C)&Mandatory25 == Mandatory25 {
		t.Error("the scanner's flags must not pass as OTP 25")
	}
	if Mandatory25 != 0x1070F94 || Mandatory26 != 0x0000000403070F94 {
		t.Errorf("masks %#x %#x", Mandatory25, Mandatory26)
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(captureRPC); err != nil {
			b.Fatal(err)
		}
	}
}
