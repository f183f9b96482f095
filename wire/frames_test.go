package wire

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Frame bodies (length header stripped) captured from OTP 25.2.3 with cookie
// c0ok: the right-cookie exchange of erlang-dist-facts.md §11.1, the
// dynamic-name grant of §11.3, and the status frames of §11.3.
var (
	bodyFirst     = mustHex("4e0000000d07df7fbc04789f8a000b" + hex.EncodeToString([]byte("b@127.0.0.1")))
	bodyChallenge = mustHex("4e0000000d07df7fbd8e8f23277d4bd31c000b" + hex.EncodeToString([]byte("a@127.0.0.1")))
	bodyReply     = mustHex("724af3223a9168a80201eff7a0aa95c15d780d1912")
	bodyAck       = mustHex("61af2c74c5c86b91b467d95793430706f8")
	bodyNamed     = mustHex("73" + hex.EncodeToString([]byte("named:")) + "0017" + hex.EncodeToString([]byte("34QSNYVVREQKX@127.0.0.1")) + "68e67ed1")
	// The challenge a node sends after named:: NAME_ME set, PUBLISHED not.
	bodyChallengeNamed = mustHex("4e0000000f07df7fbc8e8f23277d4bd31c000b" + hex.EncodeToString([]byte("a@127.0.0.1")))

	bodyOK             = []byte("sok")
	bodyOKSimultaneous = []byte("sok_simultaneous")
	bodyNOK            = []byte("snok")
	bodyNotAllowed     = []byte("snot_allowed")
	bodyAlive          = []byte("salive")
	bodyTrue           = []byte("strue")
	bodyFalse          = []byte("sfalse")
)

// legacyChallenge builds the 'n' challenge an OTP ≤ 24 node sends to an 'n'
// client without HANDSHAKE_23 (§2.3).
func legacyChallenge(challenge uint32, name string) []byte {
	b, err := AppendChallenge(nil, Challenge{Tag: TagOld, Version: 5, Flags: 0x0003499C, Challenge: challenge, Name: []byte(name)})
	if err != nil {
		panic(err)
	}
	return b
}

func digestHex(s string) (d [DigestLen]byte) {
	copy(d[:], mustHex(s))
	return d
}

func TestSplitFrame(t *testing.T) {
	tcp := func(body string) string { return string([]byte{byte(len(body) >> 8), byte(len(body))}) + body }
	tests := []struct {
		name  string
		buf   string
		hdr   int
		limit int
		body  string
		n     int
		err   error
	}{
		{"empty", "", HeaderTCP, 1024, "", 0, nil},
		{"half a header", "\x00", HeaderTCP, 1024, "", 0, nil},
		{"header only", "\x00\x03", HeaderTCP, 1024, "", 0, nil},
		{"body cut", "\x00\x03so", HeaderTCP, 1024, "", 0, nil},
		{"whole", "\x00\x03sok", HeaderTCP, 1024, "sok", 5, nil},
		{"whole and more", "\x00\x03sok\x00\x1eN", HeaderTCP, 1024, "sok", 5, nil},
		{"zero length", "\x00\x00\x00\x03sok", HeaderTCP, 1024, "", 2, nil},
		{"at the cap", tcp(strings.Repeat("x", 1024)), HeaderTCP, 1024, strings.Repeat("x", 1024), 1026, nil},
		{"over the cap", "\x04\x01", HeaderTCP, 1024, "", 0, ErrFrameTooLong},
		{"over the cap, body present", tcp(strings.Repeat("x", 1025)), HeaderTCP, 1024, "", 0, ErrFrameTooLong},
		{"largest 2-byte length", "\xff\xff", HeaderTCP, 1024, "", 0, ErrFrameTooLong},
		{"TLS whole", "\x00\x00\x00\x03sok", HeaderTLS, 1024, "sok", 7, nil},
		{"TLS header cut", "\x00\x00\x00", HeaderTLS, 1024, "", 0, nil},
		{"TLS body cut", "\x00\x00\x00\x03s", HeaderTLS, 1024, "", 0, nil},
		{"TLS tick", "\x00\x00\x00\x00", HeaderTLS, 1024, "", 4, nil},
		{"TLS huge length", "\xff\xff\xff\xff", HeaderTLS, 1024, "", 0, ErrFrameTooLong},
		{"TLS 2-byte-sized frame read as 4", "\x00\x1aN\x00", HeaderTLS, 1024, "", 0, ErrFrameTooLong},
		{"header size 3", "\x00\x00\x03sok", 3, 1024, "", 0, ErrFrameHeader},
		{"header size 0", "sok", 0, 1024, "", 0, ErrFrameHeader},
		{"negative limit", "\x00\x00", HeaderTCP, -1, "", 0, ErrFrameTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, n, err := SplitFrame([]byte(tt.buf), tt.hdr, tt.limit)
			if !errors.Is(err, tt.err) || n != tt.n || string(body) != tt.body {
				t.Fatalf("SplitFrame = %q, %d, %v; want %q, %d, %v", body, n, err, tt.body, tt.n, tt.err)
			}
		})
	}
}

