package policy

// Reason says why a connection was denied or closed. The zero value is
// Admitted. Reasons are a fixed set, so they are safe as metric label values.
type Reason uint8

// The reasons, in the order the checks run (design: the life of a connection).
const (
	Admitted Reason = iota
	SourceNotAllowed
	Banned
	TooManyConns
	TooManyConnsPerSource
	RateLimited
	TooManyHandshakes
	HandshakeTimeout
	BadHandshake
	TLSFailed
	IdentityNotAllowed
	MissingFlags
	NameNotAllowed
	UpstreamUnreachable
	Revoked
	Shutdown
	numReasons
)

var reasonNames = [numReasons]string{
	Admitted:              "",
	SourceNotAllowed:      "source_not_allowed",
	Banned:                "banned",
	TooManyConns:          "too_many_conns",
	TooManyConnsPerSource: "too_many_conns_per_source",
	RateLimited:           "rate_limited",
	TooManyHandshakes:     "too_many_handshakes",
	HandshakeTimeout:      "handshake_timeout",
	BadHandshake:          "bad_handshake",
	TLSFailed:             "tls_failed",
	IdentityNotAllowed:    "identity_not_allowed",
	MissingFlags:          "missing_flags",
	NameNotAllowed:        "name_not_allowed",
	UpstreamUnreachable:   "upstream_unreachable",
	Revoked:               "revoked",
	Shutdown:              "shutdown",
}

// String returns the reason as logged ("" for Admitted).
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// DenyReasons lists every reason a connection can be denied for before it is
// admitted (Revoked, Shutdown and Banned also when a reload, a drain or a new
// ban comes while it is still being decided), for pre-creating metric series.
func DenyReasons() []Reason {
	return []Reason{SourceNotAllowed, Banned, TooManyConns, TooManyConnsPerSource, RateLimited,
		TooManyHandshakes, HandshakeTimeout, BadHandshake, TLSFailed, IdentityNotAllowed, MissingFlags, NameNotAllowed,
		UpstreamUnreachable, Revoked, Shutdown}
}
