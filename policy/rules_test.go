package policy

import (
	"net/netip"
	"testing"

	"github.com/distgate/distgate/wire"
)

// Flags from real first messages (see wire/handshake_test.go).
const (
	hiddenFlags  = wire.DefaultHiddenFlags // OTP 25.2.3 hidden node, 'N'
	dynamicFlags = 0xF07DF7FBC             // the same with NAME_ME, 'N'
	scannerFlags = 0x0003499C              // the scanner probe, 'n'
)

func addr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func entry(t testing.TB, sources []string, names ...string) Entry {
	t.Helper()
	var e Entry
	for _, s := range sources {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		e.Sources = append(e.Sources, p.Masked())
	}
	for _, n := range names {
		e.Names = append(e.Names, mustGlob(t, n))
	}
	return e
}

func TestSourceAllowed(t *testing.T) {
	r := &Rules{Allow: []Entry{
		entry(t, []string{"127.0.0.0/8"}),
		entry(t, []string{"::1/128", "2001:db8::/32"}, "a@*"),
		entry(t, []string{"fe80::/10"}),
	}}
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.0.0.2", true},
		{"127.255.255.255", true},
		{"128.0.0.1", false},
		{"10.0.0.1", false},
		{"0.0.0.0", false},
		{"::ffff:127.0.0.2", true}, // IPv4-mapped matches the IPv4 prefix
		{"::ffff:10.0.0.1", false},
		{"::1", true},
		{"::2", false},
		{"2001:db8::1", true},
		{"2001:db8:ffff::1", true},
		{"2001:db9::1", false},
		{"::", false},
		{"fe80::1", true},
		{"fe80::1%eth0", true}, // a zone does not hide a listed source
		{"fe80::1%2", true},
	}
	for _, tt := range tests {
		if got := r.SourceAllowed(addr(t, tt.addr)); got != tt.want {
			t.Errorf("SourceAllowed(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if r.SourceAllowed(netip.Addr{}) {
		t.Error("the invalid address is allowed")
	}
	if (&Rules{}).SourceAllowed(addr(t, "127.0.0.1")) {
		t.Error("empty rules allow a source; deny must be the default")
	}
	// An IPv4 address does not match an IPv6 prefix, however written.
	r6 := &Rules{Allow: []Entry{entry(t, []string{"::/0"})}}
	if r6.SourceAllowed(addr(t, "127.0.0.1")) || r6.SourceAllowed(addr(t, "::ffff:127.0.0.1")) {
		t.Error("::/0 allows an IPv4 source")
	}
	if !r6.SourceAllowed(addr(t, "2001:db8::1")) {
		t.Error("::/0 does not allow an IPv6 source")
	}
}

func TestRealFlagValues(t *testing.T) {
	// Worked out by hand from 0xD07DF7FBC: UNLINK_ID is bit 25 (0x2000000,
	// set in the 0x07 byte) and V4_NC bit 34 (set in the high 0xD nibble).
	if hiddenFlags&wire.FlagUnlinkID == 0 {
		t.Error("DefaultHiddenFlags lacks UNLINK_ID")
	}
	if hiddenFlags&wire.FlagV4NC == 0 {
		t.Error("DefaultHiddenFlags lacks V4_NC")
	}
	if hiddenFlags&wire.FlagHandshake23 == 0 {
		t.Error("DefaultHiddenFlags lacks HANDSHAKE_23")
	}
	if hiddenFlags&wire.FlagMandatory25Digest == 0 {
		t.Error("DefaultHiddenFlags lacks MANDATORY_25_DIGEST")
	}
	if hiddenFlags&wire.Mandatory25 != wire.Mandatory25 {
		t.Error("DefaultHiddenFlags lacks some of the OTP 25 set even before expansion")
	}
	if hiddenFlags&wire.FlagNameMe != 0 {
		t.Error("DefaultHiddenFlags has NAME_ME")
	}
	if dynamicFlags != hiddenFlags|wire.FlagNameMe {
		t.Errorf("dynamic flags %#x are not the hidden flags plus NAME_ME", dynamicFlags)
	}

	tests := []struct {
		name  string
		tag   byte
		flags uint64
		req   Require
		want  bool
	}{
		{"hidden none", 'N', hiddenFlags, RequireNone, true},
		{"hidden otp25", 'N', hiddenFlags, RequireOTP25, true},
		{"hidden otp26", 'N', hiddenFlags, RequireOTP26, true},
		{"dynamic otp26", 'N', dynamicFlags, RequireOTP26, true},
		{"scanner none", 'n', scannerFlags, RequireNone, true},
		{"scanner otp25", 'n', scannerFlags, RequireOTP25, false},
		{"scanner otp26", 'n', scannerFlags, RequireOTP26, false},
		{"scanner flags in an N", 'N', scannerFlags, RequireOTP25, false},
	}
	for _, tt := range tests {
		if got := tt.req.Satisfied(tt.tag, tt.flags); got != tt.want {
			t.Errorf("%s: %v.Satisfied(%q, %#x) = %v, want %v", tt.name, tt.req, tt.tag, tt.flags, got, tt.want)
		}
	}
}

func TestRequireSatisfied(t *testing.T) {
	const (
		m25     = wire.Mandatory25
		digest  = wire.FlagMandatory25Digest
		unlink  = wire.FlagUnlinkID
		v4nc    = wire.FlagV4NC
		hs23    = wire.FlagHandshake23
		otp26ok = m25 | unlink | v4nc
	)
	tests := []struct {
		name  string
		req   Require
		tag   byte
		flags uint64
		want  bool
	}{
		{"none, no flags", RequireNone, 'N', 0, true},
		{"none, no flags, n", RequireNone, 'n', 0, true},

		{"otp25 exact set", RequireOTP25, 'N', m25, true},
		{"otp25 exact set, n", RequireOTP25, 'n', m25, true},
		{"otp25 lacks HANDSHAKE_23", RequireOTP25, 'N', hiddenFlags &^ (hs23 | digest), false},
		{"otp25 lacks HANDSHAKE_23 but has the digest", RequireOTP25, 'N', hiddenFlags &^ hs23, true},
		{"otp25 lacks one flag", RequireOTP25, 'N', m25 &^ wire.FlagMapTag, false},
		{"otp25 digest alone", RequireOTP25, 'N', digest, true},
		{"otp25 digest alone, n", RequireOTP25, 'n', digest, true},
		{"otp25 digest covers a missing flag", RequireOTP25, 'N', (m25 &^ hs23) | digest, true},
		{"otp25 no flags", RequireOTP25, 'N', 0, false},

		{"otp26 full set, N", RequireOTP26, 'N', otp26ok, true},
		{"otp26 lacks V4_NC, N", RequireOTP26, 'N', m25 | unlink, false},
		{"otp26 lacks UNLINK_ID, N", RequireOTP26, 'N', m25 | v4nc, false},
		{"otp26 lacks V4_NC, n (low word only)", RequireOTP26, 'n', m25 | unlink, true},
		{"otp26 lacks UNLINK_ID, n", RequireOTP26, 'n', m25, false},
		{"otp26 digest alone, N", RequireOTP26, 'N', digest, false},
		{"otp26 digest + UNLINK_ID + V4_NC, N", RequireOTP26, 'N', digest | unlink | v4nc, true},
		{"otp26 digest + UNLINK_ID, n", RequireOTP26, 'n', digest | unlink, true},
		{"otp26 m25 alone", RequireOTP26, 'N', m25, false},
	}
	for _, tt := range tests {
		if got := tt.req.Satisfied(tt.tag, tt.flags); got != tt.want {
			t.Errorf("%s: %v.Satisfied(%q, %#x) = %v, want %v", tt.name, tt.req, tt.tag, tt.flags, got, tt.want)
		}
	}
}

func TestParseRequire(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Require
	}{
		{"none", RequireNone},
		{"otp25", RequireOTP25},
		{"otp26", RequireOTP26},
	} {
		got, err := ParseRequire(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseRequire(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tt.in)
		}
	}
	for _, in := range []string{"", "OTP25", "otp24", "otp27", " otp25", "otp25 ", "None", "25"} {
		if got, err := ParseRequire(in); err == nil {
			t.Errorf("ParseRequire(%q) = %v, nil; want an error", in, got)
		}
	}
}