// TestSplitFrameByteByByte feeds a captured server-to-client stream one byte
// at a time: each frame must come out exactly when its last byte arrives, so a
// reader never has to read past it.
func TestSplitFrameByteByByte(t *testing.T) {
	for _, hdr := range []int{HeaderTCP, HeaderTLS} {
		frames := [][]byte{bodyOK, bodyChallenge, bodyAck}
		var stream []byte
		var ends []int
		for _, f := range frames {
			var err error
			if stream, err = AppendFrame(stream, hdr, f); err != nil {
				t.Fatal(err)
			}
			ends = append(ends, len(stream))
		}
		var got [][]byte
		start := 0
		for i := 1; i <= len(stream); i++ {
			body, n, err := SplitFrame(stream[start:i], hdr, MaxHandshakeFrame)
			if err != nil {
				t.Fatalf("hdr %d at %d: %v", hdr, i, err)
			}
			if n == 0 {
				continue
			}
			if i != ends[len(got)] || start+n != i {
				t.Fatalf("hdr %d: frame %d out at byte %d (n %d), want %d", hdr, len(got), i, n, ends[len(got)])
			}
			got = append(got, body)
			start = i
		}
		if !reflect.DeepEqual(got, frames) {
			t.Fatalf("hdr %d: got %q, want %q", hdr, got, frames)
		}
	}
}

func TestAppendFrame(t *testing.T) {
	if b, err := AppendFrame(nil, HeaderTCP, bodyOK); err != nil || !bytes.Equal(b, mustHex("0003736f6b")) {
		t.Errorf("TCP: %x, %v", b, err)
	}
	// §12.1: the same frame as the TLS side carries it.
	if b, err := AppendFrame(nil, HeaderTLS, bodyOK); err != nil || !bytes.Equal(b, mustHex("00000003736f6b")) {
		t.Errorf("TLS: %x, %v", b, err)
	}
	if _, err := AppendFrame(nil, HeaderTCP, make([]byte, 0x10000)); !errors.Is(err, ErrFrameTooLong) {
		t.Errorf("64 KiB body in a 2-byte frame: %v", err)
	}
	if _, err := AppendFrame(nil, 3, bodyOK); !errors.Is(err, ErrFrameHeader) {
		t.Errorf("3-byte header: %v", err)
	}
}

func TestParseChallenge(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want Challenge
	}{
		{"captured N", bodyChallenge, Challenge{Tag: 'N', Flags: 0xD07DF7FBD, Challenge: 2391745319, Creation: 0x7d4bd31c, Name: []byte("a@127.0.0.1")}},
		{"captured N after named:", bodyChallengeNamed, Challenge{Tag: 'N', Flags: 0xF07DF7FBC, Challenge: 2391745319, Creation: 0x7d4bd31c, Name: []byte("a@127.0.0.1")}},
		{"N with trailing bytes", append(bytes.Clone(bodyChallenge), 1, 2), Challenge{Tag: 'N', Flags: 0xD07DF7FBD, Challenge: 2391745319, Creation: 0x7d4bd31c, Name: []byte("a@127.0.0.1"), Extra: []byte{1, 2}}},
		{"legacy n", legacyChallenge(7, "couch@h"), Challenge{Tag: 'n', Version: 5, Flags: 0x0003499C, Challenge: 7, Name: []byte("couch@h")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseChallenge(tt.body)
			if err != nil || !reflect.DeepEqual(c, tt.want) {
				t.Fatalf("got %+v, %v; want %+v", c, err, tt.want)
			}
			again, err := AppendChallenge(nil, c)
			if err != nil || !bytes.Equal(again, tt.body) {
				t.Fatalf("re-encode: %x, %v; want %x", again, err, tt.body)
			}
		})
	}
}

