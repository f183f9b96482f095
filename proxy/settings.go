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
	DefaultSetupTimeout     = 10 * time.Second
)

// Settings is the part of a gate's configuration that a reload may change.
// A Settings value is never modified once handed to a Gate.
type Settings struct {
	Rules            *policy.Rules
	HandshakeTimeout time.Duration // zero: DefaultHandshakeTimeout
	DialTimeout      time.Duration // zero: DefaultDialTimeout
	// SetupTimeout bounds the whole handshake, from accept to the node's
	// 'a' (design.md, The handshake watch); zero: DefaultSetupTimeout.
	SetupTimeout      time.Duration
	Reset             bool // deny with RST instead of FIN
	MaxConns          int  // <= 0: no cap
	MaxConnsPerSource int  // <= 0: no cap
	Rate              rate.Limit
	Burst             int
	DrainTimeout      time.Duration // after shutdown begins, how long live connections may go on
	// LogLevel is the least severe level the gate logs; it replaces the
	// level of Config.Log. Zero is zerolog.DebugLevel: every line.
	LogLevel zerolog.Level
	// Cookie is the node's cookie. When set, the gate checks the digest of
	// each client's challenge reply itself and cuts a wrong one before the
	// node sees it, so the node logs nothing (erlang-dist-facts.md §11.4).
	// Nil: the node alone judges. It is a secret: never logged or printed.
	Cookie []byte
	// Ban says when a source that keeps failing is banned (design.md,
	// Bans). The zero value bans nothing.
	Ban policy.BanRules
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

func (s *Settings) setupTimeout() time.Duration {
	if s.SetupTimeout > 0 {
		return s.SetupTimeout
	}
	return DefaultSetupTimeout
}