// TestRequireStringUnknown: a value that is none of the constants prints as
// "unknown" instead of panicking, as a log or a config dump may print any.
func TestRequireStringUnknown(t *testing.T) {
	for _, r := range []Require{RequireOTP26 + 1, 200, 255} {
		if got := r.String(); got != "unknown" {
			t.Errorf("Require(%d).String() = %q, want \"unknown\"", uint8(r), got)
		}
	}
}

func TestCheck(t *testing.T) {
	rules := &Rules{
		Require: RequireOTP25,
		Allow: []Entry{
			// A: .2 may connect, only as x@*.
			entry(t, []string{"127.0.0.2/32"}, "x@*"),
			// B: .3 may connect under any name.
			entry(t, []string{"127.0.0.3/32"}),
			// C: the example config's shape.
			entry(t, []string{"127.0.0.4/32", "2001:db8::/64"}, "rem-*-myapp@*", "rpc-*-myapp@*"),
			// D: link-local peers arrive with a zone.
			entry(t, []string{"fe80::/10"}, "z@*"),
		},
	}
	tests := []struct {
		name  string
		src   string
		tag   byte
		flags uint64
		node  string
		want  Reason
	}{
		// Source first: an unlisted source is refused whatever else is wrong.
		{"unlisted source", "10.0.0.1", 'N', hiddenFlags, "x@h", SourceNotAllowed},
		{"unlisted source, bad flags too", "10.0.0.1", 'n', scannerFlags, "AAAAAA@AAAAAAA", SourceNotAllowed},
		{"unlisted mapped source", "::ffff:10.0.0.1", 'N', hiddenFlags, "x@h", SourceNotAllowed},

		// Then flags: before the name, so a scanner is MissingFlags even
		// where its name would not match.
		{"scanner from .2", "127.0.0.2", 'n', scannerFlags, "AAAAAA@AAAAAAA", MissingFlags},
		{"scanner from .3", "127.0.0.3", 'n', scannerFlags, "AAAAAA@AAAAAAA", MissingFlags},
		{"N without HANDSHAKE_23", "127.0.0.3", 'N', hiddenFlags &^ (wire.FlagHandshake23 | wire.FlagMandatory25Digest), "y@h", MissingFlags},
		{"digest alone passes otp25", "127.0.0.3", 'N', wire.FlagMandatory25Digest, "y@h", Admitted},

		// Then the name, only against the entries listing the source.
		{"x from .2", "127.0.0.2", 'N', hiddenFlags, "x@h", Admitted},
		{"x from mapped .2", "::ffff:127.0.0.2", 'N', hiddenFlags, "x@h", Admitted},
		{"y from .2", "127.0.0.2", 'N', hiddenFlags, "y@h", NameNotAllowed},
		{"y from .3", "127.0.0.3", 'N', hiddenFlags, "y@h", Admitted},
		{"x from .3", "127.0.0.3", 'N', hiddenFlags, "x@h", Admitted},
		{"name case from .2", "127.0.0.2", 'N', hiddenFlags, "X@h", NameNotAllowed},
		{"rpc from .4", "127.0.0.4", 'N', hiddenFlags, "rpc-a9d5-myapp@127.0.0.1", Admitted},
		{"rem from .4", "127.0.0.4", 'N', hiddenFlags, "rem-a0cf-myapp@127.0.0.1", Admitted},
		{"other app from .4", "127.0.0.4", 'N', hiddenFlags, "rpc-a9d5-other@127.0.0.1", NameNotAllowed},
		{"x from .4 (allowed only from .2)", "127.0.0.4", 'N', hiddenFlags, "x@h", NameNotAllowed},
		{"rpc from the v6 /64", "2001:db8::99", 'N', hiddenFlags, "rpc-1-myapp@h", Admitted},
		{"rpc from outside the v6 /64", "2001:db8:0:1::99", 'N', hiddenFlags, "rpc-1-myapp@h", SourceNotAllowed},
		{"z from a zoned link-local", "fe80::1%eth0", 'N', hiddenFlags, "z@h", Admitted},
		{"y from a zoned link-local", "fe80::1%eth0", 'N', hiddenFlags, "y@h", NameNotAllowed},

		// NAME_ME: the message carries a host only, so only an entry that
		// admits any name can take it.
		{"NAME_ME from .2", "127.0.0.2", 'N', dynamicFlags, "127.0.0.1", NameNotAllowed},
		{"NAME_ME from .3", "127.0.0.3", 'N', dynamicFlags, "127.0.0.1", Admitted},
		{"NAME_ME from .4", "127.0.0.4", 'N', dynamicFlags, "127.0.0.1", NameNotAllowed},
	}
	for _, tt := range tests {
		got := rules.Check(addr(t, tt.src), tt.tag, tt.flags, []byte(tt.node))
		if got != tt.want {
			t.Errorf("%s: Check(%s, %q, %#x, %q) = %q, want %q",
				tt.name, tt.src, tt.tag, tt.flags, tt.node, got, tt.want)
		}
	}
	if got := rules.Check(netip.Addr{}, 'N', hiddenFlags, []byte("x@h")); got != SourceNotAllowed {
		t.Errorf("Check(invalid address) = %q, want %q", got, SourceNotAllowed)
	}
}

