package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
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

// FuzzFrames checks the handshake frame decoders and SplitFrame: whatever a
// decoder accepts re-encodes to the same bytes and has the shape it promises,
// and SplitFrame returns a frame only when it is whole and within the cap, and
// then exactly the bytes its header declared.
func FuzzFrames(f *testing.F) {
	for _, seed := range [][]byte{
		bodyChallenge, bodyChallengeNamed, append(bytes.Clone(bodyChallenge), 1, 2),
		legacyChallenge(2391745319, "a@127.0.0.1"), bodyComplement, bodyReply, bodyAck,
		bodyOK, bodyOKSimultaneous, bodyNOK, bodyNotAllowed, bodyAlive, bodyTrue, bodyFalse,
		bodyNamed, append(bytes.Clone(bodyNamed), 7), mustHex("00030073"), mustHex("000000117361"),
		nil, {'N'}, {'n'}, {'s'}, {0xff, 0xff},
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, tls bool) {
		if c, err := ParseChallenge(b); err == nil {
			if (c.Tag != TagNew && c.Tag != TagOld) || checkName(c.Name, false) != nil {
				t.Fatalf("accepted challenge %+v", c)
			}
			if again, err := AppendChallenge(nil, c); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("challenge re-encodes to %x, %v; want %x", again, err, b)
			}
		}
		if c, err := ParseComplement(b); err == nil {
			if again := AppendComplement(nil, c); !bytes.Equal(again, b) {
				t.Fatalf("complement re-encodes to %x; want %x", again, b)
			}
		}
		if r, err := ParseReply(b); err == nil {
			if again := AppendReply(nil, r); !bytes.Equal(again, b) {
				t.Fatalf("reply re-encodes to %x; want %x", again, b)
			}
		}
		if a, err := ParseAck(b); err == nil {
			if again := AppendAck(nil, a); !bytes.Equal(again, b) {
				t.Fatalf("ack re-encodes to %x; want %x", again, b)
			}
		}
		if s, err := ParseStatus(b); err == nil {
			if again, err := AppendStatus(nil, s); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("status re-encodes to %x, %v; want %x", again, err, b)
			}
		}

		hdr := HeaderTCP
		if tls {
			hdr = HeaderTLS
		}
		body, n, err := SplitFrame(b, hdr, MaxHandshakeFrame)
		var declared uint64
		if len(b) >= hdr {
			for _, c := range b[:hdr] {
				declared = declared<<8 | uint64(c)
			}
		}
		switch {
		case err != nil:
			if !errors.Is(err, ErrFrameTooLong) || declared <= MaxHandshakeFrame {
				t.Fatalf("refused a %d-byte frame: %v", declared, err)
			}
		case n == 0:
			if len(b) >= hdr && uint64(len(b)-hdr) >= declared {
				t.Fatalf("asked for more with a whole %d-byte frame in %d bytes", declared, len(b))
			}
		default:
			if declared > MaxHandshakeFrame || uint64(len(body)) != declared || n != hdr+len(body) || n > len(b) {
				t.Fatalf("frame of %d bytes (n %d) from %d bytes declaring %d", len(body), n, len(b), declared)
			}
			if again, err := AppendFrame(nil, hdr, body); err != nil || !bytes.Equal(again, b[:n]) {
				t.Fatalf("frame re-encodes to %x, %v; want %x", again, err, b[:n])
			}
		}
	})
}

// watchFirsts are the first messages FuzzWatch starts from: a static and a
// dynamic name, and the two legacy kinds.
var watchFirsts = [][]byte{captureHidden, captureDynamic, firstLegacyH23, ScannerProbe}

// Script opcodes for FuzzWatch, in the low three bits of an opcode byte
// (values from opCount up wrap around). A frame opcode is followed by a
// 2-byte-framed body, or, with opCanned set, by one byte choosing a body from
// cannedFrames; the others stand alone.
const (
	opClient byte = iota
	opNode
	opClientClosed
	opNodeClosed
	opTimeout
	opFrameError
	opCount

	opCanned byte = 0x08
)

