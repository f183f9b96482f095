package policy

import (
	"fmt"
	"net/netip"

	"github.com/distgate/distgate/wire"
)

// Require names the capability flags a caller must have.
type Require uint8

const (
	// RequireNone checks no flags.
	RequireNone Require = iota
	// RequireOTP25 asks for the OTP 25 mandatory set (or MANDATORY_25_DIGEST).
	RequireOTP25
	// RequireOTP26 also asks for UNLINK_ID and, in 'N' messages, V4_NC.
	RequireOTP26
)

// ParseRequire maps the config words none|otp25|otp26.
func ParseRequire(s string) (Require, error) {
	switch s {
	case "none":
		return RequireNone, nil
	case "otp25":
		return RequireOTP25, nil
	case "otp26":
		return RequireOTP26, nil
	}
	return 0, fmt.Errorf("%q is not one of none, otp25, otp26", s)
}

// String returns the config word for r, and "unknown" for a value that is
// not one of the constants (a Require is a plain number: nothing stops a
// caller from converting any byte to one).
func (r Require) String() string {
	switch r {
	case RequireNone:
		return "none"
	case RequireOTP25:
		return "otp25"
	case RequireOTP26:
		return "otp26"
	}
	return "unknown"
}

// mask returns the flags required of a message with the given tag. A legacy
// 'n' message carries only the low 32 bits; the rest arrive later in the
// complement, which distgate does not read, so only the low word is checked.
func (r Require) mask(tag byte) uint64 {
	var m uint64
	switch r {
	case RequireOTP25:
		m = wire.Mandatory25
	case RequireOTP26:
		m = wire.Mandatory26
	}
	if tag == wire.TagOld {
		m &= 0xffffffff
	}
	return m
}

// Satisfied reports whether a handshake's flags meet the requirement, with
// MANDATORY_25_DIGEST expanded as OTP does.
func (r Require) Satisfied(tag byte, flags uint64) bool {
	m := r.mask(tag)
	return wire.Effective(flags)&m == m
}

// Entry is one allow rule: the sources it covers and, if Names is non-empty,
// the node names it admits from them.
type Entry struct {
	Sources []netip.Prefix // masked prefixes; a bare address is a /32 or /128
	Names   []Glob         // empty: any name
	// Identities, on a gate that terminates TLS, are matched against the
	// verified client certificate's subject CN and its DNS, URI and email
	// SANs; one match admits. Empty: any certificate the gate accepts.
	Identities []Glob
	// SNI, on a passthrough gate, is matched against the ClientHello's
	// server name (the target node's host part). Empty: any.
	SNI []Glob
}

func (e *Entry) coversSource(a netip.Addr) bool {
	for _, p := range e.Sources {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// matchesName reports whether the entry admits this handshake's name. A
// dynamic-name request (NAME_ME) carries only a host, so it can only pass an
// entry that admits any name.
func (e *Entry) matchesName(name []byte, nameMe bool) bool {
	if len(e.Names) == 0 {
		return true
	}
	if nameMe {
		return false
	}
	for _, g := range e.Names {
		if g.Match(name) {
			return true
		}
	}
	return false
}

// matchesIdentity reports whether the entry admits a client whose verified
// certificate carries ids (its subject CN and its DNS, URI and email SANs).
// An entry without identities admits any certificate the gate accepted, and
// a connection without one; an entry with identities needs one of them to
// match one of ids.
func (e *Entry) matchesIdentity(ids []string) bool {
	if len(e.Identities) == 0 {
		return true
	}
	for _, g := range e.Identities {
		for _, id := range ids {
			if g.MatchString(id) {
				return true
			}
		}
	}
	return false
}

// matchesSNI reports whether the entry admits a TLS ClientHello with this
// server name ("" for none): an entry without sni admits any, one with sni
// only a name that one of them matches.
func (e *Entry) matchesSNI(sni string) bool {
	if len(e.SNI) == 0 {
		return true
	}
	if sni == "" {
		return false
	}
	for _, g := range e.SNI {
		if g.MatchString(sni) {
			return true
		}
	}
	return false
}

// Rules is the part of a gate's policy that says who may pass. It is
// immutable once built and safe for concurrent use; a reload builds new Rules.
type Rules struct {
	Allow   []Entry
	Require Require
}

// SourceAllowed reports whether any entry lists a. This is the check made at
// accept time, before a byte is read. An invalid address is never allowed.
func (r *Rules) SourceAllowed(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("") // a zoned address never matches a Prefix
	for i := range r.Allow {
		if r.Allow[i].coversSource(a) {
			return true
		}
	}
	return false
}

// Check decides on a connection from a whose first message has the given tag,
// flags and name, in design order: the source must still be listed (a reload
// may have removed it), then the flags (MissingFlags), then the name against
// the entries that list a (NameNotAllowed). It is CheckAs for a connection
// without a client certificate.
func (r *Rules) Check(a netip.Addr, tag byte, flags uint64, name []byte) Reason {
	return r.CheckAs(a, nil, tag, flags, name)
}

// CheckAs is Check for a client whose verified certificate carries ids
// (TLS terminated at the gate; nil: no certificate). The entry that admits
// must list the source, admit the certificate (IdentityNotAllowed if no
// entry that lists the source does) and admit the name: an identity only
// opens the names of the entries that list it.
func (r *Rules) CheckAs(a netip.Addr, ids []string, tag byte, flags uint64, name []byte) Reason {
	a = a.Unmap().WithZone("")
	if rr := r.CheckIdentity(a, ids); rr != Admitted {
		return rr
	}
	if !r.Require.Satisfied(tag, flags) {
		return MissingFlags
	}
	nameMe := tag == wire.TagNew && flags&wire.FlagNameMe != 0
	for i := range r.Allow {
		e := &r.Allow[i]
		if e.coversSource(a) && e.matchesIdentity(ids) && e.matchesName(name, nameMe) {
			return Admitted
		}
	}
	return NameNotAllowed
}

// CheckIdentity decides, right after a TLS handshake and before the first
// message is read, whether a client from a whose verified certificate
// carries ids may go on: some entry that lists a must admit the
// certificate (design.md, TLS distribution), else IdentityNotAllowed.
func (r *Rules) CheckIdentity(a netip.Addr, ids []string) Reason {
	a = a.Unmap().WithZone("")
	if !r.SourceAllowed(a) {
		return SourceNotAllowed
	}
	for i := range r.Allow {
		e := &r.Allow[i]
		if e.coversSource(a) && e.matchesIdentity(ids) {
			return Admitted
		}
	}
	return IdentityNotAllowed
}

// CheckSNI decides on a connection from a to a passthrough gate whose
// ClientHello named the server sni ("" for none): some entry that lists a
// must admit the name, else NameNotAllowed (the server name is the only
// name a passthrough gate sees: the target node's host part, §12.3). It is
// matched as sent, byte for byte, as node names are: a client sends the
// host part of the node name exactly as written.
func (r *Rules) CheckSNI(a netip.Addr, sni string) Reason {
	a = a.Unmap().WithZone("")
	if !r.SourceAllowed(a) {
		return SourceNotAllowed
	}
	for i := range r.Allow {
		e := &r.Allow[i]
		if e.coversSource(a) && e.matchesSNI(sni) {
			return Admitted
		}
	}
	return NameNotAllowed
}