// A NAME_ME request is refused even by a glob that would match its host,
// since what it carries is not a node name.
func TestCheckNameMeIgnoresMatchingGlob(t *testing.T) {
	r := &Rules{Allow: []Entry{entry(t, []string{"127.0.0.0/8"}, "*")}}
	a := addr(t, "127.0.0.1")
	if got := r.Check(a, 'N', dynamicFlags, []byte("127.0.0.1")); got != NameNotAllowed {
		t.Errorf("NAME_ME against names [\"*\"] = %q, want %q", got, NameNotAllowed)
	}
	if got := r.Check(a, 'N', hiddenFlags, []byte("127.0.0.1")); got != Admitted {
		t.Errorf("the same bytes without NAME_ME = %q, want admitted", got)
	}
	// A legacy 'n' message has no NAME_ME: bit 33 is not a flag it can carry.
	if got := r.Check(a, 'n', hiddenFlags|wire.FlagNameMe, []byte("x@h")); got != Admitted {
		t.Errorf("'n' with bit 33 set = %q, want admitted", got)
	}
}

func TestCheckRequireNone(t *testing.T) {
	r := &Rules{Require: RequireNone, Allow: []Entry{entry(t, []string{"127.0.0.0/8"})}}
	a := addr(t, "127.0.0.5")
	for _, tt := range []struct {
		tag   byte
		flags uint64
	}{
		{'n', scannerFlags}, {'n', 0}, {'N', 0}, {'N', hiddenFlags}, {'N', ^uint64(0)},
	} {
		if got := r.Check(a, tt.tag, tt.flags, []byte("AAAAAA@AAAAAAA")); got != Admitted {
			t.Errorf("RequireNone: Check(%q, %#x) = %q, want admitted", tt.tag, tt.flags, got)
		}
	}
}

