package wire

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// FuzzParse checks invariants, not only the absence of panics: a declared length
// over the cap is never accepted, an accepted message is exactly as long as it
// says, its name is sane, and it re-encodes to the same bytes.
func FuzzParse(f *testing.F) {
	for _, seed := range [][]byte{
		captureHidden, captureRPC, captureRemote, captureDynamic, ScannerProbe,
		nil, {0}, {0x16, 0x03, 0x01, 0x02, 0x00, 0x01}, {0xff, 0xff},
		newFrame(DefaultHiddenFlags, strings.Repeat("a", 253)+"@h"),
		newFrame(DefaultHiddenFlags, "a@b@c"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		h, err := Parse(frame)
		if err != nil {
			return
		}
		if len(frame) < 2 || int(binary.BigEndian.Uint16(frame)) > MaxBody || len(frame) > MaxFrame {
			t.Fatalf("accepted a frame over the cap: %d bytes", len(frame))
		}
		if len(h.Name) == 0 || len(h.Name) > MaxNameLen {
			t.Fatalf("accepted name of %d bytes", len(h.Name))
		}
		for _, c := range h.Name {
			if !Printable(c) {
				t.Fatalf("accepted non-printable byte %#x", c)
			}
		}
		if at := bytes.Count(h.Name, []byte("@")); at != 1 && !(h.NameMe() && at == 0) {
			t.Fatalf("accepted name %q", h.Name)
		}
		again, err := Append(nil, h)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again, frame) {
			t.Fatalf("re-encode gave %x, want %x", again, frame)
		}
	})
}
