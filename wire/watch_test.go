package wire

import (
	"bytes"
	"errors"
	"testing"
)

// event is one thing a proxy reports to a Watch: a frame body from one side,
// a close, or its setup timer running out.
type event struct {
	kind byte // 'c' client frame, 'n' node frame, 'C' client closed, 'N' node closed, 't' timeout
	body []byte
	fwd  bool // the Forward the step must carry
}

func cl(b []byte) event     { return event{'c', b, true} }
func nd(b []byte) event     { return event{'n', b, true} }
func clDrop(b []byte) event { return event{'c', b, false} }
func ndDrop(b []byte) event { return event{'n', b, false} }

var (
	clEOF   = event{kind: 'C'}
	ndEOF   = event{kind: 'N'}
	timeout = event{kind: 't'}
)

func (e event) apply(w *Watch) Step {
	switch e.kind {
	case 'c':
		return w.FromClient(e.body)
	case 'n':
		return w.FromNode(e.body)
	case 'C':
		return w.ClientClosed()
	case 'N':
		return w.NodeClosed()
	default:
		return w.Timeout()
	}
}

// Frames of the wrong-cookie attempt of §11.2: the node's challenge was
// 2387438841 and the client, holding "wrongcookie", answered with
// md5("wrongcookie" ++ "2387438841").
var (
	bodyChallengeWrong = mustAppend(AppendChallenge(nil, Challenge{Tag: TagNew, Flags: 0xD07DF7FBD, Challenge: 2387438841, Creation: 0x7d4bd31c, Name: []byte("a@127.0.0.1")}))
	bodyReplyWrong     = AppendReply(nil, Reply{Challenge: 1257447994, Digest: digestHex("d56bf785e0dee2446c6b489731956d93")})
	// OTP 23/24 without epmd: a legacy 'n' name with HANDSHAKE_23 (the frame
	// 25.2.3 closes at once, §11.1), and its complement.
	firstLegacyH23 = mustHex("00126e000507df7fbc" + "62403132372e302e302e31") // "b@127.0.0.1"
	bodyComplement = AppendComplement(nil, Complement{FlagsHigh: 0xd, Creation: 0x04789f8a})
)