func TestParseChallengeMalformed(t *testing.T) {
	withNlen := func(n uint16) []byte { b := bytes.Clone(bodyChallenge); b[17], b[18] = byte(n>>8), byte(n); return b }
	withName := func(name string) []byte {
		b, _ := AppendChallenge(nil, Challenge{Tag: TagNew, Flags: 1, Name: []byte(name)})
		return b
	}
	tests := []struct {
		name string
		body []byte
		want error
	}{
		{"empty", nil, ErrFrameSize},
		{"status", bodyOK, ErrFrameTag},
		{"ack", bodyAck, ErrFrameTag},
		{"N header cut", bodyChallenge[:18], ErrFrameSize},
		{"N name cut", bodyChallenge[:len(bodyChallenge)-1], ErrFrameSize},
		{"N name length past the end", withNlen(12), ErrFrameSize},
		{"N name length 0", withNlen(0), ErrName},
		{"n header cut", legacyChallenge(7, "a@b")[:10], ErrFrameSize},
		{"n without name", legacyChallenge(7, "a@b")[:11], ErrName},
		{"no @", withName("nohost"), ErrName},
		{"two @", withName("a@b@c"), ErrName},
		{"control byte", withName("a\n@b"), ErrName},
		{"256 bytes", withName(strings.Repeat("a", 254) + "@b"), ErrNameLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := ParseChallenge(tt.body); !errors.Is(err, tt.want) {
				t.Fatalf("got %+v, %v; want %v", c, err, tt.want)
			}
		})
	}
}

func TestAppendChallengeRefusesWhatTheLayoutCannotCarry(t *testing.T) {
	for _, c := range []Challenge{
		{Tag: TagOld, Flags: 1 << 32, Name: []byte("a@b")},
		{Tag: TagOld, Creation: 1, Name: []byte("a@b")},
		{Tag: TagOld, Name: []byte("a@b"), Extra: []byte{0}},
		{Tag: TagNew, Version: 5, Name: []byte("a@b")},
		{Tag: TagNew, Name: make([]byte, 0x10000)},
		{Tag: 'x', Name: []byte("a@b")},
	} {
		if b, err := AppendChallenge([]byte("keep"), c); err == nil || string(b) != "keep" {
			t.Errorf("AppendChallenge(%+v) = %q, %v; want an error and dst untouched", c, b, err)
		}
	}
}

func TestFixedSizeFrames(t *testing.T) {
	// The captured 'r' and 'a' (§11.1) decode to their challenge and digests.
	r, err := ParseReply(bodyReply)
	if err != nil || r.Challenge != 1257447994 || r.Digest != digestHex("9168a80201eff7a0aa95c15d780d1912") {
		t.Errorf("reply %+v, %v", r, err)
	}
	if b := AppendReply(nil, r); !bytes.Equal(b, bodyReply) {
		t.Errorf("reply re-encodes to %x", b)
	}
	a, err := ParseAck(bodyAck)
	if err != nil || a.Digest != digestHex("af2c74c5c86b91b467d95793430706f8") {
		t.Errorf("ack %+v, %v", a, err)
	}
	if b := AppendAck(nil, a); !bytes.Equal(b, bodyAck) {
		t.Errorf("ack re-encodes to %x", b)
	}
	cb := mustHex("630000000d12345678")
	c, err := ParseComplement(cb)
	if err != nil || c != (Complement{FlagsHigh: 0xd, Creation: 0x12345678}) {
		t.Errorf("complement %+v, %v", c, err)
	}
	if b := AppendComplement(nil, c); !bytes.Equal(b, cb) {
		t.Errorf("complement re-encodes to %x", b)
	}

	// Strict sizes: one byte short or long is refused, as OTP's matches do.
	for _, tt := range []struct {
		name  string
		parse func([]byte) error
		good  []byte
	}{
		{"reply", func(b []byte) error { _, err := ParseReply(b); return err }, bodyReply},
		{"ack", func(b []byte) error { _, err := ParseAck(b); return err }, bodyAck},
		{"complement", func(b []byte) error { _, err := ParseComplement(b); return err }, cb},
	} {
		if err := tt.parse(tt.good[:len(tt.good)-1]); !errors.Is(err, ErrFrameSize) {
			t.Errorf("%s one byte short: %v", tt.name, err)
		}
		if err := tt.parse(append(bytes.Clone(tt.good), 0)); !errors.Is(err, ErrFrameSize) {
			t.Errorf("%s one byte long: %v", tt.name, err)
		}
		if err := tt.parse(tt.good[:1]); !errors.Is(err, ErrFrameSize) {
			t.Errorf("%s tag only: %v", tt.name, err)
		}
		if err := tt.parse(nil); !errors.Is(err, ErrFrameTag) {
			t.Errorf("%s empty: %v", tt.name, err)
		}
		if err := tt.parse(bodyOK); !errors.Is(err, ErrFrameTag) {
			t.Errorf("%s given a status: %v", tt.name, err)
		}
	}
}

