package proxy

import (
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/distgate/distgate/policy"
)

// Defaults used when a Settings field is zero.
const (
	DefaultHandshakeTimeout = 3 * time.Second
	DefaultDialTimeout      = 2 * time.Second
)

// Settings is the part of a gate's configuration that a reload may change.
// A Settings value is never modified once handed to a Gate.
type Settings struct {
	Rules             *policy.Rules
	HandshakeTimeout  time.Duration // zero: DefaultHandshakeTimeout
	DialTimeout       time.Duration // zero: DefaultDialTimeout
	Reset             bool          // deny with RST instead of FIN
	MaxConns          int           // <= 0: no cap
	MaxConnsPerSource int           // <= 0: no cap
	Rate              rate.Limit
	Burst             int
	DrainTimeout      time.Duration // after shutdown begins, how long live connections may go on
	// LogLevel is the least severe level the gate logs; it replaces the
	// level of Config.Log. Zero is zerolog.DebugLevel: every line.
	LogLevel zerolog.Level
}

func (s *Settings) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (s *Settings) dialTimeout() time.Duration {
	if s.DialTimeout > 0 {
		return s.DialTimeout
	}
	return DefaultDialTimeout
}