func mustAppend(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestWatch(t *testing.T) {
	first := append([]byte{0, byte(len(bodyFirst))}, bodyFirst...)
	okTail := []event{nd(bodyOK), nd(bodyChallenge), cl(bodyReply), nd(bodyAck)}
	tests := []struct {
		name    string
		first   []byte // whole first message
		cookie  string // "" = no cookie at the gate
		events  []event
		outcome Outcome
		err     error  // what the last step's Err must wrap
		status  string // Watch.Status at the end
		named   string // Watch.NamedNode at the end
	}{
		// §11.1, ok.
		{"ok", first, "", okTail, OutcomeOK, nil, StatusOK, ""},
		{"ok, cookie at the gate", first, "c0ok", okTail, OutcomeOK, nil, StatusOK, ""},
		// §11.2, §11.3, §11.4: wrong cookie.
		{"wrong cookie cut at the gate", first, "c0ok",
			[]event{nd(bodyOK), nd(bodyChallengeWrong), clDrop(bodyReplyWrong)}, OutcomeAuthFailed, ErrDigest, StatusOK, ""},
		{"wrong cookie, no cookie at the gate", first, "",
			[]event{nd(bodyOK), nd(bodyChallengeWrong), cl(bodyReplyWrong), ndEOF}, OutcomeAuthFailed, ErrNodeClosed, StatusOK, ""},
		{"right client digest, gate holds another cookie", first, "wrongcookie",
			[]event{nd(bodyOK), nd(bodyChallenge), clDrop(bodyReply)}, OutcomeAuthFailed, ErrDigest, StatusOK, ""},
		// §11.3 refusals.
		{"not_allowed", first, "c0ok", []event{nd(bodyNotAllowed)}, OutcomeRefused, nil, StatusNotAllowed, ""},
		{"nok", first, "", []event{nd(bodyNOK)}, OutcomeRefused, nil, StatusNOK, ""},
		// §11.3 alive.
		{"alive then strue", first, "c0ok",
			[]event{nd(bodyAlive), cl(bodyTrue), nd(bodyChallenge), cl(bodyReply), nd(bodyAck)}, OutcomeOK, nil, StatusAlive, ""},
		{"alive then sfalse, client closes", first, "",
			[]event{nd(bodyAlive), cl(bodyFalse), clEOF}, OutcomeAborted, ErrClientClosed, StatusAlive, ""},
		{"alive then sfalse, node closes", first, "",
			[]event{nd(bodyAlive), cl(bodyFalse), ndEOF}, OutcomeAborted, ErrNodeClosed, StatusAlive, ""},
		{"ok_simultaneous", first, "c0ok",
			[]event{nd(bodyOKSimultaneous), nd(bodyChallenge), cl(bodyReply), nd(bodyAck)}, OutcomeOK, nil, StatusOKSimultaneous, ""},
		// §2.11, §11.3: dynamic name.
		{"named:", captureDynamic, "c0ok",
			[]event{nd(bodyNamed), nd(bodyChallengeNamed), cl(bodyReply), nd(bodyAck)}, OutcomeOK, nil, StatusNamed, "34QSNYVVREQKX@127.0.0.1"},
		{"named:, refused", captureDynamic, "", []event{nd(bodyNotAllowed)}, OutcomeRefused, nil, StatusNotAllowed, ""},
		// §2.4, §2.7: legacy name frames.
		{"legacy n with HANDSHAKE_23, N challenge, complement", firstLegacyH23, "c0ok",
			[]event{nd(bodyOK), nd(bodyChallenge), cl(bodyComplement), cl(bodyReply), nd(bodyAck)}, OutcomeOK, nil, StatusOK, ""},
		{"legacy n without HANDSHAKE_23, legacy challenge", ScannerProbe, "c0ok",
			[]event{nd(bodyOK), nd(legacyChallenge(2391745319, "a@127.0.0.1")), cl(bodyReply), nd(bodyAck)}, OutcomeOK, nil, StatusOK, ""},
		{"legacy challenge, wrong digest", ScannerProbe, "c0ok",
			[]event{nd(bodyOK), nd(legacyChallenge(2387438841, "a@127.0.0.1")), clDrop(bodyReply)}, OutcomeAuthFailed, ErrDigest, StatusOK, ""},
		{"legacy n without HANDSHAKE_23, N challenge, complement", ScannerProbe, "",
			[]event{nd(bodyOK), nd(bodyChallenge), cl(bodyComplement), cl(bodyReply), nd(bodyAck)}, OutcomeOK, nil, StatusOK, ""},
		{"legacy n closed at once (25.2.3)", firstLegacyH23, "", []event{ndEOF}, OutcomeAborted, ErrNodeClosed, "", ""},

		// Out of order.
		{"client speaks before the status", first, "", []event{clDrop(bodyReply)}, OutcomeProtocolError, ErrOrder, "", ""},
		{"challenge before the status", first, "", []event{ndDrop(bodyChallenge)}, OutcomeProtocolError, ErrOrder, "", ""},
		{"two statuses", first, "", []event{nd(bodyOK), ndDrop(bodyOK)}, OutcomeProtocolError, ErrOrder, StatusOK, ""},
		{"reply before the challenge", first, "", []event{nd(bodyOK), clDrop(bodyReply)}, OutcomeProtocolError, ErrOrder, StatusOK, ""},
		{"ack before the reply", first, "", []event{nd(bodyOK), nd(bodyChallenge), ndDrop(bodyAck)}, OutcomeProtocolError, ErrOrder, StatusOK, ""},
		{"two challenges", first, "", []event{nd(bodyOK), nd(bodyChallenge), ndDrop(bodyChallenge)}, OutcomeProtocolError, ErrOrder, StatusOK, ""},
		{"client frame after the reply", first, "", []event{nd(bodyOK), nd(bodyChallenge), cl(bodyReply), clDrop(bodyReply)}, OutcomeProtocolError, ErrOrder, StatusOK, ""},
		{"strue without alive", first, "", []event{nd(bodyOK), clDrop(bodyTrue)}, OutcomeProtocolError, ErrOrder, StatusOK, ""},
		{"challenge before the answer to alive", first, "", []event{nd(bodyAlive), ndDrop(bodyChallenge)}, OutcomeProtocolError, ErrOrder, StatusAlive, ""},
		{"reply as the answer to alive", first, "", []event{nd(bodyAlive), clDrop(bodyReply)}, OutcomeProtocolError, ErrOrder, StatusAlive, ""},
		{"challenge after sfalse", first, "", []event{nd(bodyAlive), cl(bodyFalse), ndDrop(bodyChallenge)}, OutcomeProtocolError, ErrOrder, StatusAlive, ""},
		{"complement from an N client", first, "", []event{nd(bodyOK), nd(bodyChallenge), clDrop(bodyComplement)}, OutcomeProtocolError, ErrOrder, StatusOK, ""},
		{"second first message", first, "", []event{nd(bodyOK), nd(bodyChallenge), clDrop(bodyFirst)}, OutcomeProtocolError, ErrOrder, StatusOK, ""},
		{"reply without the complement", firstLegacyH23, "", []event{nd(bodyOK), nd(bodyChallenge), clDrop(bodyReply)}, OutcomeProtocolError, ErrOrder, StatusOK, ""},
		{"legacy challenge to an N client", first, "", []event{nd(bodyOK), ndDrop(legacyChallenge(1, "a@h"))}, OutcomeProtocolError, ErrFrameTag, StatusOK, ""},
		{"legacy challenge to an n client with HANDSHAKE_23", firstLegacyH23, "", []event{nd(bodyOK), ndDrop(legacyChallenge(1, "a@h"))}, OutcomeProtocolError, ErrFrameTag, StatusOK, ""},
		{"named: to a static name", first, "", []event{ndDrop(bodyNamed)}, OutcomeProtocolError, ErrStatusWord, "", ""},
		{"ok to a dynamic-name request", captureDynamic, "", []event{ndDrop(bodyOK)}, OutcomeProtocolError, ErrStatusWord, "", ""},
		{"alive to a dynamic-name request", captureDynamic, "", []event{ndDrop(bodyAlive)}, OutcomeProtocolError, ErrStatusWord, "", ""},
		{"unknown status word", first, "", []event{ndDrop([]byte("sbusy"))}, OutcomeProtocolError, ErrStatusWord, "", ""},
		{"status word strue from the node", first, "", []event{ndDrop(bodyTrue)}, OutcomeProtocolError, ErrStatusWord, "", ""},
		{"alive answered with ok", first, "", []event{nd(bodyAlive), clDrop(bodyOK)}, OutcomeProtocolError, ErrStatusWord, StatusAlive, ""},
		{"named: with a bad name", captureDynamic, "", []event{ndDrop(mustAppend(AppendStatus(nil, Status{Text: []byte(StatusNamed), Name: []byte("noat")})))}, OutcomeProtocolError, ErrName, "", ""},

		// Unknown tags and wrong sizes.
		{"unknown client tag", first, "", []event{nd(bodyAlive), clDrop([]byte("x"))}, OutcomeProtocolError, ErrFrameTag, StatusAlive, ""},
		{"data frame from the client", first, "", []event{nd(bodyOK), nd(bodyChallenge), clDrop([]byte{0x83, 0x44})}, OutcomeProtocolError, ErrFrameTag, StatusOK, ""},
		{"TLS record from the node", first, "", []event{ndDrop([]byte{0x16, 3, 1})}, OutcomeProtocolError, ErrFrameTag, "", ""},
		{"empty client frame", first, "", []event{nd(bodyOK), nd(bodyChallenge), clDrop(nil)}, OutcomeProtocolError, ErrFrameSize, StatusOK, ""},
		{"empty node frame", first, "", []event{ndDrop([]byte{})}, OutcomeProtocolError, ErrFrameSize, "", ""},
		{"status tag alone", first, "", []event{ndDrop([]byte("s"))}, OutcomeProtocolError, ErrStatus, "", ""},
		{"reply one byte short", first, "", []event{nd(bodyOK), nd(bodyChallenge), clDrop(bodyReply[:20])}, OutcomeProtocolError, ErrFrameSize, StatusOK, ""},
		{"reply one byte long", first, "c0ok", []event{nd(bodyOK), nd(bodyChallenge), clDrop(append(bytes.Clone(bodyReply), 0))}, OutcomeProtocolError, ErrFrameSize, StatusOK, ""},
		{"ack one byte long", first, "", []event{nd(bodyOK), nd(bodyChallenge), cl(bodyReply), ndDrop(append(bytes.Clone(bodyAck), 0))}, OutcomeProtocolError, ErrFrameSize, StatusOK, ""},
		{"complement one byte short", firstLegacyH23, "", []event{nd(bodyOK), nd(bodyChallenge), clDrop(bodyComplement[:8])}, OutcomeProtocolError, ErrFrameSize, StatusOK, ""},
		{"challenge name cut", first, "", []event{nd(bodyOK), ndDrop(bodyChallenge[:25])}, OutcomeProtocolError, ErrFrameSize, StatusOK, ""},

		// Closes and the clock.
		{"client closes after the status", first, "", []event{nd(bodyOK), clEOF}, OutcomeAborted, ErrClientClosed, StatusOK, ""},
		{"node closes before its challenge", first, "", []event{nd(bodyOK), ndEOF}, OutcomeAborted, ErrNodeClosed, StatusOK, ""},
		{"node closes after its challenge", first, "", []event{nd(bodyOK), nd(bodyChallenge), ndEOF}, OutcomeAborted, ErrNodeClosed, StatusOK, ""},
		{"client closes after its reply", first, "", []event{nd(bodyOK), nd(bodyChallenge), cl(bodyReply), clEOF}, OutcomeAborted, ErrClientClosed, StatusOK, ""},
		{"timeout waiting for the ack", first, "", []event{nd(bodyOK), nd(bodyChallenge), cl(bodyReply), timeout}, OutcomeTimeout, ErrSetupTimeout, StatusOK, ""},
		{"timeout before anything", first, "", []event{timeout}, OutcomeTimeout, ErrSetupTimeout, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Parse(tt.first)
			if err != nil {
				t.Fatalf("first message: %v", err)
			}
			var cookie []byte
			if tt.cookie != "" {
				cookie = []byte(tt.cookie)
			}
			w := NewWatch(h, cookie)
			var last Step
			for i, e := range tt.events {
				last = e.apply(w)
				if last.Forward != e.fwd {
					t.Fatalf("event %d (%c %q): Forward %v, want %v (step %+v)", i, e.kind, e.body, last.Forward, e.fwd, last)
				}
				if end := i == len(tt.events)-1; last.Done() != end {
					t.Fatalf("event %d (%c %q): step %+v, done %v", i, e.kind, e.body, last, last.Done())
				}
			}
			if last.Outcome != tt.outcome || w.Outcome() != tt.outcome || !w.Done() {
				t.Fatalf("outcome %v (watch %v), want %v; err %v", last.Outcome, w.Outcome(), tt.outcome, last.Err)
			}
			if tt.err == nil && last.Err != nil || tt.err != nil && !errors.Is(last.Err, tt.err) {
				t.Fatalf("err %v, want %v", last.Err, tt.err)
			}
			if w.Status() != tt.status {
				t.Errorf("status %q, want %q", w.Status(), tt.status)
			}
			if string(w.NamedNode()) != tt.named {
				t.Errorf("named node %q, want %q", w.NamedNode(), tt.named)
			}
			// Once over, nothing changes it.
			for _, e := range []event{cl(bodyReply), nd(bodyAck), nd(bodyOK), clEOF, ndEOF, timeout} {
				if s := e.apply(w); s.Forward || s.Outcome != tt.outcome || s.Err != last.Err {
					t.Fatalf("after the outcome, %c gave %+v", e.kind, s)
				}
			}
			if s := w.FrameError(ErrFrameTooLong); s.Outcome != tt.outcome {
				t.Fatalf("after the outcome, FrameError gave %+v", s)
			}
		})
	}
}