// cannedFrames are the genuine frame bodies, so that the fuzzer can reorder,
// repeat and drop whole frames with one-byte mutations and reach every phase
// and every out-of-order case, not only the ones the seeds walk through.
var cannedFrames = [][]byte{
	bodyOK, bodyOKSimultaneous, bodyNOK, bodyNotAllowed, bodyAlive, bodyNamed,
	bodyTrue, bodyFalse, bodyChallenge, bodyChallengeNamed, bodyChallengeWrong,
	legacyChallenge(2391745319, "a@127.0.0.1"), bodyComplement, bodyReply,
	bodyReplyWrong, bodyAck, bodyFirst,
}

// watchScript encodes events as a FuzzWatch script, genuine frames as
// references into cannedFrames.
func watchScript(events ...event) []byte {
	var s []byte
	for _, e := range events {
		switch e.kind {
		case 'c', 'n':
			op := opClient
			if e.kind == 'n' {
				op = opNode
			}
			if i := slices.IndexFunc(cannedFrames, func(b []byte) bool { return bytes.Equal(b, e.body) }); i >= 0 {
				s = append(s, op|opCanned, byte(i))
				continue
			}
			s = mustAppend(AppendFrame(append(s, op), HeaderTCP, e.body))
		case 'C':
			s = append(s, opClientClosed)
		case 'N':
			s = append(s, opNodeClosed)
		default:
			s = append(s, opTimeout)
		}
	}
	return s
}

