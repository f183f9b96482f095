package testenv

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/distgate/distgate/wire"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The frames built here are byte for byte those of the exchange captured
// between two OTP 25.2.3 nodes with cookie c0ok (erlang-dist-facts.md
// §11.1), digests included.
func TestFramesMatchCapture(t *testing.T) {
	const cookie = "c0ok"
	name := []byte("a@127.0.0.1")
	cases := []struct {
		what string
		got  []byte
		want []byte
	}{
		{"status ok", appendStatus(nil, wire.StatusOK), unhex(t, "0003 736f6b")},
		{"challenge", appendChallenge(nil, 0x0000000d07df7fbd, 0x8e8f2327, 0x7d4bd31c, string(name)),
			append(unhex(t, "001e 4e 0000000d07df7fbd 8e8f2327 7d4bd31c 000b"), name...)},
		{"reply", appendReply(nil, 0x4af3223a, digest(cookie, 0x8e8f2327)),
			unhex(t, "0015 72 4af3223a 9168a80201eff7a0aa95c15d780d1912")},
		{"ack", appendAck(nil, digest(cookie, 0x4af3223a)), unhex(t, "0011 61 af2c74c5c86b91b467d95793430706f8")},
	}
	for _, c := range cases {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s: % x, want % x", c.what, c.got, c.want)
		}
	}

	// And they read back.
	r := bytes.NewReader(bytes.Join([][]byte{cases[1].want, cases[2].want, cases[3].want}, nil))
	body, err := readFrame(r, nil)
	if ch, perr := parseChallenge(body); err != nil || perr != nil || ch != 0x8e8f2327 {
		t.Errorf("challenge read back: %x, %v, %v", ch, err, perr)
	}
	body, err = readFrame(r, nil)
	if ch, perr := parseReply(body); err != nil || perr != nil || ch != 0x4af3223a {
		t.Errorf("reply read back: %x, %v, %v", ch, err, perr)
	}
	if body, err = readFrame(r, nil); err != nil || !isAck(body) {
		t.Errorf("ack read back: % x, %v", body, err)
	}
	if r.Len() != 0 {
		t.Errorf("%d bytes left: readFrame read past its frames", r.Len())
	}
	if _, err := parseChallenge(cases[0].want[2:]); err == nil {
		t.Errorf("a status parsed as a challenge")
	}
}