func TestCheckRequireOTP26(t *testing.T) {
	r := &Rules{Require: RequireOTP26, Allow: []Entry{entry(t, []string{"127.0.0.0/8"})}}
	a := addr(t, "127.0.0.1")
	noV4NC := hiddenFlags &^ wire.FlagV4NC
	if got := r.Check(a, 'N', noV4NC, []byte("a@h")); got != MissingFlags {
		t.Errorf("otp26 'N' without V4_NC = %q, want %q", got, MissingFlags)
	}
	if got := r.Check(a, 'n', noV4NC&0xffffffff, []byte("a@h")); got != Admitted {
		t.Errorf("otp26 'n' without V4_NC = %q, want admitted", got)
	}
	noUnlink := hiddenFlags &^ wire.FlagUnlinkID
	if got := r.Check(a, 'n', noUnlink&0xffffffff, []byte("a@h")); got != MissingFlags {
		t.Errorf("otp26 'n' without UNLINK_ID = %q, want %q", got, MissingFlags)
	}
	if got := r.Check(a, 'N', hiddenFlags, []byte("a@h")); got != Admitted {
		t.Errorf("otp26 'N' with the captured flags = %q, want admitted", got)
	}
}

func TestCheckDoesNotAllocate(t *testing.T) {
	r := benchRules(t)
	a := addr(t, "2001:db8::7")
	name := []byte("rpc-a9d5-myapp@127.0.0.1")
	allocs := testing.AllocsPerRun(100, func() {
		if r.Check(a, 'N', hiddenFlags, name) != Admitted {
			t.Fatal("not admitted")
		}
	})
	if allocs != 0 {
		t.Errorf("Check allocates %v times per run, want 0", allocs)
	}
}