// FuzzWatch feeds a Watch arbitrary event sequences and checks what the proxy
// relies on: no panic; a step's outcome is final (later calls give it back
// with Forward false); no frame is forwarded once the outcome is not ok or
// refused, in particular after auth_failed; ok only on a node 'a' after a
// forwarded client 'r'; refused only on a node not_allowed or nok; every frame
// forwarded is a well-formed frame of its side; with a cookie, no 'r' with a
// wrong digest is forwarded.
func FuzzWatch(f *testing.F) {
	okTail := []event{nd(bodyOK), nd(bodyChallenge), cl(bodyReply), nd(bodyAck)}
	for _, seed := range []struct {
		first  uint8
		cookie bool
		script []byte
	}{
		{0, true, watchScript(okTail...)},
		{0, false, watchScript(okTail...)},
		{0, true, watchScript(nd(bodyOK), nd(bodyChallengeWrong), cl(bodyReplyWrong), ndEOF)},
		{0, false, watchScript(nd(bodyOK), nd(bodyChallengeWrong), cl(bodyReplyWrong), ndEOF)},
		{0, true, watchScript(nd(bodyNotAllowed))},
		{0, true, watchScript(nd(bodyNOK))},
		{0, true, watchScript(nd(bodyAlive), cl(bodyTrue), nd(bodyChallenge), cl(bodyReply), nd(bodyAck))},
		{0, false, watchScript(nd(bodyAlive), cl(bodyFalse), clEOF)},
		{0, true, watchScript(nd(bodyOKSimultaneous), nd(bodyChallenge), cl(bodyReply), nd(bodyAck))},
		{1, true, watchScript(nd(bodyNamed), nd(bodyChallengeNamed), cl(bodyReply), nd(bodyAck))},
		{2, true, watchScript(nd(bodyOK), nd(bodyChallenge), cl(bodyComplement), cl(bodyReply), nd(bodyAck))},
		{3, true, watchScript(nd(bodyOK), nd(legacyChallenge(2391745319, "a@127.0.0.1")), cl(bodyReply), nd(bodyAck))},
		{3, false, watchScript(nd(bodyOK), nd(bodyChallenge), cl(bodyComplement), cl(bodyReply), timeout)},
		{0, false, append(watchScript(nd(bodyOK)), opNode, 0x04, 0x01)},
		{0, false, []byte{opFrameError}},
	} {
		f.Add(seed.first, seed.cookie, seed.script)
	}
	f.Fuzz(func(t *testing.T, which uint8, withCookie bool, script []byte) {
		h, err := Parse(watchFirsts[int(which)%len(watchFirsts)])
		if err != nil {
			t.Fatal(err)
		}
		var cookie []byte
		if withCookie {
			cookie = []byte("c0ok")
		}
		w := NewWatch(h, cookie)
		var (
			end                       Step // the first step with an outcome
			challenge                 uint32
			sawChallenge, sawReply    bool
			sawStatus, clientSentTrue bool
		)
		for len(script) > 0 {
			op, canned := script[0]&7%opCount, script[0]&opCanned != 0
			script = script[1:]
			var s Step
			var body []byte
			switch op {
			case opClient, opNode:
				if canned {
					if len(script) == 0 {
						continue
					}
					// A copy, so that a Watch that kept a slice of a body
					// could not pass by reading the shared original.
					body, script = bytes.Clone(cannedFrames[int(script[0])%len(cannedFrames)]), script[1:]
				} else {
					b, n, err := SplitFrame(script, HeaderTCP, MaxHandshakeFrame)
					if err != nil {
						s = w.FrameError(err)
						script = nil
						break
					}
					if n == 0 {
						script = nil
						continue
					}
					body, script = b, script[n:]
				}
				if op == opClient {
					s = w.FromClient(body)
				} else {
					s = w.FromNode(body)
				}
			case opClientClosed:
				s = w.ClientClosed()
			case opNodeClosed:
				s = w.NodeClosed()
			case opTimeout:
				s = w.Timeout()
			default:
				s = w.FrameError(ErrFrameTooLong)
			}
			if w.Outcome() != s.Outcome || w.Done() != s.Done() {
				t.Fatalf("step %+v, watch says %v", s, w.Outcome())
			}
			if end.Done() {
				if s.Forward || s.Outcome != end.Outcome || s.Err != end.Err {
					t.Fatalf("after %+v, got %+v", end, s)
				}
				continue
			}
			switch s.Outcome {
			case OutcomePending:
				if !s.Forward || body == nil {
					t.Fatalf("pending step %+v for op %d", s, op)
				}
			case OutcomeOK:
				if _, err := ParseAck(body); err != nil || op != opNode || !s.Forward || !sawReply {
					t.Fatalf("ok on op %d %q (reply seen %v), step %+v", op, body, sawReply, s)
				}
			case OutcomeRefused:
				st, err := ParseStatus(body)
				if err != nil || op != opNode || !s.Forward || sawStatus || !(st.Is(StatusNotAllowed) || st.Is(StatusNOK)) || w.Status() != string(st.Text) {
					t.Fatalf("refused on op %d %q, step %+v", op, body, s)
				}
			default:
				if s.Forward || s.Err == nil {
					t.Fatalf("step %+v", s)
				}
			}
			if s.Done() {
				end = s
			}
			if !s.Forward || s.Done() {
				continue
			}
			// A frame the watch lets through, the watch still going on.
			switch {
			case op == opNode && body[0] == TagStatus:
				st, err := ParseStatus(body)
				if err != nil || sawStatus {
					t.Fatalf("forwarded node status %q (status seen %v): %v", body, sawStatus, err)
				}
				if st.Is(StatusNamed) != h.NameMe() {
					t.Fatalf("forwarded %q for a first message with NAME_ME %v", body, h.NameMe())
				}
				sawStatus = true
			case op == opNode:
				c, err := ParseChallenge(body)
				if err != nil || !sawStatus || sawChallenge || (w.Status() == StatusAlive && !clientSentTrue) {
					t.Fatalf("forwarded node frame %q: %v", body, err)
				}
				challenge, sawChallenge = c.Challenge, true
			case body[0] == TagReply:
				r, err := ParseReply(body)
				if err != nil || !sawChallenge || sawReply {
					t.Fatalf("forwarded client reply %q: %v", body, err)
				}
				if cookie != nil && !CheckDigest(cookie, challenge, r.Digest) {
					t.Fatalf("forwarded a reply with a wrong digest")
				}
				sawReply = true
			case body[0] == TagComplement:
				if _, err := ParseComplement(body); err != nil || !sawChallenge || h.Tag != TagOld {
					t.Fatalf("forwarded client complement %q: %v", body, err)
				}
			case body[0] == TagStatus:
				st, err := ParseStatus(body)
				if err != nil || w.Status() != StatusAlive || !(st.Is(StatusTrue) || st.Is(StatusFalse)) {
					t.Fatalf("forwarded client status %q: %v", body, err)
				}
				clientSentTrue = st.Is(StatusTrue)
			default:
				t.Fatalf("forwarded client frame %q", body)
			}
		}
	})
}