func TestStatusRoundTrip(t *testing.T) {
	for _, body := range [][]byte{
		bodyOK, bodyOKSimultaneous, bodyNOK, bodyNotAllowed, bodyAlive, bodyTrue, bodyFalse,
		bodyNamed, append(bytes.Clone(bodyNamed), 9, 9), mustHex("73" + hex.EncodeToString([]byte("named:")) + "0017" + hex.EncodeToString([]byte("35YWUT0LH1JPU@127.0.0.1")) + "8177ea98"),
	} {
		s, err := ParseStatus(body)
		if err != nil {
			t.Fatalf("ParseStatus(%q): %v", body, err)
		}
		again, err := AppendStatus(nil, s)
		if err != nil || !bytes.Equal(again, body) {
			t.Errorf("%q re-encodes to %q, %v", body, again, err)
		}
	}
	s, err := ParseStatus(bodyNamed)
	if err != nil || !s.Is(StatusNamed) || string(s.Name) != "34QSNYVVREQKX@127.0.0.1" || s.Creation != 0x68e67ed1 || s.Extra != nil {
		t.Errorf("captured named: %+v, %v", s, err)
	}
	for _, bad := range []Status{
		{},
		{Text: []byte("ok"), Name: []byte("a@b")},
		{Text: []byte("ok"), Creation: 1},
		{Text: []byte("ok"), Extra: []byte{1}},
		{Text: []byte(StatusNamed), Name: make([]byte, 0x10000)},
	} {
		if b, err := AppendStatus([]byte("keep"), bad); err == nil || string(b) != "keep" {
			t.Errorf("AppendStatus(%+v) = %q, %v; want an error and dst untouched", bad, b, err)
		}
	}
}

// md5Ref is the digest by the book, for the cases no capture covers.
func md5Ref(s string) []byte {
	d := md5.Sum([]byte(s))
	return d[:]
}

// TestDigest checks the digests captured in erlang-dist-facts.md §11.1 and
// §11.2, and that the captured 'r' and 'a' carry them.
func TestDigest(t *testing.T) {
	tests := []struct {
		cookie    string
		challenge uint32
		want      string
	}{
		{"c0ok", 2391745319, "9168a80201eff7a0aa95c15d780d1912"},
		{"c0ok", 1257447994, "af2c74c5c86b91b467d95793430706f8"},
		{"wrongcookie", 2387438841, "d56bf785e0dee2446c6b489731956d93"},
		{"c0ok", 0, hex.EncodeToString(md5Ref("c0ok0"))},
		{"c0ok", 4294967295, hex.EncodeToString(md5Ref("c0ok4294967295"))},
		{strings.Repeat("k", 300), 7, hex.EncodeToString(md5Ref(strings.Repeat("k", 300) + "7"))},
	}
	for _, tt := range tests {
		got := Digest([]byte(tt.cookie), tt.challenge)
		if hex.EncodeToString(got[:]) != tt.want {
			t.Errorf("Digest(%.12q, %d) = %x, want %s", tt.cookie, tt.challenge, got, tt.want)
		}
		if !CheckDigest([]byte(tt.cookie), tt.challenge, digestHex(tt.want)) {
			t.Errorf("CheckDigest(%.12q, %d) refused its own digest", tt.cookie, tt.challenge)
		}
		if CheckDigest([]byte(tt.cookie), tt.challenge+1, digestHex(tt.want)) {
			t.Errorf("CheckDigest(%.12q, %d) took the digest of another challenge", tt.cookie, tt.challenge+1)
		}
	}
	c, _ := ParseChallenge(bodyChallenge)
	r, _ := ParseReply(bodyReply)
	if !CheckDigest([]byte("c0ok"), c.Challenge, r.Digest) {
		t.Error("the captured 'r' does not carry md5(cookie ++ node's challenge)")
	}
	a, _ := ParseAck(bodyAck)
	if !CheckDigest([]byte("c0ok"), r.Challenge, a.Digest) {
		t.Error("the captured 'a' does not carry md5(cookie ++ client's challenge)")
	}
	if n := testing.AllocsPerRun(100, func() { _ = CheckDigest([]byte("c0ok"), 2391745319, r.Digest) }); n != 0 {
		t.Errorf("CheckDigest allocates %.0f times", n)
	}
}