func TestWatchChallenge(t *testing.T) {
	h, _ := Parse(captureHidden)
	w := NewWatch(h, nil)
	if _, ok := w.Challenge(); ok {
		t.Fatal("challenge known before the node sent it")
	}
	w.FromNode(bodyOK)
	w.FromNode(bodyChallenge)
	if c, ok := w.Challenge(); !ok || c != 2391745319 {
		t.Fatalf("challenge %d, %v", c, ok)
	}
}

// TestWatchKeepsNoBody reuses one buffer for every frame, as a proxy does:
// what the Watch exposes must not change when the buffer does.
func TestWatchKeepsNoBody(t *testing.T) {
	h, _ := Parse(captureDynamic)
	w := NewWatch(h, []byte("c0ok"))
	buf := make([]byte, 64)
	feed := func(from func([]byte) Step, body []byte) Step {
		b := append(buf[:0], body...)
		s := from(b)
		clear(buf)
		return s
	}
	feed(w.FromNode, bodyNamed)
	feed(w.FromNode, bodyChallengeNamed)
	feed(w.FromClient, bodyReply)
	if s := feed(w.FromNode, bodyAck); s.Outcome != OutcomeOK {
		t.Fatalf("step %+v", s)
	}
	if string(w.NamedNode()) != "34QSNYVVREQKX@127.0.0.1" || w.Status() != StatusNamed {
		t.Fatalf("named %q status %q", w.NamedNode(), w.Status())
	}
}

