package wire

import (
	"errors"
	"fmt"
	"strconv"
)

// Outcome is how a watched handshake ended (design.md "The handshake watch").
// The zero value, OutcomePending, means it has not ended yet.
type Outcome uint8

// The outcomes. String gives the word that logs and metrics carry.
const (
	OutcomePending       Outcome = iota // no outcome yet
	OutcomeOK                           // the node's 'a' was seen
	OutcomeAuthFailed                   // wrong digest in 'r', or the node closed after 'r' without 'a'
	OutcomeRefused                      // the node's status was not_allowed or nok
	OutcomeAborted                      // a side closed before an outcome
	OutcomeTimeout                      // the proxy's setup timer ran out (Watch.Timeout)
	OutcomeProtocolError                // a frame the handshake does not allow
)

var outcomeWords = [...]string{
	OutcomePending:       "pending",
	OutcomeOK:            "ok",
	OutcomeAuthFailed:    "auth_failed",
	OutcomeRefused:       "refused",
	OutcomeAborted:       "aborted",
	OutcomeTimeout:       "timeout",
	OutcomeProtocolError: "protocol_error",
}

// String returns ok, auth_failed, refused, aborted, timeout or protocol_error
// (pending for the zero value).
func (o Outcome) String() string {
	if int(o) < len(outcomeWords) {
		return outcomeWords[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Errors a Step carries to say why a handshake ended. Decoding errors
// (ErrFrameTag, ErrFrameSize, ErrStatus, ErrName, ...) are wrapped as they are.
var (
	ErrOrder        = errors.New("wire: handshake frame out of order")
	ErrStatusWord   = errors.New("wire: status the handshake does not allow here")
	ErrDigest       = errors.New("wire: challenge reply digest does not match the cookie")
	ErrClientClosed = errors.New("wire: client closed during the handshake")
	ErrNodeClosed   = errors.New("wire: node closed during the handshake")
	ErrSetupTimeout = errors.New("wire: handshake not finished in time")
)

// Step is what Watch decides about one event.
type Step struct {
	// Forward says whether to write the frame just fed to the other side.
	// It is true for every frame accepted while the watch goes on, for the
	// node's 'a' (outcome ok) and for the node's refusing status (outcome
	// refused: the client is told before both sides close). It is false for
	// a frame that ends the watch otherwise: a client 'r' with a wrong digest
	// must not reach the node (§11.4).
	Forward bool
	// Outcome is OutcomePending while the watch goes on. Any other value
	// ends it: ok hands the connection over to plain forwarding (whatever
	// was read past 'a' included, §11.6); anything else closes both sides.
	Outcome Outcome
	// Err says why, for every outcome but ok and refused.
	Err error
}

// Done reports whether the step ended the watch.
func (s Step) Done() bool { return s.Outcome != OutcomePending }

// phase is where the handshake stands. The handshake is lock-step apart from
// the node's status and challenge, which come back to back, so one phase
// covers both directions: each says whose frame is due and which tags it may
// carry (§11.6: decide by tag, not by counting frames).
type phase uint8

const (
	phStatus     phase = iota // the node's status is due
	phAlive                   // the node said alive: the client's strue/sfalse is due
	phFalse                   // the client said sfalse: only a close may follow
	phChallenge               // the node's challenge is due
	phComplement              // the client's 'c' is due ('n' client, 'N' challenge)
	phReply                   // the client's 'r' is due
	phAck                     // the node's 'a' is due
	phDone                    // an outcome was given
)

var phaseWords = [...]string{
	phStatus:     "before the node's status",
	phAlive:      "while the node waits for the answer to alive",
	phFalse:      "after the client's sfalse",
	phChallenge:  "before the node's challenge",
	phComplement: "while the node waits for the complement",
	phReply:      "while the node waits for the challenge reply",
	phAck:        "while the client waits for the challenge ack",
	phDone:       "after the outcome",
}

// Watch follows one handshake past its first message, frame by frame in both
// directions, to its outcome (erlang-dist-facts.md §11.6; design.md "The
// handshake watch"). The caller splits each direction into frames
// (SplitFrame) and feeds each body to FromClient or FromNode before it
// forwards the frame, and reports a close with ClientClosed or NodeClosed.
//
// Feeding a frame before forwarding it is what makes one Watch right for both
// directions: a side only answers what it has received, so its answer cannot
// reach the Watch before the frame it answers. A Watch is not safe for
// concurrent use; the two directions must take turns (a mutex will do).
//
// Once a step has an outcome, the watch is over: every later call returns
// that outcome again, with Forward false, and changes nothing. After ok the
// caller stops feeding and forwards raw bytes.
//
// The methods do not allocate while the handshake goes well; they never keep
// the bodies they are given.
type Watch struct {
	cookie    []byte
	clientTag byte // tag of the first message
	clientH23 bool // the first message had HANDSHAKE_23
	nameMe    bool // the first message asked for a dynamic name
	phase     phase
	end       Step   // the outcome, once phase is phDone; Forward false
	status    string // the node's status word, one of the Status constants
	challenge uint32 // the node's challenge, once hasChal
	hasChal   bool
	namedLen  uint8
	named     [MaxNameLen]byte // the name granted by named:
}

// NewWatch starts watching a handshake whose first message was first (as
// Parse returned it; NewWatch keeps none of its slices). With a cookie, the
// client's 'r' digest is checked at the gate and a wrong one ends the watch
// before the frame reaches the node; with a nil or empty cookie the node
// alone judges it. The cookie is kept, not copied: it must not change while
// the watch runs.
func NewWatch(first Handshake, cookie []byte) *Watch {
	w := &Watch{
		clientTag: first.Tag,
		clientH23: first.Flags&FlagHandshake23 != 0,
		nameMe:    first.NameMe(),
	}
	if len(cookie) > 0 {
		w.cookie = cookie
	}
	if first.Tag != TagNew && first.Tag != TagOld {
		w.finish(OutcomeProtocolError, fmt.Errorf("first message: %w", ErrTag), false)
	}
	return w
}

// Outcome returns the outcome so far (OutcomePending while the watch goes on).
func (w *Watch) Outcome() Outcome { return w.end.Outcome }

// Done reports whether the watch has an outcome.
func (w *Watch) Done() bool { return w.phase == phDone }

// Status returns the last status word the node sent (StatusOK,
// StatusNotAllowed, ...; StatusNamed for a named: grant), or "" before its
// status. When the outcome is refused it is the refusal: not_allowed or nok.
func (w *Watch) Status() string { return w.status }

// NamedNode returns the node name the node granted with named: to a client
// that asked for a dynamic name (its first message carried only a host), or
// nil. It is the client's real node name, for logs. The slice points into the
// Watch and must not be modified.
func (w *Watch) NamedNode() []byte {
	if w.namedLen == 0 {
		return nil
	}
	return w.named[:w.namedLen]
}

// Challenge returns the node's challenge, the number the client's 'r' digest
// is made from (§11.2), once the node's challenge frame was seen.
func (w *Watch) Challenge() (uint32, bool) { return w.challenge, w.hasChal }

// FromClient judges one whole frame body from the client, after the first
// message: strue/sfalse after alive, 'c' after an 'N' challenge to an 'n'
// client, then 'r'. Nothing else from the client is valid, and nothing at all
// after 'r' until the node's 'a' (the initiator waits, §11.1).
func (w *Watch) FromClient(body []byte) Step {
	if w.phase == phDone {
		return w.end
	}
	if len(body) == 0 {
		return w.fail("client", fmt.Errorf("%w: empty frame", ErrFrameSize))
	}
	tag := body[0]
	switch {
	case w.phase == phAlive && tag == TagStatus:
		s, err := ParseStatus(body)
		if err != nil {
			return w.fail("client", err)
		}
		switch {
		case s.Is(StatusTrue):
			w.phase = phChallenge
		case s.Is(StatusFalse):
			// The client gives up (it has no pending attempt of its own);
			// both sides close next, which ends the watch as aborted.
			w.phase = phFalse
		default:
			return w.fail("client", fmt.Errorf("%w: %q answers alive", ErrStatusWord, s.Text))
		}
		return Step{Forward: true}
	case w.phase == phComplement && tag == TagComplement:
		if _, err := ParseComplement(body); err != nil {
			return w.fail("client", err)
		}
		w.phase = phReply
		return Step{Forward: true}
	case w.phase == phReply && tag == TagReply:
		r, err := ParseReply(body)
		if err != nil {
			return w.fail("client", err)
		}
		if w.cookie != nil && !CheckDigest(w.cookie, w.challenge, r.Digest) {
			return w.finish(OutcomeAuthFailed, ErrDigest, false)
		}
		w.phase = phAck
		return Step{Forward: true}
	}
	return w.unexpected("client", tag, "Nncsr")
}

// FromNode judges one whole frame body from the node: its status, then its
// challenge, then 'a'. not_allowed and nok end the watch as refused (the
// frame is still forwarded, so the client learns it is refused); alive,
// ok, ok_simultaneous and named: go on. named: is valid only when the client
// asked for a dynamic name, and is then the only go-on status, as OTP's
// initiator requires; a legacy 'n' challenge is valid only for an 'n' client
// without HANDSHAKE_23 (§2.7).
func (w *Watch) FromNode(body []byte) Step {
	if w.phase == phDone {
		return w.end
	}
	if len(body) == 0 {
		return w.fail("node", fmt.Errorf("%w: empty frame", ErrFrameSize))
	}
	tag := body[0]
	switch {
	case w.phase == phStatus && tag == TagStatus:
		return w.nodeStatus(body)
	case w.phase == phChallenge && (tag == TagNew || tag == TagOld):
		c, err := ParseChallenge(body)
		if err != nil {
			return w.fail("node", err)
		}
		if c.Tag == TagOld && (w.clientTag != TagOld || w.clientH23) {
			return w.fail("node", fmt.Errorf("%w: legacy 'n' challenge to a client that speaks the 'N' handshake", ErrFrameTag))
		}
		w.challenge, w.hasChal = c.Challenge, true
		if w.clientTag == TagOld && c.Tag == TagNew {
			w.phase = phComplement
		} else {
			w.phase = phReply
		}
		return Step{Forward: true}
	case w.phase == phAck && tag == TagAck:
		if _, err := ParseAck(body); err != nil {
			return w.fail("node", err)
		}
		return w.finish(OutcomeOK, nil, true)
	}
	return w.unexpected("node", tag, "sNna")
}

func (w *Watch) nodeStatus(body []byte) Step {
	s, err := ParseStatus(body)
	if err != nil {
		return w.fail("node", err)
	}
	// The words are kept as the package's constants, not as slices of body,
	// so Status stays valid after the caller reuses its buffer.
	switch {
	case s.Is(StatusNotAllowed):
		w.status = StatusNotAllowed
		return w.finish(OutcomeRefused, nil, true)
	case s.Is(StatusNOK):
		w.status = StatusNOK
		return w.finish(OutcomeRefused, nil, true)
	case s.Is(StatusNamed):
		if !w.nameMe {
			return w.fail("node", fmt.Errorf("%w: named: to a client that did not ask for a name", ErrStatusWord))
		}
		if err := checkName(s.Name, false); err != nil {
			return w.fail("node", fmt.Errorf("named: %w", err))
		}
		w.status = StatusNamed
		w.namedLen = uint8(copy(w.named[:], s.Name))
		w.phase = phChallenge
		return Step{Forward: true}
	case w.nameMe:
		// dist_util recv_status: a client that asked for a name shuts down
		// on anything but named: and not_allowed.
		return w.fail("node", fmt.Errorf("%w: %q to a client that asked for a name", ErrStatusWord, s.Text))
	case s.Is(StatusOK):
		w.status = StatusOK
		w.phase = phChallenge
	case s.Is(StatusOKSimultaneous):
		w.status = StatusOKSimultaneous
		w.phase = phChallenge
	case s.Is(StatusAlive):
		w.status = StatusAlive
		w.phase = phAlive
	default:
		return w.fail("node", fmt.Errorf("%w: %q", ErrStatusWord, s.Text))
	}
	return Step{Forward: true}
}

// ClientClosed reports that the client's side ended (EOF or a read error)
// before an outcome: aborted.
func (w *Watch) ClientClosed() Step {
	if w.phase == phDone {
		return w.end
	}
	return w.finish(OutcomeAborted, ErrClientClosed, false)
}

// NodeClosed reports that the node's side ended (EOF or a read error) before
// an outcome. After the client's 'r' and before 'a' that is how the node
// says the digest was wrong (§11.3), so the outcome is auth_failed; earlier it
// is aborted.
func (w *Watch) NodeClosed() Step {
	if w.phase == phDone {
		return w.end
	}
	if w.phase == phAck {
		return w.finish(OutcomeAuthFailed, ErrNodeClosed, false)
	}
	return w.finish(OutcomeAborted, ErrNodeClosed, false)
}

// Timeout ends the watch as timeout, when the caller's setup timer runs out
// before an outcome. The clock is the caller's; Watch keeps none.
func (w *Watch) Timeout() Step {
	if w.phase == phDone {
		return w.end
	}
	return w.finish(OutcomeTimeout, ErrSetupTimeout, false)
}

// FrameError ends the watch as protocol_error for a frame that could not be
// cut out of the stream, such as SplitFrame's ErrFrameTooLong (design.md: any
// frame over 1 KiB).
func (w *Watch) FrameError(err error) Step {
	if w.phase == phDone {
		return w.end
	}
	return w.finish(OutcomeProtocolError, err, false)
}

func (w *Watch) finish(o Outcome, err error, forward bool) Step {
	w.phase = phDone
	w.end = Step{Outcome: o, Err: err}
	return Step{Forward: forward, Outcome: o, Err: err}
}

func (w *Watch) fail(side string, err error) Step {
	return w.finish(OutcomeProtocolError, fmt.Errorf("%s frame: %w", side, err), false)
}

// unexpected ends the watch for a frame whose tag is not due now: out of
// order if the side may send that tag at some point, an unknown tag if not.
// The tag is quoted, so a hostile byte cannot reach a log line raw.
func (w *Watch) unexpected(side string, tag byte, tags string) Step {
	for i := 0; i < len(tags); i++ {
		if tags[i] == tag {
			return w.fail(side, fmt.Errorf("%w: %q %s", ErrOrder, tag, phaseWords[w.phase]))
		}
	}
	return w.fail(side, fmt.Errorf("%w: %q", ErrFrameTag, tag))
}