func TestReasons(t *testing.T) {
	if Admitted != 0 || Admitted.String() != "" {
		t.Errorf("Admitted = %d %q, want the zero value and an empty name", Admitted, Admitted.String())
	}
	seen := map[string]bool{}
	for _, r := range DenyReasons() {
		s := r.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Errorf("deny reason %d has name %q (empty, unknown or duplicate)", r, s)
		}
		seen[s] = true
	}
	for _, want := range []string{"source_not_allowed", "missing_flags", "name_not_allowed", "rate_limited", "tls_failed", "identity_not_allowed"} {
		if !seen[want] {
			t.Errorf("DenyReasons lacks %q", want)
		}
	}
	if numReasons.String() != "unknown" || Reason(255).String() != "unknown" {
		t.Error("an out-of-range reason is not \"unknown\"")
	}
}

func benchRules(t testing.TB) *Rules {
	return &Rules{
		Require: RequireOTP26,
		Allow: []Entry{
			entry(t, []string{"10.0.0.0/8", "192.168.0.0/16"}, "a@*", "b@*"),
			entry(t, []string{"127.0.0.0/8", "::1/128", "2001:db8::/32"}, "rem-*-myapp@*", "rpc-*-myapp@*"),
		},
	}
}

func BenchmarkRulesCheck(b *testing.B) {
	r := benchRules(b)
	a := addr(b, "2001:db8::7")
	name := []byte("rpc-a9d5-myapp@127.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		if r.Check(a, 'N', hiddenFlags, name) != Admitted {
			b.Fatal("not admitted")
		}
	}
}

// withIDs returns e with identity globs.
func withIDs(t testing.TB, e Entry, ids ...string) Entry {
	t.Helper()
	for _, id := range ids {
		e.Identities = append(e.Identities, mustGlob(t, id))
	}
	return e
}

// withSNI returns e with SNI globs.
func withSNI(t testing.TB, e Entry, names ...string) Entry {
	t.Helper()
	for _, n := range names {
		e.SNI = append(e.SNI, mustGlob(t, n))
	}
	return e
}

