package probe

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/distgate/distgate/wire"
)

const (
	// replyCap is how much of a reply to a first message is kept; an
	// Erlang status is at most a few dozen bytes.
	replyCap = 512
	// linger is how long to keep reading once a reply has begun, to get
	// the rest of a status that arrived in two segments.
	linger = 250 * time.Millisecond
)

// exchanged is an attempt plus the raw reply.
type exchanged struct {
	Attempt
	reply []byte
}

// exchange connects to ap, writes msg, and reads until the peer closes, the
// timeout passes, limit bytes came, or (linger > 0) linger after the first
// byte. If ctx ends before a byte came back, the outcome is error.
func exchange(ctx context.Context, ap netip.AddrPort, msg []byte, limit int, timeout, linger time.Duration) exchanged {
	start := time.Now()
	var x exchanged
	done := func(outcome string, err error) exchanged {
		if ctx.Err() != nil && len(x.reply) == 0 {
			outcome, err = OutcomeError, ctx.Err()
		}
		x.Outcome = outcome
		if err != nil {
			x.Error = err.Error()
		}
		x.Millis = time.Since(start).Milliseconds()
		if len(x.reply) > 0 {
			x.ReplyHex = hex.EncodeToString(x.reply)
			x.Status = replyStatus(x.reply)
		}
		return x
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", ap.String())
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return done(OutcomeRefused, nil)
		case errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
			return done(OutcomeTimeout, nil)
		}
		return done(OutcomeError, err)
	}
	defer c.Close()
	// Cancelling ctx cuts a wait on the peer short.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	deadline := time.Now().Add(timeout)
	_ = c.SetDeadline(deadline)
	if _, err := c.Write(msg); err != nil {
		// Closed or reset before the message went out: nothing came back.
		return done(OutcomeClosed, nil)
	}
	buf := make([]byte, limit)
	for len(x.reply) < limit {
		n, err := c.Read(buf[len(x.reply):])
		x.reply = buf[:len(x.reply)+n]
		if n > 0 && linger > 0 {
			if t := time.Now().Add(linger); t.Before(deadline) {
				deadline = t
				_ = c.SetReadDeadline(deadline)
			}
		}
		if err != nil {
			if len(x.reply) > 0 {
				return done(OutcomeAnswered, nil)
			}
			if isTimeout(err) {
				return done(OutcomeHeld, nil)
			}
			return done(OutcomeClosed, nil) // EOF or reset
		}
	}
	return done(OutcomeAnswered, nil)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// replyStatus returns the status text if b starts with a whole recv_status
// frame (2-byte length, 's', text: erlang-dist-facts.md §2.2), else "".
func replyStatus(b []byte) string {
	if len(b) < 2 {
		return ""
	}
	n := int(b[0])<<8 | int(b[1])
	if len(b) < 2+n {
		return ""
	}
	s, err := wire.ParseStatus(b[2 : 2+n])
	if err != nil {
		return ""
	}
	return string(s.Text)
}
