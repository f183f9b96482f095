package proxy

import (
	"crypto/tls"
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
	// TLS is what the gate does with TLS (design.md, TLS distribution).
	// It is fixed for the life of a gate: a reload that would change it is
	// refused before it reaches Update, so every connection of a gate is
	// handled the same way.
	TLS TLSMode
	// TLSConfig is the server side for TLSTerminate: certificate, key,
	// minimum version and, with a client CA, RequireAndVerifyClientCert.
	// Nil for the other modes. A connection uses the one of the settings
	// it was accepted under, so a reload with a renewed certificate serves
	// it to new connections while live ones go on. Never modified once
	// handed to a Gate.
	TLSConfig *tls.Config
}

// TLSMode is what a gate does with TLS.
type TLSMode uint8

const (
	// TLSOff: plain TCP distribution only; a TLS record as the first
	// bytes is bad_handshake.
	TLSOff TLSMode = iota
	// TLSTerminate: the gate is the TLS server for -proto_dist inet_tls
	// clients, decides on the handshake inside, and speaks plain TCP
	// distribution to the node (erlang-dist-facts.md §12).
	TLSTerminate
	// TLSPassthrough: the gate reads the ClientHello, decides on the
	// source, the limits and the server name, and forwards the bytes
	// unchanged to a node that runs TLS distribution itself.
	TLSPassthrough
)

// String returns the mode as configured and logged.
func (m TLSMode) String() string {
	switch m {
	case TLSOff:
		return "off"
	case TLSTerminate:
		return "terminate"
	case TLSPassthrough:
		return "passthrough"
	}
	return "unknown"
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