// Identities: an entry with identities admits only a certificate one of
// them matches (CN or any SAN); the names an identity opens are only those
// of its own entries.
func TestCheckIdentity(t *testing.T) {
	r := &Rules{Require: RequireOTP25, Allow: []Entry{
		withIDs(t, entry(t, []string{"10.0.0.0/8"}, "rem-*@*"), "rem@ops", "*.ops.example"),
		withIDs(t, entry(t, []string{"10.0.0.0/8"}, "rpc-*@*"), "ci@build"),
		entry(t, []string{"192.168.0.0/16"}), // no identities: any certificate, any name
	}}
	ops := []string{"rem@ops"}
	sanOnly := []string{"", "laptop.ops.example", "mailto:x"} // no CN: a SAN matches
	ci := []string{"ci@build", "ci.example"}
	stranger := []string{"someone@else", "urn:x"}
	tests := []struct {
		name string
		addr string
		ids  []string
		node string
		pre  Reason // CheckIdentity
		want Reason // CheckAs
	}{
		{"cn opens its names", "10.1.2.3", ops, "rem-ab12-app@h", Admitted, Admitted},
		{"a dns san matches", "10.1.2.3", sanOnly, "rem-ab12-app@h", Admitted, Admitted},
		{"not the other entry's names", "10.1.2.3", ops, "rpc-ab12-app@h", Admitted, NameNotAllowed},
		{"the other identity, its names", "10.1.2.3", ci, "rpc-ab12-app@h", Admitted, Admitted},
		{"the other identity, not rem", "10.1.2.3", ci, "rem-ab12-app@h", Admitted, NameNotAllowed},
		{"no identity matches", "10.1.2.3", stranger, "rem-ab12-app@h", IdentityNotAllowed, IdentityNotAllowed},
		{"no certificate", "10.1.2.3", nil, "rem-ab12-app@h", IdentityNotAllowed, IdentityNotAllowed},
		{"entry without identities", "192.168.1.1", stranger, "any@h", Admitted, Admitted},
		{"entry without identities, no cert", "192.168.1.1", nil, "any@h", Admitted, Admitted},
		{"source not listed", "172.16.0.1", ops, "rem-ab12-app@h", SourceNotAllowed, SourceNotAllowed},
	}
	for _, tt := range tests {
		a := addr(t, tt.addr)
		if got := r.CheckIdentity(a, tt.ids); got != tt.pre {
			t.Errorf("%s: CheckIdentity = %v, want %v", tt.name, got, tt.pre)
		}
		if got := r.CheckAs(a, tt.ids, 'N', hiddenFlags, []byte(tt.node)); got != tt.want {
			t.Errorf("%s: CheckAs = %v, want %v", tt.name, got, tt.want)
		}
	}
	// Flags are still checked after the identity.
	if got := r.CheckAs(addr(t, "10.1.2.3"), ops, 'n', scannerFlags, []byte("rem-ab12-app@h")); got != MissingFlags {
		t.Errorf("scanner flags with a good identity: %v, want missing_flags", got)
	}
	// Check is CheckAs without a certificate.
	if got := r.Check(addr(t, "10.1.2.3"), 'N', hiddenFlags, []byte("rem-ab12-app@h")); got != IdentityNotAllowed {
		t.Errorf("Check on an identities entry: %v, want identity_not_allowed", got)
	}
}

// SNI: an entry with sni admits only a matching server name; no server
// name passes only entries without sni. Matched as sent.
func TestCheckSNI(t *testing.T) {
	r := &Rules{Allow: []Entry{
		withSNI(t, entry(t, []string{"10.0.0.0/8"}), "gate.lab", "*.example.com"),
		entry(t, []string{"192.168.0.0/16"}),
	}}
	tests := []struct {
		addr, sni string
		want      Reason
	}{
		{"10.0.0.1", "gate.lab", Admitted},
		{"10.0.0.1", "node1.example.com", Admitted},
		{"10.0.0.1", "example.com", NameNotAllowed},
		{"10.0.0.1", "GATE.LAB", NameNotAllowed},
		{"10.0.0.1", "127.0.0.1", NameNotAllowed},
		{"10.0.0.1", "", NameNotAllowed},
		{"192.168.0.1", "", Admitted},
		{"192.168.0.1", "anything.at.all", Admitted},
		{"::ffff:10.0.0.1", "gate.lab", Admitted},
		{"172.16.0.1", "gate.lab", SourceNotAllowed},
	}
	for _, tt := range tests {
		if got := r.CheckSNI(addr(t, tt.addr), tt.sni); got != tt.want {
			t.Errorf("CheckSNI(%s, %q) = %v, want %v", tt.addr, tt.sni, got, tt.want)
		}
	}
}

func TestCheckAsDoesNotAllocate(t *testing.T) {
	r := &Rules{Require: RequireOTP25, Allow: []Entry{withIDs(t, entry(t, []string{"10.0.0.0/8"}, "rem-*@*"), "rem@ops")}}
	a := addr(t, "10.1.2.3")
	ids := []string{"rem@ops", "ops.example"}
	name := []byte("rem-ab12-app@h")
	allocs := testing.AllocsPerRun(100, func() {
		if r.CheckAs(a, ids, 'N', hiddenFlags, name) != Admitted {
			t.Fatal("not admitted")
		}
	})
	if allocs != 0 {
		t.Errorf("CheckAs allocates %v times per run, want 0", allocs)
	}
}