func TestNewWatchBadFirst(t *testing.T) {
	w := NewWatch(Handshake{}, nil)
	if !w.Done() {
		t.Fatal("a watch over no first message is not over")
	}
	if s := w.FromNode(bodyOK); s.Forward || s.Outcome != OutcomeProtocolError || !errors.Is(s.Err, ErrTag) {
		t.Fatalf("step %+v", s)
	}
}

// TestWatchStream drives the Watch the way a proxy does, through SplitFrame
// over whole reads, in plain TCP and in TLS framing (§12.1): the node's status
// and challenge in one read, and its 'a' followed by node data in another.
// What follows 'a' must be left over, byte for byte, for raw forwarding.
func TestWatchStream(t *testing.T) {
	for _, hdr := range []int{HeaderTCP, HeaderTLS} {
		frame := func(bodies ...[]byte) (b []byte) {
			for _, body := range bodies {
				b = mustAppend(AppendFrame(b, hdr, body))
			}
			return b
		}
		data := []byte{0, 0, 0, 0x4d, 0x83, 0x44, 1, 2, 3}
		h, _ := Parse(captureHidden)
		w := NewWatch(h, []byte("c0ok"))
		var rest []byte
		for _, rd := range []struct {
			fromNode bool
			buf      []byte
		}{
			{true, frame(bodyOK, bodyChallenge)},
			{false, frame(bodyReply)},
			{true, append(frame(bodyAck), data...)},
		} {
			buf := rd.buf
			for !w.Done() {
				body, n, err := SplitFrame(buf, hdr, MaxHandshakeFrame)
				if err != nil || n == 0 {
					t.Fatalf("hdr %d: split %q: %d, %v", hdr, buf, n, err)
				}
				var s Step
				if rd.fromNode {
					s = w.FromNode(body)
				} else {
					s = w.FromClient(body)
				}
				if !s.Forward {
					t.Fatalf("hdr %d: step %+v", hdr, s)
				}
				buf = buf[n:]
				if len(buf) == 0 {
					break
				}
			}
			rest = buf
		}
		if w.Outcome() != OutcomeOK || !bytes.Equal(rest, data) {
			t.Fatalf("hdr %d: outcome %v, left over %x", hdr, w.Outcome(), rest)
		}
	}

	// A frame over 1 KiB ends the watch from its header alone.
	h, _ := Parse(captureHidden)
	w := NewWatch(h, nil)
	w.FromNode(bodyOK)
	_, _, err := SplitFrame([]byte{0x04, 0x01}, HeaderTCP, MaxHandshakeFrame)
	if s := w.FrameError(err); s.Forward || s.Outcome != OutcomeProtocolError || !errors.Is(s.Err, ErrFrameTooLong) {
		t.Fatalf("oversized: %+v", s)
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{
		OutcomePending:       "pending",
		OutcomeOK:            "ok",
		OutcomeAuthFailed:    "auth_failed",
		OutcomeRefused:       "refused",
		OutcomeAborted:       "aborted",
		OutcomeTimeout:       "timeout",
		OutcomeProtocolError: "protocol_error",
		Outcome(200):         "outcome(200)",
	} {
		if got := o.String(); got != want {
			t.Errorf("Outcome(%d).String() = %q, want %q", o, got, want)
		}
	}
}

// TestWatchAllocs holds the per-connection cost: the Watch itself is the only
// allocation of a whole handshake, digest check included.
func TestWatchAllocs(t *testing.T) {
	h, _ := Parse(captureHidden)
	cookie := []byte("c0ok")
	n := testing.AllocsPerRun(100, func() {
		w := NewWatch(h, cookie)
		w.FromNode(bodyOK)
		w.FromNode(bodyChallenge)
		w.FromClient(bodyReply)
		if s := w.FromNode(bodyAck); s.Outcome != OutcomeOK {
			t.Fatalf("step %+v", s)
		}
	})
	if n > 1 {
		t.Errorf("a whole handshake allocates %.0f times, want at most 1", n)
	}
}

func BenchmarkWatch(b *testing.B) {
	h, _ := Parse(captureHidden)
	cookie := []byte("c0ok")
	b.ReportAllocs()
	for b.Loop() {
		w := NewWatch(h, cookie)
		w.FromNode(bodyOK)
		w.FromNode(bodyChallenge)
		w.FromClient(bodyReply)
		if s := w.FromNode(bodyAck); s.Outcome != OutcomeOK {
			b.Fatalf("step %+v", s)
		}
	}
}
